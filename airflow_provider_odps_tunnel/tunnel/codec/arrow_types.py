"""ODPS types as Arrow types (protocol §6.3), and shaping user data into a session's schema.

The Arrow layout of a tunnel body is fixed by the table schema: the server and the client
each derive the same Arrow schema, and only record batches travel. This module derives
it (:func:`odps_schema_to_arrow_schema`), maps Arrow types back to ODPS types, and turns a
``pyarrow.Table``, ``RecordBatch`` or pandas ``DataFrame`` into batches of exactly that
schema (:func:`conform_table`), with the same value conventions as :class:`~.record.Record`:

* DATETIME and TIMESTAMP are instants. A naive value is a wall-clock time in the zone
  the caller passes (the writers pass ``options.local_timezone``'s); an aware value is the
  instant it names.
  On the wire DATETIME is ``timestamp[ms]`` and TIMESTAMP ``timestamp[ns]``, both UTC.
* TIMESTAMP_NTZ is a wall-clock time stored as if it were UTC; an aware value contributes
  its own wall clock.
* Sub-millisecond DATETIME values are floored, as the record encoder does.

Each schema field carries its ODPS type string in the field metadata (``odps_type``),
which is how :func:`conform_table` tells TIMESTAMP from TIMESTAMP_NTZ or JSON from STRING.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json as _json
import math
import os
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import RecordValidationError
from . import datetimes
from . import types as odps_types
from .schema import Column, TableSchema

__all__ = [
    "TIMESTAMP_STRUCT_TYPE",
    "ODPS_TYPE_KEY",
    "odps_type_to_arrow_type",
    "odps_schema_to_arrow_schema",
    "arrow_type_to_odps_type",
    "field_odps_type",
    "conform_table",
    "instants_to_wall_clock",
    "timestamp_structs_to_ns",
]

#: The instance-download layout of TIMESTAMP values, and the layout of INTERVAL_DAY_TIME.
TIMESTAMP_STRUCT_TYPE = pa.struct([("sec", pa.int64()), ("nano", pa.int32())])
#: Field-metadata key holding a field's ODPS type string.
ODPS_TYPE_KEY = b"odps_type"

_NANOS = 1_000_000_000
#: Largest value-data size of a ``string``/``binary`` array (32-bit offsets).
MAX_32BIT_OFFSET = 2**31 - 1

_SIMPLE_TO_ARROW: dict[odps_types.DataType, pa.DataType] = {
    odps_types.tinyint: pa.int8(),
    odps_types.smallint: pa.int16(),
    odps_types.int_: pa.int32(),
    odps_types.bigint: pa.int64(),
    odps_types.float_: pa.float32(),
    odps_types.double: pa.float64(),
    odps_types.boolean: pa.bool_(),
    odps_types.string: pa.string(),
    odps_types.json: pa.string(),
    odps_types.binary: pa.binary(),
    odps_types.date: pa.date32(),
    odps_types.datetime: pa.timestamp("ms"),
    odps_types.timestamp: pa.timestamp("ns"),
    odps_types.timestamp_ntz: pa.timestamp("ns"),
    odps_types.interval_day_time: TIMESTAMP_STRUCT_TYPE,
}
_TIME_TYPES = (odps_types.datetime, odps_types.timestamp, odps_types.timestamp_ntz)
_UTC_NAMES = frozenset(
    ["UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Universal", "Etc/Universal"]
)


def odps_type_to_arrow_type(
    t: odps_types.DataType | str, timestamp_as_struct: bool = False
) -> pa.DataType:
    """The Arrow type a tunnel body uses for ODPS type ``t``.

    ``timestamp_as_struct`` selects the instance-download layout, where a TIMESTAMP or
    TIMESTAMP_NTZ *column* is ``struct<sec:int64, nano:int32>``. It applies to ``t`` itself
    only: pyodps, the one client of that path, rewrites top-level columns only, so nested
    timestamps keep ``timestamp[ns]``. INTERVAL_YEAR_MONTH has no Arrow form.
    """
    t = odps_types.parse_type(t)
    if timestamp_as_struct and t in (odps_types.timestamp, odps_types.timestamp_ntz):
        return TIMESTAMP_STRUCT_TYPE
    simple = _SIMPLE_TO_ARROW.get(t)
    if simple is not None:
        return simple
    if isinstance(t, odps_types.Decimal):
        if t.precision > 38:
            return pa.decimal256(t.precision, t.scale)
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, odps_types.Char | odps_types.Varchar):
        return pa.string()
    if isinstance(t, odps_types.Array | odps_types.Vector):
        return pa.list_(odps_type_to_arrow_type(t.value_type))
    if isinstance(t, odps_types.Map):
        return pa.map_(odps_type_to_arrow_type(t.key_type), odps_type_to_arrow_type(t.value_type))
    if isinstance(t, odps_types.Struct):
        return pa.struct(
            [pa.field(name, odps_type_to_arrow_type(ft)) for name, ft in t.field_types.items()]
        )
    raise TypeError(f"ODPS type {t} has no Arrow representation in the tunnel")


def odps_schema_to_arrow_schema(
    schema_or_columns: TableSchema | Sequence[Column], timestamp_as_struct: bool = False
) -> pa.Schema:
    """The Arrow schema of a body: the data columns of a table schema, or the given columns.

    Each field's metadata records the column's ODPS type; NOT NULL columns give
    non-nullable fields.
    """
    columns = (
        schema_or_columns.simple_columns
        if isinstance(schema_or_columns, TableSchema)
        else schema_or_columns
    )
    return pa.schema(
        [
            pa.field(
                col.name,
                odps_type_to_arrow_type(col.type, timestamp_as_struct),
                nullable=col.nullable,
                metadata={ODPS_TYPE_KEY: col.type.name.encode()},
            )
            for col in columns
        ]
    )


def arrow_type_to_odps_type(pa_type: pa.DataType) -> odps_types.DataType:
    """The ODPS type for an Arrow type, for creating a table from Arrow data.

    ``timestamp`` in seconds or milliseconds (and ``date64``) becomes DATETIME, finer units
    TIMESTAMP; ``struct<sec:int64, nano:int32>`` is read as TIMESTAMP, as pyodps does.
    """
    t = pa_type
    if pa.types.is_dictionary(t):
        return arrow_type_to_odps_type(t.value_type)
    for odps_type, arrow_type in _SIMPLE_TO_ARROW.items():
        if arrow_type == t and odps_type not in (
            odps_types.json,
            odps_types.timestamp_ntz,
            odps_types.interval_day_time,
        ):
            return odps_type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return odps_types.string
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return odps_types.binary
    if pa.types.is_timestamp(t):
        return odps_types.datetime if t.unit in ("s", "ms") else odps_types.timestamp
    if pa.types.is_date64(t):
        return odps_types.datetime
    if pa.types.is_decimal(t):
        if t.precision > 38:
            if (t.precision, t.scale) == (54, 18):
                return odps_types.Decimal()
            raise TypeError(f"{t} is wider than any ODPS decimal")
        return odps_types.Decimal(t.precision, t.scale)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return odps_types.Array(arrow_type_to_odps_type(t.value_type))
    if pa.types.is_map(t):
        return odps_types.Map(
            arrow_type_to_odps_type(t.key_type), arrow_type_to_odps_type(t.item_type)
        )
    if pa.types.is_struct(t):
        return odps_types.Struct([(f.name, arrow_type_to_odps_type(f.type)) for f in t])
    raise TypeError(f"Arrow type {t} has no ODPS equivalent")


def field_odps_type(field: pa.Field) -> odps_types.DataType:
    """The ODPS type of a schema field: from its metadata, else inferred from its type."""
    meta = field.metadata or {}
    if ODPS_TYPE_KEY in meta:
        return odps_types.parse_type(meta[ODPS_TYPE_KEY].decode())
    return arrow_type_to_odps_type(field.type)


# --------------------------------------------------------------------------- time zones


@functools.lru_cache(maxsize=64)
def _arrow_knows_zone(name: str) -> bool:
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


@functools.lru_cache(maxsize=64)
def _zone_name(tz: _dt.tzinfo) -> str | None:
    """A name Arrow compute resolves to exactly ``tz``, or None.

    A ``ZoneInfo`` counts when it is the cached instance of its key, or when it is the
    system zone read from ``/etc/localtime`` and that file links into a zoneinfo tree;
    fixed offsets become ``+HH:MM``.
    """
    if isinstance(tz, zoneinfo.ZoneInfo):
        key = tz.key
        if key == "localtime":
            target = os.path.realpath("/etc/localtime")
            marker = "/zoneinfo/"
            key = target.split(marker, 1)[1] if marker in target else None
        else:
            try:
                if zoneinfo.ZoneInfo(key) is not tz:
                    key = None
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                key = None
        return key if key and _arrow_knows_zone(key) else None
    if isinstance(tz, _dt.timezone):
        offset = tz.utcoffset(None)
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return None


def _is_utc(tz: _dt.tzinfo, name: str | None) -> bool:
    return tz is _dt.UTC or name in _UTC_NAMES or name == "+00:00"


def _naive(arr: pa.Array) -> pa.Array:
    return arr.cast(pa.timestamp(arr.type.unit))


def _wall_to_utc(arr: pa.Array, tz: _dt.tzinfo, strict: bool) -> pa.Array:
    """Naive wall-clock timestamps in ``tz`` as naive UTC timestamps (same unit).

    Non-strict (DATETIME) follows ``datetime.replace(tzinfo=tz)``, i.e. ``fold=0``: a
    repeated wall time is its first occurrence and a skipped one uses the offset in force
    before the gap. Strict (TIMESTAMP) refuses both, as ``pandas.Timestamp.tz_localize``
    does in the record encoder.
    """
    name = _zone_name(tz)
    if _is_utc(tz, name):
        return arr
    if name is not None:
        if strict:
            return _naive(pc.assume_timezone(arr, timezone=name))
        earliest = pc.assume_timezone(
            arr, timezone=name, ambiguous="earliest", nonexistent="earliest"
        )
        offset = pc.subtract(pc.local_timestamp(earliest), _naive(earliest))
        return pc.subtract(arr, offset)
    return _wall_to_utc_pandas(arr, tz, strict)


def _wall_to_utc_pandas(arr: pa.Array, tz: _dt.tzinfo, strict: bool) -> pa.Array:
    """:func:`_wall_to_utc` for zones Arrow cannot name, through pandas."""
    import pandas as pd

    unit = arr.type.unit
    series = arr.to_pandas()
    policy = "raise" if strict else "NaT"
    try:
        local = series.dt.tz_localize(tz, ambiguous=policy, nonexistent=policy)
    except ValueError as exc:  # pandas' ambiguous/nonexistent time errors
        raise _ConformError(str(exc)) from exc
    utc = local.dt.tz_convert("UTC").dt.tz_localize(None).astype(f"datetime64[{unit}]")
    ints = utc.to_numpy().view("int64").copy()
    walls = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
    missing = series.isna().to_numpy()
    one = pd.Timedelta(1, unit=unit)
    for i in (local.isna().to_numpy() & ~missing).nonzero()[0]:
        # A repeated or skipped wall time: fold=0, as datetime.replace(tzinfo=tz) gives.
        offset = series.iloc[i].to_pydatetime(warn=False).replace(tzinfo=tz).utcoffset()
        ints[i] = int(walls[i]) - pd.Timedelta(offset) // one
    return pa.array(ints, type=pa.timestamp(unit), mask=missing if missing.any() else None)


def _utc_to_wall(arr: pa.Array, tz: _dt.tzinfo) -> pa.Array:
    """Naive UTC timestamps as naive wall-clock timestamps in ``tz`` (same unit)."""
    name = _zone_name(tz)
    if _is_utc(tz, name):
        return arr
    unit = arr.type.unit
    if name is not None:
        return pc.local_timestamp(arr.cast(pa.timestamp(unit, name)))
    series = arr.to_pandas().dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
    return pa.Array.from_pandas(series.astype(f"datetime64[{unit}]"), type=pa.timestamp(unit))


def timestamp_structs_to_ns(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``struct<sec:int64, nano:int32>`` values as ``timestamp[ns]`` of the same instant."""
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array(
            [timestamp_structs_to_ns(c) for c in arr.chunks], type=pa.timestamp("ns")
        )
    valid = arr.is_valid()
    sec = pc.if_else(valid, arr.field("sec"), None)
    nano = pc.if_else(valid, arr.field("nano"), None).cast(pa.int64())
    return pc.add_checked(pc.multiply_checked(sec, _NANOS), nano).cast(pa.timestamp("ns"))


