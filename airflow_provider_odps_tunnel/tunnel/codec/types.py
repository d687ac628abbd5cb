"""ODPS data types: parsing and printing type strings, and validating Python values.

Every type of the MaxCompute tunnel is an instance of a :class:`DataType` subclass. Types
compare equal when their type strings are equal, so ``parse_type("ARRAY<BIGINT>") ==
Array(bigint)``. Validation turns a user value into the canonical Python value that the
codecs encode (for example an ``int`` into a ``float`` for a DOUBLE column) and raises
``TypeError`` or ``ValueError`` saying what is wrong with the value; :class:`Record` adds
the column name to that message.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import json as _json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DataType",
    "IntegerType",
    "Decimal",
    "Char",
    "Varchar",
    "Array",
    "Map",
    "Struct",
    "Vector",
    "Monthdelta",
    "parse_type",
    "tinyint",
    "smallint",
    "int_",
    "bigint",
    "float_",
    "double",
    "string",
    "binary",
    "boolean",
    "datetime",
    "date",
    "timestamp",
    "timestamp_ntz",
    "interval_day_time",
    "interval_year_month",
    "json",
]


class DataType:
    """Base of all ODPS types. ``name`` is the canonical lower-case type string."""

    name: str = ""

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<odps type {self.name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = parse_type(other)
            except ValueError:
                return False
        return isinstance(other, DataType) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def is_nested(self) -> bool:
        return False

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this type's canonical Python value.

        ``None`` is always accepted (nullability is a column property).
        """
        raise NotImplementedError


class _Primitive(DataType):
    def __init__(self, name: str):
        self.name = name


class IntegerType(_Primitive):
    """TINYINT, SMALLINT, INT or BIGINT: a signed integer of ``bits`` bits."""

    def __init__(self, name: str, bits: int):
        super().__init__(name)
        self.bits = bits
        self.min_value = -(1 << (bits - 1))
        self.max_value = (1 << (bits - 1)) - 1

    def validate(self, value: Any) -> int | None:
        if type(value) is int and self.min_value <= value <= self.max_value:
            return value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if hasattr(value, "__index__") and not isinstance(value, bool | float):
                value = value.__index__()  # numpy integers
            else:
                raise TypeError(f"expected an integer for {self.name}, got {type(value).__name__}")
        if not self.min_value <= value <= self.max_value:
            raise ValueError(
                f"{value} is out of range for {self.name} [{self.min_value}, {self.max_value}]"
            )
        return int(value)


class _FloatType(_Primitive):
    def __init__(self, name: str, single: bool):
        super().__init__(name)
        self.single = single

    def validate(self, value: Any) -> float | None:
        if type(value) is float or value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            if hasattr(value, "__float__") and not isinstance(value, str | bytes):
                return float(value)
            raise TypeError(f"expected a number for {self.name}, got {type(value).__name__}")
        return float(value)


class _StringType(_Primitive):
    """STRING: text. ``bytes`` are accepted when they are valid UTF-8."""

    max_length: int | None = None

    def validate(self, value: Any) -> str | bytes | None:
        if type(value) is str and self.max_length is None:
            return value
        if value is None:
            return None
        if isinstance(value, str):
            text = value
        elif isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"invalid UTF-8 in {self.name} value at byte {exc.start}: {raw[:40]!r}"
                ) from None
        else:
            raise TypeError(f"expected str for {self.name}, got {type(value).__name__}")
        if self.max_length is not None and len(text) > self.max_length:
            raise ValueError(
                f"{self.name} value has {len(text)} characters, more than {self.max_length}"
            )
        return text


class _BinaryType(_Primitive):
    def validate(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise TypeError(f"expected bytes for binary, got {type(value).__name__}")


class _BooleanType(_Primitive):
    def validate(self, value: Any) -> bool | None:
        if value is None or value is True or value is False:
            return value
        if isinstance(value, bool):
            return value
        if type(value).__name__ == "bool_":  # numpy.bool_
            return bool(value)
        raise TypeError(f"expected bool for boolean, got {type(value).__name__}")


class _DatetimeType(_Primitive):
    """DATETIME: a millisecond instant; naive values are read in the configured zone."""

    def validate(self, value: Any) -> _dt.datetime | None:
        if type(value) is _dt.datetime or value is None:
            return value
        if isinstance(value, _dt.datetime):
            if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
                return value.to_pydatetime()
            return value
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day)
        raise TypeError(f"expected datetime for datetime, got {type(value).__name__}")


