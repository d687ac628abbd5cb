"""Stored tables as DuckDB views, so SQL reads exactly what the tunnel committed.

Each project a statement may name becomes a DuckDB schema and each table it names a view
in it: the union of the table's partitions, each reading the Parquet files its manifest
lists (the same snapshot rule as a download session) with the partition values as typed
constant columns. Column types are cast to ``typemap``'s DuckDB types (DATETIME as
``TIMESTAMP_MS``, ...). The files read are pinned for the statement's duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec

from ..catalog import Catalog, TableInfo
from ..errors import EmulatorError
from ..pins import PinScope
from .lexer import Token
from .typemap import duckdb_type, quote_ident

__all__ = ["bind_tables", "referenced_names"]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def referenced_names(tokens: Iterable[Token]) -> set[tuple[str | None, str]]:
    """Every ``name`` and ``a.b`` a statement spells: candidate (project, table) pairs.

    Over-inclusion is harmless (a column that shares a table's name only costs a view).
    """
    tokens = list(tokens)
    out: set[tuple[str | None, str]] = set()
    for idx, token in enumerate(tokens):
        name = token.name
        if name is None:
            continue
        out.add((None, name.lower()))
        if idx + 2 < len(tokens) and tokens[idx + 1].is_op("."):
            second = tokens[idx + 2].name
            if second is not None:
                out.add((name, second.lower()))
    return out


def _view_sql(catalog: Catalog, info: TableInfo, scope: PinScope) -> str:
    """The SELECT of a table's committed rows (data columns, then partition columns)."""
    data = [
        f"CAST({quote_ident(c.name)} AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}"
        for c in info.schema.simple_columns
    ]
    empty = ", ".join(
        f"CAST(NULL AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}" for c in info.schema
    )
    parts = []
    with catalog.table_lock(info):
        specs = catalog.list_partitions(info.project, info.name) if info.partitioned else [None]
        for spec in specs:
            snapshot = catalog.snapshot(info, spec or PartitionSpec())
            if not snapshot.files:
                continue
            scope.pin(info.table_id, (f.name for f in snapshot.files))
            paths = ", ".join(_literal(str(info.data_dir / f.name)) for f in snapshot.files)
            consts = [
                f"CAST({_literal(spec[c.name])} AS {duckdb_type(c.type)}) AS {quote_ident(c.name)}"
                for c in info.schema.partitions
            ]
            parts.append(f"SELECT {', '.join(data + consts)} FROM read_parquet([{paths}])")
    if not parts:
        return f"SELECT {empty} WHERE false"
    return " UNION ALL ".join(parts)


def bind_tables(
    con: Any,
    catalog: Catalog,
    project: str,
    names: set[tuple[str | None, str]],
    scope: PinScope,
) -> None:
    """Create the schemas and views a statement may read on DuckDB connection ``con``.

    ``project`` is the default schema (DuckDB's search path), as the instance's project is
    in ODPS.
    """
    projects = {project} | {p for p, _ in names if p and catalog.project_exists(p)}
    for name in sorted(projects):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(name)}")
    for proj, table in sorted(names, key=lambda pt: (pt[0] or "", pt[1])):
        if proj is not None and proj not in projects:
            continue
        target = proj or project
        try:
            info = catalog.get_table(target, table)
        except EmulatorError:
            continue
        view = f"{quote_ident(target)}.{quote_ident(info.name.lower())}"
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {_view_sql(catalog, info, scope)}")
    con.execute(f"SET search_path = {_literal(project)}")