def _has_zoned_time(t: odps_types.DataType) -> bool:
    if t in (odps_types.datetime, odps_types.timestamp):
        return True
    return any(_has_zoned_time(c) for c in _children(t))


def _children(t: odps_types.DataType) -> list[odps_types.DataType]:
    if isinstance(t, odps_types.Array | odps_types.Vector):
        return [t.value_type]
    if isinstance(t, odps_types.Map):
        return [t.key_type, t.value_type]
    if isinstance(t, odps_types.Struct):
        return list(t.field_types.values())
    return []


def changes_to_wall_clock(t: odps_types.DataType, tz: _dt.tzinfo) -> bool:
    """Whether :func:`instants_to_wall_clock` changes values of type ``t`` in zone ``tz``
    (False: it returns them as they are)."""
    return _has_zoned_time(t) and not _is_utc(tz, _zone_name(tz))


def instants_to_wall_clock(
    arr: pa.Array | pa.ChunkedArray, t: odps_types.DataType, tz: _dt.tzinfo
) -> pa.Array | pa.ChunkedArray:
    """Turn the UTC instants of DATETIME/TIMESTAMP values (nested ones too) into naive
    wall-clock times in ``tz``: what a reader hands out, matching the record reader."""
    if not _has_zoned_time(t):
        return arr
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([instants_to_wall_clock(c, t, tz) for c in arr.chunks], arr.type)
    if t in (odps_types.datetime, odps_types.timestamp):
        return _utc_to_wall(arr, tz)
    return _rebuild(
        arr, t, lambda child, child_t, _: instants_to_wall_clock(child, child_t, tz), arr.type
    )