class _DateType(_Primitive):
    def validate(self, value: Any) -> _dt.date | None:
        if value is None:
            return None
        if isinstance(value, _dt.datetime):
            return value.date()
        if isinstance(value, _dt.date):
            return value
        raise TypeError(f"expected date for date, got {type(value).__name__}")


class _TimestampType(_Primitive):
    """TIMESTAMP or TIMESTAMP_NTZ: nanosecond precision, as ``pandas.Timestamp``."""

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        import pandas as pd

        if isinstance(value, pd.Timestamp):
            return value
        if isinstance(value, _dt.datetime | _dt.date | str | int):
            if isinstance(value, bool):
                raise TypeError(f"expected timestamp for {self.name}, got bool")
            return pd.Timestamp(value)
        raise TypeError(f"expected timestamp for {self.name}, got {type(value).__name__}")


class _IntervalDayTimeType(_Primitive):
    """INTERVAL_DAY_TIME: a signed duration with nanoseconds, as ``pandas.Timedelta``."""

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        import pandas as pd

        if isinstance(value, pd.Timedelta):
            return value
        if isinstance(value, _dt.timedelta):
            return pd.Timedelta(value)
        raise TypeError(f"expected timedelta for {self.name}, got {type(value).__name__}")


class Monthdelta:
    """A number of months, the value of an INTERVAL_YEAR_MONTH column."""

    __slots__ = ("months",)

    def __init__(self, years: int = 0, months: int = 0):
        self.months = int(years) * 12 + int(months)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Monthdelta):
            return self.months == other.months
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.months)

    def __repr__(self) -> str:
        return f"Monthdelta(months={self.months})"

    def total_months(self) -> int:
        return self.months


class _IntervalYearMonthType(_Primitive):
    def validate(self, value: Any) -> Monthdelta | None:
        if value is None:
            return None
        if isinstance(value, Monthdelta):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return Monthdelta(months=value)
        raise TypeError(f"expected Monthdelta for {self.name}, got {type(value).__name__}")


class _JsonType(_Primitive):
    """JSON: any JSON value except a bare number (the service rejects those, as pyodps does)."""

    def validate(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                "json values must be an object, array, string or boolean, not a number"
            )
        try:
            _json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"value is not JSON-serialisable: {exc}") from None
        return value


class Decimal(DataType):
    """DECIMAL(precision, scale). Bare ``decimal`` is the legacy type, printed as ``decimal``."""

    def __init__(self, precision: int | None = None, scale: int | None = None):
        if precision is None:
            self.precision, self.scale = 54, 18
            self.name = "decimal"
        else:
            if scale is None:
                scale = 0
            if not 1 <= precision <= 38 or not 0 <= scale <= precision:
                raise ValueError(f"invalid decimal precision/scale ({precision},{scale})")
            self.precision, self.scale = precision, scale
            self.name = f"decimal({precision},{scale})"

    def validate(self, value: Any) -> _decimal.Decimal | None:
        if (
            type(value) is _decimal.Decimal
            and value.is_finite()
            and (value.adjusted() < self.precision - self.scale or value.is_zero())
        ):
            return value
        if value is None:
            return None
        if isinstance(value, _decimal.Decimal):
            dec = value
        elif isinstance(value, int | str) and not isinstance(value, bool):
            try:
                dec = _decimal.Decimal(value)
            except _decimal.InvalidOperation:
                raise ValueError(f"{value!r} is not a decimal number") from None
        elif isinstance(value, float):
            dec = _decimal.Decimal(repr(value))
        else:
            raise TypeError(f"expected Decimal for {self.name}, got {type(value).__name__}")
        if not dec.is_finite():
            raise ValueError(f"{dec} is not a finite decimal")
        digits = dec.as_tuple()
        int_digits = len(digits.digits) + digits.exponent
        if int_digits > self.precision - self.scale and any(digits.digits):
            raise ValueError(f"{dec} has {int_digits} integer digits, more than {self.name} allows")
        return dec


