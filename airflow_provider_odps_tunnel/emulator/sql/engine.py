"""The embedded SQL engine: runs an ODPS SQL script against the stored tables.

Statements run one after the other; each gets a fresh in-memory DuckDB connection whose
views show the tables' committed data at that moment (``views``), so a statement sees
everything the statements before it committed. DDL acts on the catalog directly; INSERT
and CTAS stream rows from DuckDB into data files and commit like a tunnel commit (``writes``);
a query's result is materialised for the instance tunnel (``results``). A failure stops the
script and is raised as :class:`SqlError` carrying the service's error text.

Each statement runs in a time zone (``zoned``): the job's ``odps.sql.timezone`` setting, else
the project property of that name, else :data:`DEFAULT_ZONE`; a ``SET
odps.sql.timezone=...`` statement changes it for the statements after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import datafiles
from ..catalog import Catalog, TableInfo
from ..errors import EmulatorError
from ..pins import FilePins
from . import intervals, writes
from .errors import SqlError
from .lexer import SqlSyntaxError, Token, line_col, split_statements
from .results import QueryResult, materialise
from .statements import (
    AlterColumns,
    AlterPartitions,
    CreateTable,
    DropTable,
    Insert,
    Query,
    SchemaDdl,
    SetOption,
    Statement,
    TableName,
    Truncate,
    parse_statement,
)
from .translate import translate
from .views import bind_tables, referenced_names
from .zoned import TIMEZONE_KEY, check_zone

__all__ = ["SqlEngine", "ScriptResult", "DEFAULT_ZONE"]

# The SQL time zone of a project that sets none: the service's default. A client whose
# zone differs (a worker in UTC) reads ``DATETIME '2024-01-01 08:00:00'`` as 00:00, as it
# does against the service; the job's ``odps.sql.timezone`` (pyodps sends
# ``options.local_timezone``) or the project property changes it.
DEFAULT_ZONE = "Asia/Shanghai"


@dataclass
class ScriptResult:
    """What a script produced: the task's text result and the last query's result."""

    summary: str
    query: QueryResult | None


def _duckdb_error(exc: Exception) -> SqlError:
    """The service's error for a DuckDB failure (a missing table is ODPS-0130131)."""
    import duckdb

    message = str(exc).split("\n")[0]
    if isinstance(exc, duckdb.CatalogException) and "Table with name" in message:
        name = message.split("Table with name", 1)[1].split("does not exist")[0].strip()
        return SqlError.table_not_found(name)
    if isinstance(exc, duckdb.ParserException):
        return SqlError.parse(message)
    if isinstance(exc, duckdb.BinderException | duckdb.CatalogException):
        return SqlError.semantic(message)
    return SqlError.runtime(message)