def _rebuild(
    arr: pa.Array,
    t: odps_types.DataType,
    convert: Callable[[pa.Array, odps_types.DataType, pa.DataType], pa.Array],
    target: pa.DataType,
) -> pa.Array:
    """A list, map or struct array of type ``target`` from ``arr`` with ``convert`` applied
    to its children (each given its ODPS type and its Arrow type in ``target``)."""
    mask = arr.is_null() if arr.null_count else None
    if isinstance(t, odps_types.Array | odps_types.Vector | odps_types.Map):
        offsets = arr.offsets
        start = offsets[0].as_py()
        length = offsets[-1].as_py() - start
        if start:
            offsets = pc.subtract(offsets, pa.scalar(start, offsets.type))
        if isinstance(t, odps_types.Map):
            keys = convert(arr.keys.slice(start, length), t.key_type, target.key_type)
            items = convert(arr.items.slice(start, length), t.value_type, target.item_type)
            return pa.MapArray.from_arrays(offsets, keys, items, type=target, mask=mask)
        values = convert(arr.values.slice(start, length), t.value_type, target.value_type)
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)
    children = [
        convert(arr.field(i), ft, target.field(i).type)
        for i, ft in enumerate(t.field_types.values())
    ]
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


# --------------------------------------------------------------------------- conforming


