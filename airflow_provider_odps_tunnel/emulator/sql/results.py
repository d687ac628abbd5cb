"""Running a query and keeping its result where the instance tunnel can serve it.

The result is streamed from DuckDB in Arrow batches into one Parquet file (storage types of
``columnar``, so the instance tunnel serves it like table data) and its first rows are also
rendered as the CSV text the service returns as a SELECT task's result. Column names follow
ODPS: a plain column keeps its (lower-case) name, an unnamed expression is ``_c<index>``.
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

from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .. import columnar
from ..catalog import DataFile
from ..ingest import ParquetSink
from .typemap import odps_type_of_arrow, quote_ident

__all__ = ["QueryResult", "materialise", "normalised_select", "CSV_ROWS"]

# Rows of a SELECT's result text (the service caps the non-tunnel result the same way).
CSV_ROWS = 10000
_BATCH_ROWS = 8192
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_AS_BIGINT = {"HUGEINT", "UHUGEINT", "UBIGINT"}
_AS_TEXT_PREFIXES = ("INTERVAL", "TIME", "UUID", "BIT", "ENUM", "VARINT", "NULL", "SQLNULL")
NULL_TOKEN = "\\N"


@dataclass
class QueryResult:
    """A materialised result: its schema, Parquet files, row count and CSV text."""

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


def _column_expr(idx: int, duck_type: str) -> str:
    ref = f"c{idx}"
    if duck_type in _AS_BIGINT:
        return f"CAST({ref} AS BIGINT)"
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return f"CAST({ref} AS TIMESTAMP)"
    if duck_type.startswith(_AS_TEXT_PREFIXES) and not duck_type.startswith("TIMESTAMP"):
        return f"CAST({ref} AS VARCHAR)"
    return ref


def normalised_select(con: Any, sql: str) -> tuple[str, list[str]]:
    """SQL selecting ``sql``'s columns under ODPS names, with types ODPS can express.

    DuckDB's 128-bit sums become BIGINT (ODPS's SUM of BIGINT), zoned timestamps UTC wall
    clock, and types without an ODPS name (INTERVAL, TIME, UUID, ...) strings.
    """
    relation = con.sql(sql)
    raw, types = relation.columns, [str(t) for t in relation.types]
    names = _result_names(raw)
    aliases = ", ".join(f"c{i}" for i in range(len(raw)))
    exprs = ", ".join(
        f"{_column_expr(i, t)} AS {quote_ident(n)}"
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


def render_csv(table: pa.Table) -> str:
    """The service's CSV result text: a header row of names, then one row per record."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_csv_value(v) for v in row.values()])
    return out.getvalue()


def materialise(con: Any, sql: str, path: Path, max_field_size: int) -> QueryResult:
    """Run query ``sql`` on ``con``; keep the result in the Parquet file ``path``."""
    final_sql, names = normalised_select(con, sql)
    reader = con.sql(final_sql).to_arrow_reader(_BATCH_ROWS)
    columns = [
        Column(name, odps_type_of_arrow(field.type))
        for name, field in zip(names, reader.schema, strict=True)
    ]
    schema = TableSchema(columns)
    storage = columnar.storage_schema(columns)
    sink = ParquetSink(path, storage, max_field_size)
    preview: list[pa.RecordBatch] = []
    kept = 0
    try:
        for batch in reader:
            batch = batch.cast(storage)
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
    text = render_csv(pa.Table.from_batches(preview, schema=storage))
    return QueryResult(schema, files, rows, text, rows > CSV_ROWS)