class SqlEngine:
    """Runs scripts on the tables of ``catalog``; files read are pinned in ``pins``."""

    def __init__(self, catalog: Catalog, pins: FilePins, max_field_size: int):
        self.catalog = catalog
        self.pins = pins
        self.max_field_size = max_field_size
        # The running script's time zone: scripts run concurrently, one per thread.
        self._local = threading.local()

    def zone(self, project: str, settings: dict[str, Any] | None = None) -> str:
        """The time zone a job of ``project`` with ``settings`` starts in."""
        name = (settings or {}).get(TIMEZONE_KEY)
        if not name:
            name = self.catalog.project_properties(project).get(TIMEZONE_KEY, DEFAULT_ZONE)
        return check_zone(str(name))

    def run(
        self, project: str, text: str, out_dir: Path, settings: dict[str, Any] | None = None
    ) -> ScriptResult:
        """Run every statement of ``text`` with ``project`` as the default project.

        ``settings`` are the task's settings (``odps.sql.timezone``, ...). Query results are
        written under ``out_dir``. Raises :class:`SqlError`.
        """
        try:
            parsed = [(tokens, parse_statement(tokens)) for tokens in split_statements(text)]
        except SqlSyntaxError as exc:
            raise self._at(SqlError.parse(str(exc)), text, exc.position) from None
        if not parsed:
            raise SqlError.parse("the script has no statement")
        out_dir.mkdir(parents=True, exist_ok=True)
        result: QueryResult | None = None
        self._local.zone = self.zone(project, settings)
        for index, (tokens, stmt) in enumerate(parsed):
            try:
                produced = self._execute(
                    project, stmt, out_dir / f"result-{index}{datafiles.SUFFIX}"
                )
            except SqlError as exc:
                raise self._at(exc, text, tokens[0].pos) from None
            if produced is not None:
                result = produced
        return ScriptResult(result.csv if result else "OK", result)

    @staticmethod
    def _at(error: SqlError, text: str, pos: int) -> SqlError:
        error.position = line_col(text, pos)
        return error

    # ------------------------------------------------------------------ statements
    def _execute(self, project: str, stmt: Statement, result_path: Path) -> QueryResult | None:
        if isinstance(stmt, SetOption):
            key, _, value = stmt.text.partition("=")
            if key.replace(" ", "").lower() == TIMEZONE_KEY:
                self._local.zone = check_zone(value.replace(" ", ""))
            return None
        if isinstance(stmt, Query):
            return self._query(project, stmt.tokens, result_path)
        if isinstance(stmt, CreateTable):
            self._create_table(project, stmt, result_path)
        elif isinstance(stmt, DropTable):
            self._catalog_call(
                stmt.table,
                project,
                self.catalog.drop_table,
                stmt.table.project or project,
                stmt.table.name,
                if_exists=stmt.if_exists,
                schema_name=stmt.table.schema,
            )
        elif isinstance(stmt, SchemaDdl):
            self._schema_ddl(project, stmt)
        elif isinstance(stmt, AlterPartitions):
            info = self._table(project, stmt.table)
            for spec in stmt.specs:
                if stmt.add:
                    call = self.catalog.create_partition
                    kwargs = {"if_not_exists": stmt.tolerant}
                else:
                    call = self.catalog.drop_partition
                    kwargs = {"if_exists": stmt.tolerant}
                self._catalog_call(
                    stmt.table,
                    project,
                    call,
                    info.project,
                    info.name,
                    spec,
                    schema_name=info.schema_name,
                    **kwargs,
                )
        elif isinstance(stmt, AlterColumns):
            info = self._table(project, stmt.table)
            self._catalog_call(
                stmt.table,
                project,
                self.catalog.add_columns,
                info.project,
                info.name,
                stmt.columns,
                schema_name=info.schema_name,
            )
        elif isinstance(stmt, Truncate):
            writes.truncate(self.catalog, self._table(project, stmt.table), stmt.specs)
        elif isinstance(stmt, Insert):
            info = self._table(project, stmt.table)
            self._with_duckdb(
                project,
                stmt.query,
                lambda con: writes.insert(
                    con,
                    self.catalog,
                    info,
                    stmt,
                    translate(stmt.query),
                    self.max_field_size,
                    self._local.zone,
                ),
            )
        return None

    def _schema_ddl(self, project: str, stmt: SchemaDdl) -> None:
        """``CREATE SCHEMA`` / ``DROP SCHEMA`` on the catalog."""
        target = stmt.project or project
        try:
            if stmt.create:
                self.catalog.create_schema(target, stmt.name, if_not_exists=stmt.tolerant)
            else:
                self.catalog.drop_schema(target, stmt.name, if_exists=stmt.tolerant)
        except EmulatorError as exc:
            raise SqlError.semantic(exc.message) from None

    def _create_table(self, project: str, stmt: CreateTable, result_path: Path) -> None:
        target = stmt.table.project or project
        schema_name = stmt.table.schema
        if stmt.if_not_exists and self.catalog.table_exists(target, stmt.table.name, schema_name):
            return
        props = stmt.properties
        options: dict[str, Any] = {
            "lifecycle": stmt.lifecycle,
            "comment": stmt.comment,
            "schema_name": schema_name,
        }
        if stmt.as_query is not None:
            result = self._query(project, stmt.as_query, result_path)
            info = self._catalog_call(
                stmt.table,
                project,
                self.catalog.create_table,
                target,
                stmt.table.name,
                result.schema,
                **options,
            )
            if result.rows:
                writes.publish_file(self.catalog, info, result_path, result.rows)
            return
        if stmt.like is not None:
            source = self._table(project, stmt.like)
            schema, primary_key, buckets = source.schema, source.primary_key, source.buckets
        else:
            schema, primary_key = stmt.schema, stmt.primary_key
            buckets = stmt.buckets
            if buckets is None and "write.bucket.num" in props and primary_key:
                try:
                    buckets = int(props["write.bucket.num"])
                except ValueError:
                    raise SqlError.semantic("write.bucket.num must be an integer") from None
        self._catalog_call(
            stmt.table,
            project,
            self.catalog.create_table,
            target,
            stmt.table.name,
            schema,
            primary_key=primary_key or None,
            buckets=buckets if primary_key else None,
            **options,
        )

    def _query(self, project: str, tokens: list[Token], result_path: Path) -> QueryResult:
        """Run a query and materialise its result (in the statement's time zone)."""
        kind = intervals.result_kind(tokens)
        return self._with_duckdb(
            project,
            tokens,
            lambda con: materialise(
                con, translate(tokens), result_path, self.max_field_size, self._local.zone, kind
            ),
        )

    # ------------------------------------------------------------------ helpers
    def _table(self, project: str, name: TableName) -> TableInfo:
        try:
            return self.catalog.get_table(name.project or project, name.name, name.schema)
        except EmulatorError:
            raise SqlError.table_not_found(name.qualified(project)) from None

    def _catalog_call(self, name: TableName, project: str, func: Any, *args: Any, **kw: Any) -> Any:
        """Call a catalog method; its errors become the service's SQL errors."""
        try:
            return func(*args, **kw)
        except EmulatorError as exc:
            if exc.code in ("NoSuchTable", "NoSuchProject"):
                raise SqlError.table_not_found(name.qualified(project)) from None
            if exc.code == "ObjectAlreadyExists":
                raise SqlError.semantic(
                    f"Table or partition already exists - {exc.message}"
                ) from None
            raise SqlError.semantic(exc.message) from None

    def _with_duckdb(self, project: str, tokens: list[Token], work: Any) -> Any:
        """Run ``work(con)`` on a connection whose views show the tables ``tokens`` name."""
        import duckdb

        con = duckdb.connect()
        try:
            con.execute(f"SET TimeZone = '{self._local.zone}'")  # GETDATE() is wall clock there
            for macro in intervals.MACROS:
                con.execute(macro)
            with self.pins.scope() as scope:
                names = referenced_names(tokens)
                bind_tables(con, self.catalog, project, names, scope, self._local.zone)
                return work(con)
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
        except OSError as exc:  # a failed Arrow dataset scan (wide DECIMAL out of range, ...)
            raise SqlError.runtime(str(exc).split("\n")[0]) from None
        except EmulatorError as exc:
            raise SqlError.runtime(exc.message) from None
        finally:
            con.close()