class _ConformError(ValueError):
    """A value that cannot be converted; ``row`` is its index when the check knows it."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowNotImplementedError,
    pa.ArrowTypeError,
    _ConformError,
)


def conform_table(
    data: Any, arrow_schema: pa.Schema, timezone: _dt.tzinfo | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``arrow_schema`` holding ``data``.

    ``data`` is a ``pyarrow.RecordBatch``, ``pyarrow.Table`` or pandas ``DataFrame``.
    Columns are matched by name without regard to case and put in schema order; values are
    converted with safe casts and the conventions of this module's docstring, naive times
    being read in ``timezone`` (default: the process's local zone). A missing or extra
    column, a value that does not convert, or a null in a NOT NULL column raises
    :class:`RecordValidationError` naming the column, its ODPS type and the first
    offending row and value. A ``string``/``binary`` column too large for 32-bit offsets
    is split, so one input may give several batches.
    """
    tz = timezone if timezone is not None else datetimes.resolve_timezone(None)
    if (
        isinstance(data, pa.RecordBatch)
        and _sent_as_is(data.schema, arrow_schema, tz)
        and not any(data.column(i).null_count for i, f in enumerate(arrow_schema) if not f.nullable)
    ):
        # Already the table's layout, in values that need no conversion (the common case
        # of a writer fed the batches it reads): only the schema's metadata is put on.
        yield pa.RecordBatch.from_arrays(data.columns, schema=arrow_schema)
        return
    source = _Source(data)
    targets = {field.name.lower(): field for field in arrow_schema}
    extra = [name for key, name in source.names.items() if key not in targets]
    if extra:
        raise RecordValidationError(
            f"column {extra[0]!r} of the data is not in the table, whose columns are "
            f"{arrow_schema.names}",
            column=extra[0],
        )
    arrays = []
    for field in arrow_schema:
        t = field_odps_type(field)
        key = field.name.lower()
        if key not in source.names:
            raise RecordValidationError(
                f"column {field.name!r} ({t}) is missing from the data",
                column=field.name,
                column_type=t.name,
            )
        values, final = source.column(key, field.name, t, field.type, tz)
        if not final:
            values = _conform_column(values, field.name, t, field.type, tz)
        if not field.nullable and values.null_count:
            row = pc.index(values.is_null(), True).as_py()
            raise RecordValidationError(
                f"column {field.name!r} ({t}) is NOT NULL but row {row} is null",
                column=field.name,
                column_type=t.name,
                row=row,
            )
        arrays.append(values)
    if source.is_batch and not any(isinstance(a, pa.ChunkedArray) for a in arrays):
        yield pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)
    else:
        yield from pa.Table.from_arrays(arrays, schema=arrow_schema).to_batches()


