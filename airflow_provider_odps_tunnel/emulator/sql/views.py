"""Stored tables as DuckDB views, so SQL reads exactly what the tunnel committed.

Each project a statement may name becomes a DuckDB catalog (an attached in-memory
database) and each table it names a view in it: a table of the ``default`` schema in the
catalog's ``main`` schema, so ``t`` and ``project.t`` resolve as in ODPS, and a table of
another schema in a DuckDB schema of that name, so ``project.schema.t`` does too. A view is
the union of the table's partitions, each scanning the data files its manifest lists (the
same snapshot rule as a download session; Arrow IPC files, or Parquet ones of earlier
versions) as one Arrow dataset, with the partition values as typed constant columns.
Column types are cast to ``typemap``'s DuckDB types (DATETIME as ``TIMESTAMP_MS``, ...).
The files read are pinned for the statement's duration.

Two columns kinds are not read as they are stored:

* DECIMAL wider than DuckDB's 38 digits (the bare ``DECIMAL``, i.e. ``decimal(54,18)``):
  DuckDB cannot take these Arrow columns, so the dataset reads them as their exact decimal
  text, which the view casts to ``DECIMAL(38,s)``. A value with more integer digits than
  that holds fails the statement (a DuckDB conversion error) instead of being rounded.
* DATETIME and TIMESTAMP are stored as epoch instants (UTC wall clock); the view shows
  them as wall clock in the statement's time zone (``odps.sql.timezone``), so literals,
  casts and date functions work in that zone as on the service (``zoned``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as odps
from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec

from .. import datafiles
from ..catalog import Catalog, TableInfo
from ..errors import EmulatorError
from ..pins import PinScope
from .lexer import Token
from .typemap import MAX_DUCKDB_PRECISION, duckdb_type, quote_ident
from .zoned import from_instant

__all__ = ["bind_tables", "referenced_names"]

_datasets = itertools.count()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _dotted(tokens: list[Token], idx: int) -> str | None:
    """The name after the ``.`` that follows token ``idx``, if there is one."""
    if idx + 2 < len(tokens) and tokens[idx + 1].is_op("."):
        return tokens[idx + 2].name
    return None


def referenced_names(tokens: Iterable[Token]) -> set[tuple[str | None, str | None, str]]:
    """Every ``name``, ``a.b`` and ``a.b.c`` a statement spells: candidate
    (project, schema, table) triples (None: the instance's project, the default schema).

    Over-inclusion is harmless (a column that shares a table's name only costs a view).
    """
    tokens = list(tokens)
    out: set[tuple[str | None, str | None, str]] = set()
    for idx, token in enumerate(tokens):
        name = token.name
        if name is None:
            continue
        out.add((None, None, name.lower()))
        second = _dotted(tokens, idx)
        if second is not None:
            out.add((name, None, second.lower()))
            third = _dotted(tokens, idx + 2)
            if third is not None:
                out.add((name, second.lower(), third.lower()))
    return out


def _wide_decimal(dt: odps.DataType) -> bool:
    return isinstance(dt, odps.Decimal) and dt.precision > MAX_DUCKDB_PRECISION


def _column_sql(name: str, dt: odps.DataType, zone: str) -> str:
    """A stored column as the view shows it (DuckDB type, datetimes in ``zone``)."""
    value = f"CAST({quote_ident(name)} AS {duckdb_type(dt)})"
    if dt in (odps.datetime, odps.timestamp):
        value = from_instant(value, duckdb_type(dt), zone)
    return f"{value} AS {quote_ident(name)}"


def _source_sql(con: Any, info: TableInfo, paths: list[str]) -> str:
    """The name of the Arrow dataset a partition's files are read through, registered on
    ``con``; DECIMALs wider than DuckDB's are read as their exact text."""
    wide = {c.name for c in info.schema.simple_columns if _wide_decimal(c.type)}
    storage = info.arrow_schema()
    schema = pa.schema([f.with_type(pa.string()) if f.name in wide else f for f in storage])
    name = f"__odps_files_{next(_datasets)}"
    con.register(name, datafiles.dataset(paths, schema))
    return quote_ident(name)


def _view_sql(con: Any, catalog: Catalog, info: TableInfo, scope: PinScope, zone: str) -> str:
    """The SELECT of a table's committed rows (data columns, then partition columns)."""
    data = [_column_sql(c.name, c.type, zone) for c in info.schema.simple_columns]
    empty = ", ".join(
        f"CAST(NULL AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}" for c in info.schema
    )
    parts = []
    with catalog.table_lock(info):
        specs = catalog.partitions(info) if info.partitioned else [None]
        for spec in specs:
            snapshot = catalog.snapshot(info, spec or PartitionSpec())
            if not snapshot.files:
                continue
            scope.pin(info.table_id, (f.name for f in snapshot.files))
            source = _source_sql(con, info, [str(info.data_dir / f.name) for f in snapshot.files])
            consts = [
                f"CAST({_literal(spec[c.name])} AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}"
                for c in info.schema.partitions
            ]
            parts.append(f"SELECT {', '.join(data + consts)} FROM {source}")
    if not parts:
        return f"SELECT {empty} WHERE false"
    return " UNION ALL ".join(parts)


def bind_tables(
    con: Any,
    catalog: Catalog,
    project: str,
    names: set[tuple[str | None, str | None, str]],
    scope: PinScope,
    zone: str,
) -> None:
    """Create the catalogs, schemas and views a statement may read on DuckDB connection
    ``con`` (``names`` from :func:`referenced_names`).

    ``project``'s ``main`` schema is DuckDB's search path, as the instance's project and its
    default schema are in ODPS; ``zone`` is the statement's time zone.
    """
    projects = {project} | {p for p, _, _ in names if p and catalog.project_exists(p)}
    for name in sorted(projects):
        con.execute(f"ATTACH ':memory:' AS {quote_ident(name)}")
    for proj, schema, table in sorted(names, key=lambda n: tuple(x or "" for x in n)):
        if proj is not None and proj not in projects:
            continue
        target = proj or project
        try:
            info = catalog.get_table(target, table, schema)
        except EmulatorError:
            continue
        container = f"{quote_ident(target)}.{quote_ident(schema or 'main')}"
        if schema is not None:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {container}")
        view = f"{container}.{quote_ident(info.name.lower())}"
        con.execute(
            f"CREATE OR REPLACE VIEW {view} AS {_view_sql(con, catalog, info, scope, zone)}"
        )
    con.execute(f"SET search_path = {_literal(project + '.main')}")