class _SizedString(_StringType):
    def __init__(self, kind: str, size: int):
        if not 1 <= size <= 65535:
            raise ValueError(f"invalid {kind} length {size}")
        self.kind = kind
        self.size = size
        self.max_length = size
        self.name = f"{kind}({size})"


class Char(_SizedString):
    """CHAR(n): text of at most n characters (not padded on write, as pyodps does)."""

    def __init__(self, size: int):
        super().__init__("char", size)


class Varchar(_SizedString):
    """VARCHAR(n): text of at most n characters."""

    def __init__(self, size: int):
        super().__init__("varchar", size)


class Array(DataType):
    """ARRAY<T>: a list whose elements may be null."""

    def __init__(self, value_type: DataType):
        self.value_type = value_type
        self.name = f"array<{value_type}>"

    @property
    def is_nested(self) -> bool:
        return True

    def validate(self, value: Any) -> list | None:
        if value is None:
            return None
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            if hasattr(value, "tolist"):
                value = value.tolist()
            else:
                raise TypeError(f"expected a list for {self.name}, got {type(value).__name__}")
        check = self.value_type.validate
        out = []
        for idx, item in enumerate(value):
            try:
                out.append(check(item))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"element {idx}: {exc}") from None
        return out


class Map(DataType):
    """MAP<K,V>: a dict; values may be null, keys should not be."""

    def __init__(self, key_type: DataType, value_type: DataType):
        self.key_type = key_type
        self.value_type = value_type
        self.name = f"map<{key_type},{value_type}>"

    @property
    def is_nested(self) -> bool:
        return True

    def validate(self, value: Any) -> dict | None:
        if value is None:
            return None
        if isinstance(value, Mapping):
            items = value.items()
        elif isinstance(value, list | tuple):
            items = value  # a list of (key, value) pairs
        else:
            raise TypeError(f"expected a dict for {self.name}, got {type(value).__name__}")
        out = {}
        for pair in items:
            key, item = pair
            try:
                out[self.key_type.validate(key)] = self.value_type.validate(item)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"key {key!r}: {exc}") from None
        return out


class Struct(DataType):
    """STRUCT<name:T,...>: a dict keyed by field name (a tuple in field order is accepted)."""

    def __init__(self, field_types: Mapping[str, DataType] | Sequence[tuple[str, DataType]]):
        pairs = list(field_types.items()) if isinstance(field_types, Mapping) else field_types
        self.field_types: dict[str, DataType] = {name: typ for name, typ in pairs}
        inner = ",".join(f"{_quote_field(name)}:{typ}" for name, typ in self.field_types.items())
        self.name = f"struct<{inner}>"

    @property
    def is_nested(self) -> bool:
        return True

    def validate(self, value: Any) -> dict | None:
        if value is None:
            return None
        names = list(self.field_types)
        if isinstance(value, Mapping):
            unknown = set(value) - set(names)
            if unknown:
                raise ValueError(f"unknown struct fields {sorted(unknown)} for {self.name}")
            getter = value.get
        elif isinstance(value, tuple | list):
            if len(value) != len(names):
                raise ValueError(f"{self.name} needs {len(names)} fields, got {len(value)}")
            getter = dict(zip(names, value, strict=True)).get
        else:
            raise TypeError(f"expected a dict for {self.name}, got {type(value).__name__}")
        out = {}
        for name, typ in self.field_types.items():
            try:
                out[name] = typ.validate(getter(name))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"field {name}: {exc}") from None
        return out


class Vector(DataType):
    """VECTOR<float|double,dim>: a fixed-length list of finite numbers, no nulls."""

    def __init__(self, value_type: DataType, dim: int):
        if value_type not in (float_, double):
            raise ValueError(f"vector elements must be float or double, not {value_type}")
        if dim < 1:
            raise ValueError(f"invalid vector dimension {dim}")
        self.value_type = value_type
        self.dim = dim
        self.name = f"vector<{value_type},{dim}>"

    @property
    def is_nested(self) -> bool:
        return True

    def validate(self, value: Any) -> list | None:
        if value is None:
            return None
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list for {self.name}, got {type(value).__name__}")
        if len(value) != self.dim:
            raise ValueError(f"{self.name} needs {self.dim} elements, got {len(value)}")
        out = []
        for idx, item in enumerate(value):
            num = self.value_type.validate(item)
            if num is None or not math.isfinite(num):
                raise ValueError(f"element {idx} of {self.name} must be a finite number")
            out.append(num)
        return out