@functools.lru_cache(maxsize=32)
def _sent_as_is(given: pa.Schema, arrow_schema: pa.Schema, tz: _dt.tzinfo) -> bool:
    """Whether batches of schema ``given`` hold ``arrow_schema``'s columns, in its order
    and types, with values that need no conversion in zone ``tz``."""
    return given.equals(arrow_schema) and all(
        _needs_no_work(field_odps_type(field), tz) for field in arrow_schema
    )


class _Source:
    """The columns of the user's data, by lower-cased name."""

    def __init__(self, data: Any):
        self.is_batch = isinstance(data, pa.RecordBatch)
        if isinstance(data, pa.RecordBatch | pa.Table):
            names = data.schema.names
            self._arrow = data
            self._frame = None
        else:
            import pandas as pd

            if not isinstance(data, pd.DataFrame):
                raise TypeError(
                    "expected a pyarrow RecordBatch or Table or a pandas DataFrame, "
                    f"got {type(data).__name__}"
                )
            names = [str(name) for name in data.columns]
            self._arrow = None
            self._frame = data
        self.names: dict[str, str] = {}
        self._positions: dict[str, int] = {}
        for position, name in enumerate(names):
            key = name.lower()
            if key in self.names:
                raise RecordValidationError(
                    f"the data has two columns named {self.names[key]!r} and {name!r}",
                    column=name,
                )
            self.names[key] = name
            self._positions[key] = position

    def column(
        self, key: str, name: str, t: odps_types.DataType, target: pa.DataType, tz: _dt.tzinfo
    ) -> tuple[pa.Array | pa.ChunkedArray, bool]:
        """The column as Arrow data, and whether it is already in its final form."""
        position = self._positions[key]
        if self._arrow is not None:
            return self._arrow.column(position), False
        series = self._frame.iloc[:, position]
        structured = bool(_children(t)) or t in (odps_types.json, odps_types.interval_day_time)
        if not (structured and series.dtype == object):
            try:
                return pa.Array.from_pandas(series), False
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass  # mixed Python objects: convert value by value below
        return _python_column(series.tolist(), name, t, target, tz), True


