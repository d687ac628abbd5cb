"""How table data is held in Arrow (and so in data files): types and value conversions.

The storage type of every ODPS type is the Arrow type of the tunnel's Arrow path (protocol
§6.3, as pyodps reads and writes it), so an Arrow upload is stored and an Arrow download is
served without conversion. The few types that path does not define get a lossless stand-in:
``interval_year_month`` as int32 months and ``json`` as its text. Each field keeps its ODPS
type string in the field metadata.

Record bodies decode into Python values (decoded with UTC as the zone, so DATETIME and
TIMESTAMP values are UTC wall clock and map one to one onto Arrow's epoch integers);
:func:`rows_to_batch` and :func:`batch_to_rows` convert between those rows and batches.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as odps
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column

__all__ = [
    "storage_type",
    "storage_schema",
    "rows_to_batch",
    "batch_to_rows",
    "needs_conversion",
    "ODPS_TYPE_KEY",
    "INTERVAL_STRUCT",
]

ODPS_TYPE_KEY = b"odps_type"
INTERVAL_STRUCT = pa.struct([("sec", pa.int64()), ("nano", pa.int32())])
_NANOS = 1_000_000_000

_SIMPLE: dict[str, pa.DataType] = {
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ms"),
    "timestamp": pa.timestamp("ns"),
    "timestamp_ntz": pa.timestamp("ns"),
    "interval_day_time": INTERVAL_STRUCT,
    "interval_year_month": pa.int32(),
    "json": pa.string(),
}


def storage_type(dt: odps.DataType) -> pa.DataType:
    """The Arrow type that holds values of ODPS type ``dt``."""
    if dt.name in _SIMPLE:
        return _SIMPLE[dt.name]
    if isinstance(dt, odps.Decimal):
        if dt.precision > 38:
            return pa.decimal256(dt.precision, dt.scale)
        return pa.decimal128(dt.precision, dt.scale)
    if isinstance(dt, odps.Char | odps.Varchar):
        return pa.string()
    if isinstance(dt, odps.Array):
        return pa.list_(storage_type(dt.value_type))
    if isinstance(dt, odps.Vector):
        return pa.list_(storage_type(dt.value_type))
    if isinstance(dt, odps.Map):
        return pa.map_(storage_type(dt.key_type), storage_type(dt.value_type))
    if isinstance(dt, odps.Struct):
        return pa.struct([(name, storage_type(t)) for name, t in dt.field_types.items()])
    raise TypeError(f"type {dt} cannot be stored")


def storage_schema(columns: Sequence[Column]) -> pa.Schema:
    """The Arrow schema of ``columns``; each field records its ODPS type."""
    return pa.schema(
        [
            pa.field(
                c.name,
                storage_type(c.type),
                nullable=True,
                metadata={ODPS_TYPE_KEY: c.type.name.encode()},
            )
            for c in columns
        ]
    )


# ------------------------------------------------------------------ Python value -> storage
Convert = Callable[[Any], Any]


def _to_storage(dt: odps.DataType) -> Convert | None:
    """A converter from a decoded Python value to what ``pa.array`` takes; None = as is."""
    if dt == odps.interval_day_time:

        def interval(v: Any) -> dict[str, int]:
            sec, nano = divmod(v.value, _NANOS)
            return {"sec": sec, "nano": nano}

        return interval
    if dt == odps.interval_year_month:
        return lambda v: v.months
    if dt == odps.json:
        return lambda v: json.dumps(v, ensure_ascii=False)
    if isinstance(dt, odps.Decimal):
        scale = dt.scale
        quantum = decimal.Decimal(1).scaleb(-scale)

        def rescale(v: decimal.Decimal) -> decimal.Decimal:
            if v.as_tuple().exponent < -scale:  # more digits than the column keeps
                return v.quantize(quantum, rounding=decimal.ROUND_HALF_UP)
            return v

        return rescale
    if isinstance(dt, odps.Char):
        size = dt.size
        return lambda v: v.ljust(size) if isinstance(v, str) else v
    if isinstance(dt, odps.Array | odps.Vector):
        inner = _to_storage(dt.value_type)
        if inner is None:
            return None
        return lambda v: [None if x is None else inner(x) for x in v]
    if isinstance(dt, odps.Map):
        key, value = _to_storage(dt.key_type), _to_storage(dt.value_type)
        return lambda v: [
            (
                k if key is None or k is None else key(k),
                x if value is None or x is None else value(x),
            )
            for k, x in v.items()
        ]
    if isinstance(dt, odps.Struct):
        fields = [(name, _to_storage(t)) for name, t in dt.field_types.items()]
        if all(conv is None for _, conv in fields):
            return None
        return lambda v: {
            name: (v[name] if conv is None or v[name] is None else conv(v[name]))
            for name, conv in fields
        }
    return None


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of decoded rows (value lists in ``schema`` order)."""
    arrays = []
    for idx, field in enumerate(schema):
        dt = odps.parse_type(field.metadata[ODPS_TYPE_KEY].decode())
        values = [row[idx] for row in rows]
        arrays.append(_to_array(values, dt, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_array(values: list[Any], dt: odps.DataType, arrow_type: pa.DataType) -> pa.Array:
    """The storage array of one column's decoded values.

    A DECIMAL column is converted as it is when it can be: a value with more fractional
    digits than the column keeps makes Arrow refuse the whole column, and only then is
    every value rescaled first (which is what a lossless conversion would leave alone).
    """
    conv = _to_storage(dt)
    if conv is not None and isinstance(dt, odps.Decimal):
        try:
            return pa.array(values, type=arrow_type)
        except pa.ArrowInvalid:
            pass
    if conv is not None:
        values = [None if v is None else conv(v) for v in values]
    return pa.array(values, type=arrow_type)


# ------------------------------------------------------------------ storage -> Python value
def _from_storage(dt: odps.DataType) -> Convert | None:
    """A converter from ``to_pylist`` output to what the record encoder takes."""
    if dt == odps.interval_day_time:
        import pandas as pd

        return lambda v: pd.Timedelta(v["sec"] * _NANOS + v["nano"], unit="ns")
    if dt == odps.interval_year_month:
        return lambda v: odps.Monthdelta(months=v)
    if dt == odps.json:
        return json.loads
    if isinstance(dt, odps.Array | odps.Vector):
        inner = _from_storage(dt.value_type)
        if inner is None:
            return None
        return lambda v: [None if x is None else inner(x) for x in v]
    if isinstance(dt, odps.Map):
        key, value = _from_storage(dt.key_type), _from_storage(dt.value_type)
        return lambda v: {
            (k if key is None or k is None else key(k)): (
                x if value is None or x is None else value(x)
            )
            for k, x in v
        }
    if isinstance(dt, odps.Struct):
        fields = [(name, _from_storage(t)) for name, t in dt.field_types.items()]
        if all(conv is None for _, conv in fields):
            return None
        return lambda v: {
            name: (v[name] if conv is None or v[name] is None else conv(v[name]))
            for name, conv in fields
        }
    return None


def needs_conversion(types: Sequence[odps.DataType]) -> bool:
    """Whether values of these types differ between storage and the record encoder."""
    return any(_from_storage(dt) is not None for dt in types)


def batch_to_rows(batch: pa.RecordBatch, types: Sequence[odps.DataType]) -> list[tuple]:
    """The rows of ``batch`` as tuples of Python values for the record encoder."""
    columns = []
    for array, dt in zip(batch.columns, types, strict=True):
        values = array.to_pylist()
        conv = _from_storage(dt)
        if conv is not None:
            values = [None if v is None else conv(v) for v in values]
        columns.append(values)
    return list(zip(*columns, strict=True)) if columns else [() for _ in range(batch.num_rows)]
