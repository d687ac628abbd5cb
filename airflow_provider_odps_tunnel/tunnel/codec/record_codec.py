"""The tunnel's record wire format: encoder and decoder (protocol §5).

A body is a series of records and a footer. Each record writes its non-null columns as
``tag(field, wire_type)`` + value, then ``END_RECORD`` and the CRC32C of the record's
"CRC bytes"; the footer carries the record count (zigzag) and the CRC32C of all record
CRCs. Nested values carry no tags: arrays are a count and per-element null flags, maps are
an array of keys then an array of values, structs a null flag per field.

Choices (see docs/codec.md):

* Record and stream CRCs are written as minimal unsigned varints (at most 5 bytes), as
  the Java SDK and pure-Python pyodps do. pyodps's compiled writer sign-extends CRCs of
  2^31 and more into 10 bytes; the pure-Python pyodps reader rejects that form, while every
  reader accepts ours. Our decoder accepts both.
* All date and time arithmetic is on integers (``datetimes``), so values floor exactly.
* The decoder verifies every record CRC, the count and the stream checksum, and by
  default treats a body without its footer as truncated.

The classes here (``PyRecordEncoder``, ``PyRecordDecoder``) are the reference
implementation. ``RecordEncoder`` and ``RecordDecoder`` are the compiled classes of
``_record_codec_c`` when that extension is built (same bytes, values and errors), else
these. Besides one call per row (``encode``, ``read_row``), both have bulk calls that save
a Python call per row: ``encode_many(rows, out)``, ``encode_arrow(batch, out)`` and
``read_rows(max_rows)``; ``try_encode(row, out)`` is the writers' call per row, and
``direct_write`` gives them, with the compiled encoder, a whole per-row ``write`` in C.
``RecordIterator`` (``record.PyRecordIterator`` or its compiled twin) hands out decoded
rows as ``Record`` objects, made one at a time.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import json as _json
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import (
    ChecksumError,
    DataStreamError,
    DatetimeOverflowError,
    RecordValidationError,
    StreamTruncatedError,
)
from . import datetimes as _t
from . import types as _types
from .crc import crc32c
from .record import PyRecordIterator, Record
from .schema import Column

__all__ = [
    "END_RECORD",
    "META_COUNT",
    "META_CHECKSUM",
    "END_METRICS",
    "RecordEncoder",
    "RecordDecoder",
    "PyRecordEncoder",
    "PyRecordDecoder",
    "RecordIterator",
    "direct_write",
]

END_RECORD = 33553408
META_COUNT = 33554430
META_CHECKSUM = 33554431
END_METRICS = 33554176

WIRE_VARINT, WIRE_FIXED64, WIRE_LENGTH, WIRE_FIXED32 = 0, 1, 2, 5

_pack_q = struct.Struct("<q").pack
_pack_i = struct.Struct("<i").pack
_pack_I = struct.Struct("<I").pack
_pack_d = struct.Struct("<d").pack
_pack_f = struct.Struct("<f").pack
_unpack_d = struct.Struct("<d").unpack_from
_unpack_f = struct.Struct("<f").unpack_from

_ONE_BYTE = [bytes([i]) for i in range(128)]


def varint(value: int) -> bytes:
    """Unsigned base-128 varint of a non-negative integer."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def wire_type_of(data_type: _types.DataType) -> int:
    if isinstance(data_type, _types.IntegerType) or data_type in _VARINT_TYPES:
        return WIRE_VARINT
    if data_type == _types.double:
        return WIRE_FIXED64
    if data_type == _types.float_:
        return WIRE_FIXED32
    return WIRE_LENGTH


_VARINT_TYPES = (_types.boolean, _types.datetime, _types.date, _types.interval_year_month)
_END_RECORD_TAG = tag(END_RECORD, WIRE_VARINT)
_META_COUNT_TAG = tag(META_COUNT, WIRE_VARINT)
_META_CHECKSUM_TAG = tag(META_CHECKSUM, WIRE_VARINT)

# An encoder appends a value's wire bytes to ``out`` and its CRC bytes to ``crc``.
Encode = Callable[[Any, bytearray, bytearray], None]


