"""ODPS types as DuckDB types, and the ODPS types of query results.

Tables are stored with the Arrow types of ``columnar`` (DATETIME as ``timestamp[ms]``,
TIMESTAMP as ``timestamp[ns]``, ...), which DuckDB holds as ``TIMESTAMP_MS`` and
``TIMESTAMP_NS``; the mapping below keeps those units so a value makes the round trip
tunnel → SQL → tunnel unchanged. A result column's ODPS type is read off its Arrow type.
"""

from __future__ import annotations

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as odps

__all__ = ["duckdb_type", "odps_type_of_arrow", "quote_ident", "MAX_DUCKDB_PRECISION"]

_SIMPLE = {
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
    "binary": "BLOB",
    "date": "DATE",
    "datetime": "TIMESTAMP_MS",
    "timestamp": "TIMESTAMP_NS",
    "timestamp_ntz": "TIMESTAMP_NS",
    "interval_day_time": "STRUCT(sec BIGINT, nano INTEGER)",
    "interval_year_month": "INTEGER",
    "json": "VARCHAR",
}
# DuckDB's widest decimal; ODPS's legacy bare DECIMAL (54,18) is computed at this width
# (exact for values of up to 38 - 18 = 20 integer digits; larger ones fail the statement).
MAX_DUCKDB_PRECISION = 38


def quote_ident(name: str) -> str:
    """A DuckDB quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def duckdb_type(dt: odps.DataType) -> str:
    """The DuckDB type that holds values of the ODPS type ``dt``."""
    if dt.name in _SIMPLE:
        return _SIMPLE[dt.name]
    if isinstance(dt, odps.Decimal):
        precision = min(dt.precision, MAX_DUCKDB_PRECISION)
        return f"DECIMAL({precision},{min(dt.scale, precision)})"
    if isinstance(dt, odps.Char | odps.Varchar):
        return "VARCHAR"
    if isinstance(dt, odps.Array | odps.Vector):
        return duckdb_type(dt.value_type) + "[]"
    if isinstance(dt, odps.Map):
        return f"MAP({duckdb_type(dt.key_type)}, {duckdb_type(dt.value_type)})"
    if isinstance(dt, odps.Struct):
        fields = ", ".join(f"{quote_ident(n)} {duckdb_type(t)}" for n, t in dt.field_types.items())
        return f"STRUCT({fields})"
    raise TypeError(f"type {dt} has no DuckDB equivalent")


def odps_type_of_arrow(arrow_type: pa.DataType) -> odps.DataType:
    """The ODPS type of a result column of Arrow type ``arrow_type``.

    Unsigned integers widen to the next signed type; timestamps finer than milliseconds are
    TIMESTAMP, coarser ones DATETIME. Types ODPS has no name for raise ``TypeError`` (the
    engine casts those to strings before they get here).
    """
    t = arrow_type
    for check, result in (
        (pa.types.is_int8, odps.tinyint),
        (pa.types.is_int16, odps.smallint),
        (pa.types.is_uint8, odps.smallint),
        (pa.types.is_int32, odps.int_),
        (pa.types.is_uint16, odps.int_),
        (pa.types.is_integer, odps.bigint),
        (pa.types.is_float32, odps.float_),
        (pa.types.is_floating, odps.double),
        (pa.types.is_boolean, odps.boolean),
        (pa.types.is_date, odps.date),
    ):
        if check(t):
            return result
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return odps.string
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return odps.binary
    if pa.types.is_timestamp(t):
        return odps.timestamp if t.unit == "ns" else odps.datetime
    if pa.types.is_decimal(t):
        return odps.Decimal(min(t.precision, MAX_DUCKDB_PRECISION), t.scale)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return odps.Array(odps_type_of_arrow(t.value_type))
    if pa.types.is_map(t):
        return odps.Map(odps_type_of_arrow(t.key_type), odps_type_of_arrow(t.item_type))
    if pa.types.is_struct(t):
        return odps.Struct([(f.name, odps_type_of_arrow(f.type)) for f in t])
    raise TypeError(f"no ODPS type for Arrow type {t}")