def _conform_column(
    values: pa.Array | pa.ChunkedArray,
    name: str,
    t: odps_types.DataType,
    target: pa.DataType,
    tz: _dt.tzinfo,
) -> pa.Array | pa.ChunkedArray:
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = []
    row0 = 0
    for chunk in chunks:
        for piece in _split_large(chunk, target):
            out.append(_conform_checked(piece, name, t, target, tz, row0))
            row0 += len(piece)
    if isinstance(values, pa.Array) and len(out) == 1:
        return out[0]
    return pa.chunked_array(out, type=target)


def _split_large(arr: pa.Array, target: pa.DataType) -> list[pa.Array]:
    """Slices of a large_string/large_binary array whose data each fit 32-bit offsets."""
    if target not in (pa.string(), pa.binary()) or not (
        pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    ):
        return [arr]
    import numpy as np

    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    limit = MAX_32BIT_OFFSET
    if offsets[-1] - offsets[0] <= limit:
        return [arr]
    pieces = []
    start = 0
    while start < len(arr):
        end = int(np.searchsorted(offsets, offsets[start] + limit, side="right")) - 1
        end = min(max(end, start + 1), len(arr))
        pieces.append(arr.slice(start, end - start))
        start = end
    return pieces


def _conform_checked(
    arr: pa.Array,
    name: str,
    t: odps_types.DataType,
    target: pa.DataType,
    tz: _dt.tzinfo,
    row0: int,
) -> pa.Array:
    """:func:`_conform_array`, turning a failure into an error that names the first bad row."""
    try:
        return _conform_array(arr, t, target, tz)
    except _CONVERSION_ERRORS as exc:
        row = exc.row if isinstance(exc, _ConformError) else None
        if row is None:
            row = _first_failing_row(arr, lambda part: _conform_array(part, t, target, tz))
        raise _validation_error(name, t, target, arr, row, row0, exc) from exc


def _first_failing_row(arr: pa.Array, convert: Callable[[pa.Array], Any]) -> int | None:
    """The first row whose prefix fails to convert, found by bisection over prefixes."""
    good, bad = 0, len(arr)
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            convert(arr.slice(0, middle))
        except _CONVERSION_ERRORS:
            bad = middle
        else:
            good = middle
    return bad - 1 if bad else None


def _validation_error(
    name: str,
    t: odps_types.DataType,
    target: pa.DataType,
    arr: Any,
    row: int | None,
    row0: int,
    exc: Exception,
) -> RecordValidationError:
    value = None
    where = ""
    if row is not None:
        try:
            value = arr[row].as_py() if isinstance(arr, pa.Array) else arr[row]
        except (pa.ArrowException, ValueError, OverflowError):
            value = str(arr[row])
        where = f" at row {row0 + row} (value {value!r})"
    return RecordValidationError(
        f"column {name!r} ({t}): cannot convert to {target}{where}: {exc}",
        column=name,
        column_type=t.name,
        value=value,
        row=None if row is None else row0 + row,
    )