class _Codecs:
    """Builds encode and decode functions for a data type, under one set of settings."""

    def __init__(self, tz: _dt.tzinfo, encoding: str, string_as_binary: bool):
        self.tz = tz
        self.encoding = encoding
        self.string_as_binary = string_as_binary

    # ---------------------------------------------------------------- encoders
    def encoder(self, dt: _types.DataType) -> Encode:  # noqa: C901 - one branch per type
        if isinstance(dt, _types.IntegerType):
            return self._int_encoder(dt)
        if dt == _types.double:

            def enc_double(v: Any, out: bytearray, crc: bytearray) -> None:
                b = _pack_d(v)
                out += b
                crc += b

            return enc_double
        if dt == _types.float_:

            def enc_float(v: Any, out: bytearray, crc: bytearray) -> None:
                b = _pack_f(v)
                out += b
                crc += b

            return enc_float
        if dt == _types.boolean:

            def enc_bool(v: Any, out: bytearray, crc: bytearray) -> None:
                if v is True or v is False:
                    b = b"\x01" if v else b"\x00"
                else:
                    b = b"\x01" if _types.boolean.validate(v) else b"\x00"
                out += b
                crc += b

            return enc_bool
        if isinstance(dt, _types._StringType) or dt == _types.binary:
            return self._bytes_encoder(dt)
        if dt == _types.datetime:
            tz = self.tz
            to_millis = _t.datetime_to_millis
            dtype = _dt.datetime

            def enc_datetime(v: Any, out: bytearray, crc: bytearray) -> None:
                if not isinstance(v, dtype):
                    v = _types.datetime.validate(v)
                ms = to_millis(v, tz)
                crc += _pack_q(ms)
                _put_varint(out, (ms << 1) ^ (ms >> 63))

            return enc_datetime
        if dt == _types.date:
            to_days = _t.date_to_days

            def enc_date(v: Any, out: bytearray, crc: bytearray) -> None:
                if isinstance(v, _dt.datetime) or not isinstance(v, _dt.date):
                    v = _types.date.validate(v)
                days = to_days(v)
                crc += _pack_q(days)
                _put_varint(out, (days << 1) ^ (days >> 63))

            return enc_date
        if dt == _types.interval_year_month:

            def enc_months(v: Any, out: bytearray, crc: bytearray) -> None:
                months = _types.interval_year_month.validate(v).months
                crc += _pack_q(months)
                _put_varint(out, (months << 1) ^ (months >> 63))

            return enc_months
        if dt in (_types.timestamp, _types.timestamp_ntz, _types.interval_day_time):
            return self._pair_encoder(dt)
        if isinstance(dt, _types.Decimal):
            return self._decimal_encoder(dt)
        if dt == _types.json:

            def enc_json(v: Any, out: bytearray, crc: bytearray) -> None:
                b = _json.dumps(_types.json.validate(v)).encode("utf-8")
                _put_varint(out, len(b))
                out += b
                crc += b

            return enc_json
        if isinstance(dt, _types.Array):
            return self._array_encoder(dt)
        if isinstance(dt, _types.Map):
            keys_enc = self._array_encoder(_types.Array(dt.key_type))
            values_enc = self._array_encoder(_types.Array(dt.value_type))

            def enc_map(v: Any, out: bytearray, crc: bytearray) -> None:
                if not isinstance(v, dict):
                    v = dt.validate(v)
                keys_enc(list(v.keys()), out, crc)
                values_enc(list(v.values()), out, crc)

            return enc_map
        if isinstance(dt, _types.Struct):
            fields = [(name, self.encoder(t)) for name, t in dt.field_types.items()]

            def enc_struct(v: Any, out: bytearray, crc: bytearray) -> None:
                if not isinstance(v, dict) or len(v) != len(fields):
                    v = dt.validate(v)
                for name, enc in fields:
                    item = v[name]
                    if item is None:
                        out.append(1)
                    else:
                        out.append(0)
                        enc(item, out, crc)

            return enc_struct
        if isinstance(dt, _types.Vector):
            pack = _pack_f if dt.value_type == _types.float_ else _pack_d

            def enc_vector(v: Any, out: bytearray, crc: bytearray) -> None:
                v = dt.validate(v)
                _put_varint(out, dt.dim)
                for item in v:
                    b = pack(item)
                    out += b
                    crc += b

            return enc_vector
        raise TypeError(f"type {dt} has no tunnel encoding")

    def _int_encoder(self, dt: _types.IntegerType) -> Encode:
        lo, hi = dt.min_value, dt.max_value
        name = dt.name

        def enc_int(v: Any, out: bytearray, crc: bytearray) -> None:
            if type(v) is not int:
                v = dt.validate(v)
            elif not lo <= v <= hi:
                raise ValueError(f"{v} is out of range for {name} [{lo}, {hi}]")
            crc += _pack_q(v)
            z = (v << 1) ^ (v >> 63)
            if z < 0x80:
                out.append(z)
            else:
                _put_varint(out, z)

        return enc_int

    def _bytes_encoder(self, dt: _types.DataType) -> Encode:
        is_binary = dt == _types.binary
        encoding = self.encoding
        check_utf8 = not is_binary and not self.string_as_binary
        max_length = getattr(dt, "max_length", None)

        def enc_bytes(v: Any, out: bytearray, crc: bytearray) -> None:
            if type(v) is str:
                if max_length is not None and len(v) > max_length:
                    dt.validate(v)
                b = v.encode(encoding)
            elif isinstance(v, bytes | bytearray | memoryview):
                b = bytes(v)
                if check_utf8:
                    dt.validate(b)
            elif is_binary:
                b = _types.binary.validate(v)
            else:
                b = dt.validate(v).encode(encoding)
            n = len(b)
            if n < 0x80:
                out.append(n)
            else:
                _put_varint(out, n)
            out += b
            crc += b

        return enc_bytes

    def _pair_encoder(self, dt: _types.DataType) -> Encode:
        if dt == _types.interval_day_time:

            def to_pair(v: Any) -> tuple[int, int]:
                return _t.timedelta_to_pair(dt.validate(v))

        else:
            tz = None if dt == _types.timestamp_ntz else self.tz

            def to_pair(v: Any) -> tuple[int, int]:
                return _t.timestamp_to_pair(dt.validate(v), tz)

        def enc_pair(v: Any, out: bytearray, crc: bytearray) -> None:
            seconds, nanos = to_pair(v)
            crc += _pack_q(seconds)
            crc += _pack_i(nanos)
            _put_varint(out, (seconds << 1) ^ (seconds >> 63))
            _put_varint(out, nanos << 1)

        return enc_pair

    def _decimal_encoder(self, dt: _types.Decimal) -> Encode:
        dec_type = _decimal.Decimal
        max_adjusted = dt.precision - dt.scale - 1

        def enc_decimal(v: Any, out: bytearray, crc: bytearray) -> None:
            if (
                type(v) is not dec_type
                or not v.is_finite()
                or (v.adjusted() > max_adjusted and not v.is_zero())
            ):
                v = dt.validate(v)
            b = str(v).encode("ascii")
            _put_varint(out, len(b))
            out += b
            crc += b

        return enc_decimal

    def _array_encoder(self, dt: _types.Array) -> Encode:
        enc_item = self.encoder(dt.value_type)

        def enc_array(v: Any, out: bytearray, crc: bytearray) -> None:
            if not isinstance(v, list | tuple):
                v = dt.validate(v)
            _put_varint(out, len(v))
            for item in v:
                if item is None:
                    out.append(1)
                else:
                    out.append(0)
                    enc_item(item, out, crc)

        return enc_array

    # ---------------------------------------------------------------- decoders
    def decoder(self, dt: _types.DataType) -> Callable:  # noqa: C901 - one branch per type
        """A function ``(buf, pos, crc) -> (value, pos)`` reading one untagged value."""
        if isinstance(dt, _types.IntegerType):

            def dec_int(buf: bytes, pos: int, crc: bytearray) -> tuple[int, int]:
                z, pos = _get_varint(buf, pos)
                v = (z >> 1) ^ -(z & 1)
                crc += _pack_q(v)
                return v, pos

            return dec_int
        if dt == _types.double:

            def dec_double(buf: bytes, pos: int, crc: bytearray) -> tuple[float, int]:
                end = pos + 8
                if end > len(buf):
                    raise _NeedMore
                crc += buf[pos:end]
                return _unpack_d(buf, pos)[0], end

            return dec_double
        if dt == _types.float_:

            def dec_float(buf: bytes, pos: int, crc: bytearray) -> tuple[float, int]:
                end = pos + 4
                if end > len(buf):
                    raise _NeedMore
                crc += buf[pos:end]
                return _unpack_f(buf, pos)[0], end

            return dec_float
        if dt == _types.boolean:

            def dec_bool(buf: bytes, pos: int, crc: bytearray) -> tuple[bool, int]:
                b = buf[pos]
                crc.append(b)
                return b != 0, pos + 1

            return dec_bool
        if (
            isinstance(dt, _types._StringType)
            or dt in (_types.binary, _types.json)
            or isinstance(dt, _types.Decimal)
        ):
            return self._bytes_decoder(dt)
        if dt in (_types.datetime, _types.date, _types.interval_year_month):
            if dt == _types.datetime:
                tz = self.tz
                to_datetime = _t.millis_to_datetime

                def convert(v: int) -> Any:
                    return to_datetime(v, tz)

            elif dt == _types.date:
                convert = _t.days_to_date
            else:

                def convert(v: int) -> Any:
                    return _types.Monthdelta(months=v)

            def dec_time(buf: bytes, pos: int, crc: bytearray) -> tuple[Any, int]:
                z, pos = _get_varint(buf, pos)
                v = (z >> 1) ^ -(z & 1)
                crc += _pack_q(v)
                try:
                    return convert(v), pos
                except (OverflowError, ValueError) as exc:
                    raise DatetimeOverflowError(f"{dt} value {v} is out of range: {exc}") from None

            return dec_time
        if dt in (_types.timestamp, _types.timestamp_ntz, _types.interval_day_time):
            if dt == _types.interval_day_time:
                make = _t.pair_to_timedelta
            else:
                tz = None if dt == _types.timestamp_ntz else self.tz

                def make(seconds: int, nanos: int) -> Any:
                    return _t.pair_to_timestamp(seconds, nanos, tz)

            def dec_pair(buf: bytes, pos: int, crc: bytearray) -> tuple[Any, int]:
                z, pos = _get_varint(buf, pos)
                seconds = (z >> 1) ^ -(z & 1)
                z, pos = _get_varint(buf, pos)
                nanos = (z >> 1) ^ -(z & 1)
                crc += _pack_q(seconds)
                crc += _pack_i(nanos)
                return make(seconds, nanos), pos

            return dec_pair
        if isinstance(dt, _types.Array):
            return self._array_decoder(dt.value_type)
        if isinstance(dt, _types.Map):
            dec_keys = self._array_decoder(dt.key_type)
            dec_values = self._array_decoder(dt.value_type)

            def dec_map(buf: bytes, pos: int, crc: bytearray) -> tuple[dict, int]:
                keys, pos = dec_keys(buf, pos, crc)
                values, pos = dec_values(buf, pos, crc)
                if len(keys) != len(values):
                    raise DataStreamError(f"map with {len(keys)} keys but {len(values)} values")
                return dict(zip(keys, values, strict=True)), pos

            return dec_map
        if isinstance(dt, _types.Struct):
            fields = [(name, self.decoder(t)) for name, t in dt.field_types.items()]

            def dec_struct(buf: bytes, pos: int, crc: bytearray) -> tuple[dict, int]:
                out = {}
                for name, dec in fields:
                    null = buf[pos]
                    pos += 1
                    if null:
                        out[name] = None
                    else:
                        out[name], pos = dec(buf, pos, crc)
                return out, pos

            return dec_struct
        if isinstance(dt, _types.Vector):
            width = 4 if dt.value_type == _types.float_ else 8
            unpack = _unpack_f if width == 4 else _unpack_d

            def dec_vector(buf: bytes, pos: int, crc: bytearray) -> tuple[list, int]:
                dim, pos = _get_varint(buf, pos)
                if dim != dt.dim:
                    raise DataStreamError(f"{dt} value has {dim} elements")
                end = pos + dim * width
                if end > len(buf):
                    raise _NeedMore
                crc += buf[pos:end]
                return [unpack(buf, p)[0] for p in range(pos, end, width)], end

            return dec_vector
        raise TypeError(f"type {dt} has no tunnel encoding")

    def _bytes_decoder(self, dt: _types.DataType) -> Callable:
        if dt == _types.binary or (self.string_as_binary and dt != _types.json):

            def convert(b: bytes) -> Any:
                return b

        elif dt == _types.json:

            def convert(b: bytes) -> Any:
                return _json.loads(b)

        elif isinstance(dt, _types.Decimal):
            dec_type = _decimal.Decimal

            def convert(b: bytes) -> Any:
                return dec_type(b.decode("ascii"))

        else:
            encoding = self.encoding

            def convert(b: bytes) -> Any:
                return b.decode(encoding)

        def dec_bytes(buf: bytes, pos: int, crc: bytearray) -> tuple[Any, int]:
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _get_varint(buf, pos)
            end = pos + n
            if end > len(buf):
                raise _NeedMore
            b = buf[pos:end]
            crc += b
            try:
                return convert(b), end
            except (UnicodeDecodeError, ValueError, _decimal.InvalidOperation) as exc:
                raise DataStreamError(f"invalid {dt} value {b[:40]!r}: {exc}") from None

        return dec_bytes

    def _array_decoder(self, item_type: _types.DataType) -> Callable:
        dec_item = self.decoder(item_type)

        def dec_array(buf: bytes, pos: int, crc: bytearray) -> tuple[list, int]:
            n, pos = _get_varint(buf, pos)
            if n > len(buf) - pos:  # every element takes at least its null flag
                if n > (1 << 31):
                    raise DataStreamError(f"array length {n} is impossible")
                raise _NeedMore
            out = []
            append = out.append
            for _ in range(n):
                null = buf[pos]
                pos += 1
                if null:
                    append(None)
                else:
                    v, pos = dec_item(buf, pos, crc)
                    append(v)
            return out, pos

        return dec_array