tinyint = IntegerType("tinyint", 8)
smallint = IntegerType("smallint", 16)
int_ = IntegerType("int", 32)
bigint = IntegerType("bigint", 64)
float_ = _FloatType("float", single=True)
double = _FloatType("double", single=False)
string = _StringType("string")
binary = _BinaryType("binary")
boolean = _BooleanType("boolean")
datetime = _DatetimeType("datetime")
date = _DateType("date")
timestamp = _TimestampType("timestamp")
timestamp_ntz = _TimestampType("timestamp_ntz")
interval_day_time = _IntervalDayTimeType("interval_day_time")
interval_year_month = _IntervalYearMonthType("interval_year_month")
json = _JsonType("json")

_PRIMITIVES: dict[str, DataType] = {
    t.name: t
    for t in (
        tinyint,
        smallint,
        int_,
        bigint,
        float_,
        double,
        string,
        binary,
        boolean,
        datetime,
        date,
        timestamp,
        timestamp_ntz,
        interval_day_time,
        interval_year_month,
        json,
    )
}
_PRIMITIVES["integer"] = int_

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _quote_field(name: str) -> str:
    return name if _FIELD_NAME.match(name) else "`" + name.replace("`", "``") + "`"


class _TypeParser:
    """Recursive-descent parser of type strings such as ``map<string,array<int>>``."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"invalid type string {self.text!r} at {self.pos}: {what}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def word(self) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        if start == self.pos:
            raise self.fail("expected a name")
        return self.text[start : self.pos]

    def field_name(self) -> str:
        if self.peek() == "`":
            self.pos += 1
            out = []
            while True:
                end = self.text.find("`", self.pos)
                if end < 0:
                    raise self.fail("unterminated quoted name")
                out.append(self.text[self.pos : end])
                self.pos = end + 1
                if self.text.startswith("`", self.pos):
                    out.append("`")
                    self.pos += 1
                else:
                    return "".join(out)
        return self.word()

    def number(self) -> int:
        word = self.word()
        if not word.isdigit():
            raise self.fail(f"expected a number, got {word!r}")
        return int(word)

    def parse(self) -> DataType:
        result = self.type_()
        if self.peek():
            raise self.fail("unexpected trailing text")
        return result

    def type_(self) -> DataType:
        name = self.word().lower()
        if name in ("array", "map", "struct", "vector"):
            opener = self.peek()
            if opener not in "<(" or not opener:
                raise self.fail(f"expected '<' after {name}")
            closer = ">" if opener == "<" else ")"
            self.pos += 1
            if name == "array":
                result: DataType = Array(self.type_())
            elif name == "map":
                key = self.type_()
                self.expect(",")
                result = Map(key, self.type_())
            elif name == "vector":
                elem = self.type_()
                self.expect(",")
                result = Vector(elem, self.number())
            else:
                fields = []
                while True:
                    fname = self.field_name()
                    self.expect(":")
                    fields.append((fname, self.type_()))
                    if self.peek() != ",":
                        break
                    self.pos += 1
                result = Struct(fields)
            self.expect(closer)
            return result
        if name in ("decimal", "char", "varchar"):
            if self.peek() != "(":
                if name == "decimal":
                    return Decimal()
                raise self.fail(f"{name} needs a length")
            self.pos += 1
            first = self.number()
            if name == "decimal":
                scale = None
                if self.peek() == ",":
                    self.pos += 1
                    scale = self.number()
                self.expect(")")
                return Decimal(first, scale)
            self.expect(")")
            return Char(first) if name == "char" else Varchar(first)
        try:
            return _PRIMITIVES[name]
        except KeyError:
            raise self.fail(f"unknown type {name!r}") from None


def parse_type(text: str | DataType) -> DataType:
    """Parse an ODPS type string (case-insensitive), or return a :class:`DataType` unchanged."""
    if isinstance(text, DataType):
        return text
    if not isinstance(text, str):
        raise TypeError(f"type must be a str or DataType, got {type(text).__name__}")
    return _TypeParser(text).parse()