def _conform_array(
    arr: pa.Array, t: odps_types.DataType, target: pa.DataType, tz: _dt.tzinfo
) -> pa.Array:
    """``arr`` converted to ``target``, the Arrow type of ODPS type ``t``."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.type == target and _needs_no_work(t, tz):
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    if t in _TIME_TYPES:
        return _conform_time(arr, t, target, tz)
    if isinstance(t, odps_types.Array | odps_types.Vector):
        return _conform_list(arr, t, target, tz)
    if isinstance(t, odps_types.Map):
        if not pa.types.is_map(arr.type):
            raise _ConformError(f"expected a map, got {arr.type}")
        return _rebuild(arr, t, _child_conformer(tz), target)
    if t is odps_types.interval_day_time and pa.types.is_duration(arr.type):
        return _durations_to_structs(arr)
    if isinstance(t, odps_types.Struct) or t is odps_types.interval_day_time:
        return _conform_struct(arr, t, target, tz)
    if t is odps_types.json and not _is_text(arr.type):
        raise _ConformError(f"JSON columns take JSON text, got {arr.type}")
    out = arr.cast(target, safe=True)
    if isinstance(t, odps_types.Char | odps_types.Varchar):
        too_long = pc.greater(pc.utf8_length(out), t.size)
        if pc.any(too_long).as_py():
            row = pc.index(too_long, True).as_py()
            raise _ConformError(f"value has more than {t.size} characters", row)
    return out


def _needs_no_work(t: odps_types.DataType, tz: _dt.tzinfo) -> bool:
    """Whether data already of the target Arrow type can be sent as it is."""
    if isinstance(t, odps_types.Vector | odps_types.Char | odps_types.Varchar):
        return False  # lengths still need checking
    if any(not _needs_no_work(child, tz) for child in _children(t)):
        return False
    return not _has_zoned_time(t) or _is_utc(tz, _zone_name(tz))


def _is_text(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _child_conformer(
    tz: _dt.tzinfo,
) -> Callable[[pa.Array, odps_types.DataType, pa.DataType], pa.Array]:
    return lambda child, t, target: _conform_array(child, t, target, tz)


def _conform_time(
    arr: pa.Array, t: odps_types.DataType, target: pa.DataType, tz: _dt.tzinfo
) -> pa.Array:
    if arr.type == TIMESTAMP_STRUCT_TYPE and t is not odps_types.datetime:
        arr = timestamp_structs_to_ns(arr).cast(pa.timestamp("ns", "UTC"))
    elif pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("ms"))
    elif not pa.types.is_timestamp(arr.type):
        raise _ConformError(f"expected timestamps or dates, got {arr.type}")
    aware = arr.type.tz is not None
    if t is odps_types.timestamp_ntz:
        if aware:
            arr = pc.local_timestamp(arr)
    elif aware:
        arr = _naive(arr)
    else:
        arr = _wall_to_utc(arr, tz, strict=t is odps_types.timestamp)
    if t is odps_types.datetime and arr.type.unit in ("us", "ns"):
        arr = pc.floor_temporal(arr, unit="millisecond")
    return arr.cast(target, safe=True)


def _conform_list(
    arr: pa.Array, t: odps_types.Array | odps_types.Vector, target: pa.DataType, tz: _dt.tzinfo
) -> pa.Array:
    kind = arr.type
    if (
        pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or (pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind))
    ):
        arr = arr.cast(pa.list_(kind.value_type))
    elif not pa.types.is_list(kind):
        raise _ConformError(f"expected a list, got {kind}")
    if isinstance(t, odps_types.Vector):
        wrong = pc.fill_null(pc.not_equal(pc.list_value_length(arr), t.dim), False)
        if pc.any(wrong).as_py():
            row = pc.index(wrong, True).as_py()
            raise _ConformError(f"{t} needs {t.dim} elements per value", row)
        null_items = pc.is_null(arr.flatten())
        if pc.any(null_items).as_py():
            parents = pc.list_parent_indices(arr)
            row = parents[pc.index(null_items, True).as_py()].as_py()
            raise _ConformError(f"{t} elements cannot be null", row)
    return _rebuild(arr, t, _child_conformer(tz), target)


def _conform_struct(
    arr: pa.Array, t: odps_types.DataType, target: pa.DataType, tz: _dt.tzinfo
) -> pa.Array:
    if not pa.types.is_struct(arr.type):
        raise _ConformError(f"expected a struct, got {arr.type}")
    field_types = (
        t.field_types
        if isinstance(t, odps_types.Struct)
        else {"sec": odps_types.bigint, "nano": odps_types.int_}
    )
    by_name = {arr.type.field(i).name.lower(): i for i in range(arr.type.num_fields)}
    unknown = set(by_name) - {name.lower() for name in field_types}
    if unknown:
        raise _ConformError(f"unknown struct fields {sorted(unknown)} for {t}")
    children = []
    for (name, ft), target_field in zip(field_types.items(), target, strict=True):
        position = by_name.get(name.lower())
        if position is None:
            children.append(pa.nulls(len(arr), target_field.type))
        else:
            children.append(_conform_array(arr.field(position), ft, target_field.type, tz))
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


def _durations_to_structs(arr: pa.Array) -> pa.Array:
    """Durations as ``struct<sec, nano>`` with 0 <= nano < 1e9 (floored seconds)."""
    nanos = arr.cast(pa.duration("ns"), safe=True).cast(pa.int64())
    sec = pc.divide(nanos, _NANOS)  # integer division truncates toward zero
    rest = pc.subtract(nanos, pc.multiply(sec, _NANOS))
    negative = pc.less(rest, 0)
    sec = pc.if_else(negative, pc.subtract(sec, 1), sec)
    rest = pc.if_else(negative, pc.add(rest, _NANOS), rest)
    mask = arr.is_null() if arr.null_count else None
    return pa.StructArray.from_arrays(
        [sec, rest.cast(pa.int32())], fields=list(TIMESTAMP_STRUCT_TYPE), mask=mask
    )


# --------------------------------------------------------------------------- Python values


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


def _python_converter(t: odps_types.DataType, tz: _dt.tzinfo) -> Callable[[Any], Any]:
    """A function from a user value (not missing) to what ``pa.array`` takes for ``t``."""
    if t is odps_types.datetime:
        return lambda v: datetimes.datetime_to_millis(t.validate(v), tz)
    if t in (odps_types.timestamp, odps_types.timestamp_ntz):
        zone = tz if t is odps_types.timestamp else None

        def timestamp_nanos(v: Any) -> int:
            seconds, nanos = datetimes.timestamp_to_pair(t.validate(v), zone)
            return seconds * _NANOS + nanos

        return timestamp_nanos
    if t is odps_types.interval_day_time:

        def interval(v: Any) -> dict[str, int]:
            seconds, nanos = datetimes.timedelta_to_pair(t.validate(v))
            return {"sec": seconds, "nano": nanos}

        return interval
    if t is odps_types.json:
        return lambda v: v if isinstance(v, str) else _json.dumps(t.validate(v))
    if isinstance(t, odps_types.Array | odps_types.Vector):
        item = _optional(_python_converter(t.value_type, tz))
        return lambda v: [item(x) for x in t.validate(v)]
    if isinstance(t, odps_types.Map):
        key = _python_converter(t.key_type, tz)
        value = _optional(_python_converter(t.value_type, tz))
        return lambda v: [(key(k), value(x)) for k, x in t.validate(v).items()]
    if isinstance(t, odps_types.Struct):
        fields = {name: _optional(_python_converter(ft, tz)) for name, ft in t.field_types.items()}
        return lambda v: {name: fields[name](x) for name, x in t.validate(v).items()}
    return t.validate


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _python_column(
    values: list, name: str, t: odps_types.DataType, target: pa.DataType, tz: _dt.tzinfo
) -> pa.Array | pa.ChunkedArray:
    """A column of Python objects converted value by value, as records are."""
    convert = _python_converter(t, tz)
    out = []
    for row, value in enumerate(values):
        if _is_missing(value):
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _validation_error(name, t, target, values, row, 0, exc) from None
    try:
        return pa.array(out, type=target)
    except _CONVERSION_ERRORS as exc:
        for row, item in enumerate(out):
            try:
                pa.array([item], type=target)
            except _CONVERSION_ERRORS:
                raise _validation_error(name, t, target, values, row, 0, exc) from exc
        raise _validation_error(name, t, target, values, None, 0, exc) from exc