class _NeedMore(Exception):
    """The buffer ends inside a value: read more input and parse the record again."""


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint of up to 10 bytes. Raises IndexError past the end."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DataStreamError("varint longer than 10 bytes")


def _codecs(tz: _dt.tzinfo | None, encoding: str, string_as_binary: bool) -> _Codecs:
    """The value codecs; ``tz`` None means the process's local zone."""
    return _Codecs(tz if tz is not None else _t.resolve_timezone(None), encoding, string_as_binary)


# One entry per column: (tag bytes, field number as int32 LE, encode function, column).
Plan = list[tuple[bytes, bytes, Encode, Column]]


def _encode_plan(columns: Sequence[Column], codecs: _Codecs) -> Plan:
    return [
        (tag(i + 1, wire_type_of(c.type)), _pack_i(i + 1), codecs.encoder(c.type), c)
        for i, c in enumerate(columns)
    ]


def _value_error(
    plan: Plan, row: Sequence[Any], exc: Exception, row_index: int
) -> RecordValidationError:
    """Find the column whose value failed to encode and say what is wrong with it."""
    for (_tag, _field, enc, col), value in zip(plan, row, strict=False):
        if value is None:
            continue
        try:
            col.type.validate(value)
            enc(value, bytearray(), bytearray())
        except Exception as col_exc:  # noqa: BLE001
            return RecordValidationError(
                f"column {col.name!r} ({col.type}): {col_exc}; value {value!r}",
                column=col.name,
                column_type=col.type.name,
                value=value,
                row=row_index,
            )
    return RecordValidationError(f"cannot encode row: {exc}", row=row_index)


