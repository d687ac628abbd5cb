"""Running a query and keeping its result where the instance tunnel can serve it.

The result is streamed from DuckDB in Arrow batches into one data file (storage types of
``columnar``, so the instance tunnel serves it like table data) and its first rows are also
rendered as the CSV text the service returns as a SELECT task's result. Column names follow
ODPS: a plain column keeps its (lower-case) name, an unnamed expression is ``_c<index>``.

DATETIME and TIMESTAMP results are wall clock in the statement's zone inside DuckDB and are
stored as instants (``zoned``); the CSV text shows them as wall clock in that zone again,
DATETIME as ``yyyy-mm-dd hh:mm:ss`` (what pyodps parses), for any year the type holds
(0000-9999). DECIMAL results keep DuckDB's exact decimals; INTERVAL results become
INTERVAL_DAY_TIME or INTERVAL_YEAR_MONTH (``intervals``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_odps_tunnel.tunnel.codec import types as odps
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .. import columnar
from ..catalog import DataFile
from ..ingest import DataSink
from . import intervals
from .typemap import odps_type_of_arrow, quote_ident
from .zoned import to_instant

__all__ = ["QueryResult", "materialise", "normalised_select", "CSV_ROWS"]

# Rows of a SELECT's result text (the service caps the non-tunnel result the same way).
CSV_ROWS = 10000
_BATCH_ROWS = 8192
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_AS_BIGINT = {"HUGEINT", "UHUGEINT", "UBIGINT"}
_AS_TEXT_PREFIXES = ("TIME", "UUID", "BIT", "ENUM", "VARINT", "NULL", "SQLNULL")
_WALL_CLOCK = {"TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP_S"}
NULL_TOKEN = "\\N"


@dataclass
class QueryResult:
    """A materialised result: its schema, data files, row count and CSV text."""

    schema: TableSchema
    files: list[DataFile]
    rows: int
    csv: str
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema.to_json(),
            "files": [f.to_json() for f in self.files],
            "rows": self.rows,
            "csv": self.csv,
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryResult:
        return cls(
            TableSchema.from_json(data["schema"]),
            [DataFile.from_json(f) for f in data["files"]],
            int(data["rows"]),
            data["csv"],
            bool(data["truncated"]),
        )


def _result_names(raw: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for idx, name in enumerate(raw):
        name = name.lower() if _IDENT.match(name) else f"_c{idx}"
        base, n = name, 1
        while name in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name)
        names.append(name)
    return names


def _column_expr(idx: int, duck_type: str, zone: str) -> str:
    ref = f"c{idx}"
    if duck_type in _AS_BIGINT:
        return f"CAST({ref} AS BIGINT)"
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {ref})"
    if duck_type in _WALL_CLOCK:
        return to_instant(ref, duck_type, zone)
    if duck_type.startswith(_AS_TEXT_PREFIXES) and not duck_type.startswith("TIMESTAMP"):
        return f"CAST({ref} AS VARCHAR)"
    return ref


def normalised_select(con: Any, sql: str, zone: str = "UTC") -> tuple[str, list[str]]:
    """SQL selecting ``sql``'s columns under ODPS names, with types ODPS can express.

    DuckDB's 128-bit sums become BIGINT (ODPS's SUM of BIGINT), wall-clock timestamps (in
    ``zone``) and zoned ones instants, and types without an ODPS name (TIME, UUID, ...)
    strings.
    """
    relation = con.sql(sql)
    raw, types = relation.columns, [str(t) for t in relation.types]
    names = _result_names(raw)
    aliases = ", ".join(f"c{i}" for i in range(len(raw)))
    exprs = ", ".join(
        f"{_column_expr(i, t, zone)} AS {quote_ident(n)}"
        for i, (n, t) in enumerate(zip(names, types, strict=True))
    )
    return f"SELECT {exprs} FROM ({sql}) AS __q({aliases})", names


def _csv_value(value: Any) -> str:
    if value is None:
        return NULL_TOKEN
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _wall_clock_text(column: pa.ChunkedArray, dt: odps.DataType, zone: str) -> list:
    """Stored instants as wall-clock text in ``zone`` (Arrow arithmetic: any year works)."""
    unit = column.type.unit
    wall = pc.local_timestamp(column.cast(pa.timestamp(unit, tz=zone)))
    if dt == odps.datetime:
        wall = wall.cast(pa.timestamp("s"), safe=False)
    return pc.strftime(wall, format="%Y-%m-%d %H:%M:%S").to_pylist()


def _text_column(column: pa.ChunkedArray, dt: odps.DataType | None, zone: str) -> list:
    if dt in (odps.datetime, odps.timestamp):
        return _wall_clock_text(column, dt, zone)
    if dt in (odps.interval_day_time, odps.interval_year_month):
        kind = "year_month" if dt == odps.interval_year_month else "day_time"
        return [None if v is None else intervals.render(v, kind) for v in column.to_pylist()]
    return column.to_pylist()


def _field_type(field: pa.Field) -> odps.DataType | None:
    meta = field.metadata or {}
    key = columnar.ODPS_TYPE_KEY
    return odps.parse_type(meta[key].decode()) if key in meta else None


def render_csv(table: pa.Table, columns: list[Column] | None = None, zone: str = "UTC") -> str:
    """The service's CSV result text: a header row of names, then one row per record.

    Column types come from ``columns``, else from the storage schema's field metadata.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    types = [c.type for c in columns] if columns else [_field_type(f) for f in table.schema]
    values = [_text_column(table.column(i), dt, zone) for i, dt in enumerate(types)]
    for row in zip(*values, strict=True):
        writer.writerow([_csv_value(v) for v in row])
    return out.getvalue()