def _length_error(row: Sequence[Any], n_columns: int, row_index: int) -> RecordValidationError:
    return RecordValidationError(
        f"row has {len(row)} values but the schema has {n_columns} columns",
        row=row_index,
        value=list(row),
    )


def _null_error(col: Column, row_index: int) -> RecordValidationError:
    return RecordValidationError(
        f"column {col.name!r} ({col.type}) is NOT NULL but the value is null",
        column=col.name,
        column_type=col.type.name,
        row=row_index,
    )


class PyRecordEncoder:
    """Encodes rows into one record body: ``encode(row)`` per row, then ``footer()``.

    ``columns`` are the data columns in wire order (partition columns are never encoded).
    Rows are sequences in that order, a :class:`Record`, or anything indexable; extra
    trailing values (partition values) are ignored. Naive DATETIME and TIMESTAMP values are
    wall-clock times in ``tz`` (None: the process's local zone); ``string_as_binary``
    writes STRING values without UTF-8 checks.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        tz: _dt.tzinfo | None = None,
        encoding: str = "utf-8",
        string_as_binary: bool = False,
    ):
        self.columns = list(columns)
        self._plan = _encode_plan(self.columns, _codecs(tz, encoding, string_as_binary))
        self._not_null = [c.name for c in self.columns if not c.nullable]
        self.count = 0
        self._crccrc = 0
        self._pending_crcs = bytearray()

    def encode(self, row: Sequence[Any], out: bytearray) -> None:
        """Append one record to ``out``. Raises :class:`RecordValidationError`."""
        crc = bytearray()
        start = len(out)
        try:
            for (tag_bytes, field_bytes, enc, _col), value in zip(self._plan, row, strict=False):
                if value is None:
                    continue
                out += tag_bytes
                crc += field_bytes
                enc(value, out, crc)
        except RecordValidationError:
            del out[start:]
            raise
        except Exception as exc:  # noqa: BLE001 - turned into an error naming the column
            del out[start:]
            raise _value_error(self._plan, row, exc, self.count) from None
        if len(row) < len(self._plan):
            del out[start:]
            raise _length_error(row, len(self._plan), self.count)
        if self._not_null:
            self._check_not_null(row, out, start)
        value = crc32c(crc)
        out += _END_RECORD_TAG
        _put_varint(out, value)
        self._pending_crcs += _pack_I(value)
        if len(self._pending_crcs) >= 65536:
            self._fold_crcs()
        self.count += 1

    def _check_not_null(self, row: Sequence[Any], out: bytearray, start: int) -> None:
        for (_tag, _field, _enc, col), value in zip(self._plan, row, strict=False):
            if value is None and not col.nullable:
                del out[start:]
                raise _null_error(col, self.count)

    def try_encode(self, row: Any, out: bytearray) -> bool:
        """Encode ``row`` as :meth:`encode` does and return True if it is a :class:`Record`
        or a tuple or list of exactly the encoder's columns; else encode nothing and return
        False (the writers' call per row)."""
        kind = type(row)
        if kind is Record:
            row = row.values
        elif not ((kind is tuple or kind is list) and len(row) == len(self._plan)):
            return False
        self.encode(row, out)
        return True

    def encode_many(self, rows: Iterable[Sequence[Any]], out: bytearray) -> None:
        """Append one record per row to ``out``: the same as calling :meth:`encode` per row.

        On an error the rows before the bad one stay encoded (and counted), as they would
        with a loop of ``encode`` calls; the error's ``row`` is the bad row's index.
        """
        for row in rows:
            self.encode(row, out)

    def encode_arrow(self, batch: Any, out: bytearray) -> None:
        """Append one record per row of a ``pyarrow.RecordBatch`` (or ``Table``) whose
        columns are the data columns in wire order (the session's Arrow schema); columns
        after those are ignored, as extra values of a row are.

        The reference converts each column with ``to_pylist`` and encodes the rows, which is
        the definition the compiled encoder's column-wise path must match.
        """
        n = min(batch.num_columns, len(self._plan))
        values = [batch.column(i).to_pylist() for i in range(n)]
        self.encode_many(zip(*values, strict=True) if values else [()] * batch.num_rows, out)

    def _fold_crcs(self) -> None:
        self._crccrc = crc32c(self._pending_crcs, self._crccrc)
        self._pending_crcs.clear()

    def footer(self) -> bytes:
        """The count and checksum trailer; the encoder then starts a new body."""
        self._fold_crcs()
        out = bytearray(_META_COUNT_TAG)
        _put_varint(out, zigzag(self.count))
        out += _META_CHECKSUM_TAG
        _put_varint(out, self._crccrc)
        self.count = 0
        self._crccrc = 0
        return bytes(out)


class PyRecordDecoder:
    """Decodes record bodies read from a binary stream, verifying every checksum.

    ``columns`` are the columns as numbered on the wire: the session's data columns, or the
    requested columns when a download selected some. Iterating yields value lists.
    Errors carry ``offset`` (byte offset in the body) and ``row`` (index in the body).
    DATETIME and TIMESTAMP values are handed out as wall-clock times in ``tz`` (None: the
    process's local zone); ``string_as_binary`` hands out STRING values as ``bytes``;
    ``require_footer`` makes a body that ends without its footer an error.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        stream: Any,
        tz: _dt.tzinfo | None = None,
        encoding: str = "utf-8",
        string_as_binary: bool = False,
        require_footer: bool = True,
        read_size: int = 65536,
    ):
        self.columns = list(columns)
        codecs = _codecs(tz, encoding, string_as_binary)
        self._decoders = [codecs.decoder(c.type) for c in self.columns]
        self._wire_types = [wire_type_of(c.type) for c in self.columns]
        self._stream = stream
        self._read_size = read_size
        self._require_footer = require_footer
        self._buf = b""
        self._pos = 0
        self._base = 0  # body offset of self._buf[0]
        self._eof = False
        self.count = 0
        self._crccrc = 0
        self._pending_crcs = bytearray()
        self.finished = False
        self.metrics: dict | None = None

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _fill(self) -> bool:
        """Read more input; False at end of stream."""
        if self._eof:
            return False
        data = self._stream.read(self._read_size)
        if not data:
            self._eof = True
            return False
        self._base += self._pos
        self._buf = self._buf[self._pos :] + bytes(data)
        self._pos = 0
        return True

    def __iter__(self):
        return self

    def __next__(self) -> list:
        row = self.read_row()
        if row is None:
            raise StopIteration
        return row

    def read_rows(self, max_rows: int) -> list[tuple]:
        """Up to ``max_rows`` rows as tuples; fewer only at the end of the body, ``[]`` after it.

        An error is raised as soon as it is met: rows decoded earlier in the same call are
        not returned, and the error's ``row`` is the index of the bad row in the body.
        """
        rows = []
        while len(rows) < max_rows:
            row = self.read_row()
            if row is None:
                break
            rows.append(tuple(row))
        return rows

    def read_row(self) -> list | None:
        """The next row's values (None where null), or None after the footer."""
        if self.finished:
            return None
        while True:
            try:
                return self._parse_record()
            except (_NeedMore, IndexError):
                if not self._fill():
                    return self._at_eof()
            except DataStreamError as exc:
                raise exc.with_context(offset=self.offset, row=self.count) from None
            except struct.error as exc:
                raise DataStreamError(str(exc), offset=self.offset, row=self.count) from None

    def _at_eof(self) -> None:
        if self._pos == len(self._buf) and not self._require_footer:
            self.finished = True
            return None
        where = "inside a record" if self._pos < len(self._buf) else "before the footer"
        raise StreamTruncatedError(
            f"record stream ended {where} after {self.count} rows",
            offset=self._base + len(self._buf),
            row=self.count,
        )

    def _parse_record(self) -> list | None:
        buf = self._buf
        pos = self._pos
        ncols = len(self._decoders)
        row = [None] * ncols
        crc = bytearray()
        decoders = self._decoders
        wire_types = self._wire_types
        while True:
            t = buf[pos]
            if t < 0x80:
                pos += 1
            else:
                t, pos = _get_varint(buf, pos)
            field = t >> 3
            if 1 <= field <= ncols:
                if (t & 7) != wire_types[field - 1]:
                    raise DataStreamError(
                        f"field {field} ({self.columns[field - 1].name}) has wire type {t & 7}"
                    )
                crc += _pack_i(field)
                row[field - 1], pos = decoders[field - 1](buf, pos, crc)
                continue
            if field == END_RECORD:
                value, pos = _get_varint(buf, pos)
                expected = crc32c(crc)
                if value & 0xFFFFFFFF != expected:
                    raise ChecksumError(
                        f"record CRC {value & 0xFFFFFFFF:#010x} != computed {expected:#010x}"
                    )
                self._pending_crcs += _pack_I(expected)
                if len(self._pending_crcs) >= 65536:
                    self._crccrc = crc32c(self._pending_crcs, self._crccrc)
                    self._pending_crcs.clear()
                self._pos = pos
                self.count += 1
                return row
            if field == META_COUNT and not crc:
                self._pos, self.metrics = _parse_footer(
                    buf, pos, self.count, crc32c(self._pending_crcs, self._crccrc)
                )
                self.finished = True
                return None
            if field == 0:
                continue
            raise DataStreamError(f"unexpected field number {field} (schema has {ncols} columns)")


def _parse_footer(buf: bytes, pos: int, count: int, stream_crc: int) -> tuple[int, dict | None]:
    """Check the footer after its META_COUNT tag at ``pos``; returns (end, metrics).

    ``count`` is the number of records read and ``stream_crc`` the CRC32C of their CRCs.
    Raises :class:`DataStreamError` or :class:`ChecksumError`, and ``_NeedMore`` or
    ``IndexError`` when ``buf`` ends inside the footer.
    """
    z, pos = _get_varint(buf, pos)
    footer_count = (z >> 1) ^ -(z & 1)
    t, pos = _get_varint(buf, pos)
    metrics = None
    if t >> 3 == 1 and t & 7 == WIRE_LENGTH:  # optional metrics block
        n, pos = _get_varint(buf, pos)
        end = pos + n
        if end > len(buf):
            raise _NeedMore
        raw = buf[pos:end]
        expected = crc32c(raw, crc32c(_pack_i(1)))
        t, pos = _get_varint(buf, end)
        if t >> 3 != END_METRICS:
            raise DataStreamError(f"metrics block ends with field {t >> 3}")
        value, pos = _get_varint(buf, pos)
        if value & 0xFFFFFFFF != expected:
            raise ChecksumError("metrics CRC mismatch")
        metrics = _json.loads(raw)
        t, pos = _get_varint(buf, pos)
    if t >> 3 != META_CHECKSUM:
        raise DataStreamError(f"footer has field {t >> 3} where the checksum belongs")
    value, pos = _get_varint(buf, pos)
    if footer_count != count:
        raise DataStreamError(f"footer counts {footer_count} rows but the body has {count}")
    if value & 0xFFFFFFFF != stream_crc:
        raise ChecksumError(
            f"stream checksum {value & 0xFFFFFFFF:#010x} != computed {stream_crc:#010x}"
        )
    return pos, metrics


def encode_rows(columns: Sequence[Column], rows: Iterable[Sequence[Any]], **settings: Any) -> bytes:
    """One complete body (records and footer) of ``rows``: a convenience for tests and tools."""
    encoder = RecordEncoder(columns, **settings)
    out = bytearray()
    for row in rows:
        encoder.encode(row, out)
    out += encoder.footer()
    return bytes(out)


# The pure-Python classes are the reference implementation; the compiled ones (same bytes,
# values and errors; built by setup.py from _record_codec_c.pyx) are used whenever the
# extension was built. Both pass the same tests.
try:
    # Imported as a module: the extension has no .py source, and static import analysis
    # (import-linter) resolves `from . import _record_codec_c` to this package.
    from . import _record_codec_c
except ImportError:  # not built (e.g. a source checkout without a compiler)
    _record_codec_c = None
    RecordEncoder = PyRecordEncoder
    RecordDecoder = PyRecordDecoder
    RecordIterator = PyRecordIterator
else:
    RecordEncoder = _record_codec_c.CRecordEncoder
    RecordDecoder = _record_codec_c.CRecordDecoder
    RecordIterator = _record_codec_c.CRecordIterator


def direct_write(encoder: Any, writer: Any) -> Any:
    """The compiled per-row ``write`` for a record writer using ``encoder``
    (``_record_codec_c.CDirectWrite``, disarmed), or None when ``encoder`` is not the
    compiled encoder: the writer's own ``write`` method then does the same, in Python."""
    if _record_codec_c is None or type(encoder) is not _record_codec_c.CRecordEncoder:
        return None
    return _record_codec_c.CDirectWrite(encoder, writer)