def _interval_kinds(con: Any, sql: str, names: list[str], default: str) -> list[str]:
    """The interval kind of each column of query ``sql`` (``""`` for other columns).

    A column holding months is year-month, one holding days or time day-time; a column
    with neither (NULLs, zeros) takes the statement's ``default``. Only results with
    INTERVAL columns pay for this extra aggregate over the query.
    """
    types = [str(t) for t in con.sql(sql).types]
    positions = [i for i, t in enumerate(types) if t == "INTERVAL"]
    kinds = [""] * len(types)
    if not positions:
        return kinds
    aggregates = []
    for i in positions:
        ref = quote_ident(names[i])
        aggregates.append(f"bool_or(datepart('year', {ref}) * 12 + datepart('month', {ref}) <> 0)")
        aggregates.append(
            f"bool_or(datepart('day', {ref}) <> 0 OR datepart('hour', {ref}) <> 0 OR "
            f"datepart('minute', {ref}) <> 0 OR datepart('microseconds', {ref}) <> 0)"
        )
    flags = con.sql(f"SELECT {', '.join(aggregates)} FROM ({sql}) AS __k").fetchall()[0]
    for n, i in enumerate(positions):
        months, day_time = flags[2 * n], flags[2 * n + 1]
        kinds[i] = "day_time" if day_time else ("year_month" if months else default)
    return kinds


def _to_storage(batch: pa.RecordBatch, storage: pa.Schema, kinds: list[str]) -> pa.RecordBatch:
    arrays = [
        intervals.to_storage(a, kind) if kind else a
        for a, kind in zip(batch.columns, kinds, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).cast(storage)


def materialise(
    con: Any,
    sql: str,
    path: Path,
    max_field_size: int,
    zone: str = "UTC",
    interval_kind: str = "day_time",
) -> QueryResult:
    """Run query ``sql`` on ``con``; keep the result in the data file ``path``.

    ``zone`` is the statement's time zone; ``interval_kind`` the kind of the INTERVAL
    columns whose values do not tell (:func:`intervals.result_kind`).
    """
    final_sql, names = normalised_select(con, sql, zone)
    kinds = _interval_kinds(con, final_sql, names, interval_kind)
    reader = con.sql(final_sql).to_arrow_reader(_BATCH_ROWS)
    columns = [
        Column(name, intervals.odps_type(kind) if kind else odps_type_of_arrow(field.type))
        for name, field, kind in zip(names, reader.schema, kinds, strict=True)
    ]
    schema = TableSchema(columns)
    storage = columnar.storage_schema(columns)
    sink = DataSink(path, storage, max_field_size)
    preview: list[pa.RecordBatch] = []
    kept = 0
    try:
        for batch in reader:
            batch = _to_storage(batch, storage, kinds)
            sink.write(batch)
            if kept < CSV_ROWS:
                preview.append(batch.slice(0, CSV_ROWS - kept))
                kept += preview[-1].num_rows
        sink.close()
    except BaseException:
        sink.discard()
        raise
    rows = sink.rows
    files = [DataFile(path.name, rows)] if rows else []
    if not rows:
        path.unlink(missing_ok=True)
    text = render_csv(pa.Table.from_batches(preview, schema=storage), columns, zone)
    return QueryResult(schema, files, rows, text, rows > CSV_ROWS)
