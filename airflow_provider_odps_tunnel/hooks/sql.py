"""``OdpsSqlHook``: the ``odps_tunnel`` connection as a ``common.sql`` ``DbApiHook``.

The connection type ``odps_tunnel`` names this hook in the provider info, so
``Connection.get_hook()`` and every ``common.sql`` operator that resolves its hook from a
connection id (``SQLExecuteQueryOperator``, the SQL check operators, ``GenericTransfer``)
get a ``DbApiHook`` whose DB-API connection is :mod:`..tunnel.dbapi`. It is also an
``OdpsTunnelHook``: the tunnel methods, the connection form and ``test_connection`` are
that hook's.

Differences from a typical ``DbApiHook``, because of what MaxCompute is:

* ``get_conn()`` returns a :class:`~..tunnel.dbapi.Connection` (the tunnel hook's returns
  the ``ODPS`` entry object, still available as ``hook.odps``). There are no transactions:
  every statement commits when its instance succeeds.
* ``get_df`` and ``get_df_by_chunks`` read the result through the instance tunnel's Arrow
  format and convert it (pandas; polars when installed), not through ``pandas.read_sql``;
  keyword arguments go to ``pyarrow.Table.to_pandas``.
* ``insert_rows`` uploads the rows through one tunnel upload session committed once (all
  rows or none), not with INSERT statements; ``commit_every`` only sets the rows per Arrow
  batch. ``replace=True`` is refused (see :meth:`OdpsSqlHook.insert_rows`).
* There is no SQLAlchemy dialect: ``sqlalchemy_url``, ``get_sqlalchemy_engine``,
  ``inspector`` and ``get_table_schema`` are not supported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_provider_odps_tunnel.hooks.connection import ConnectionSettings, read_settings
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.tunnel import dbapi
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import conform_table
from airflow_provider_odps_tunnel.tunnel.errors import RecordValidationError
from airflow_provider_odps_tunnel.tunnel.options import resolve_timezone

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OdpsSqlHook"]

#: Connection extras that ``SQLExecuteQueryOperator.get_hook`` passes as hook parameters and
#: that the hook reads from the connection itself.
_CONNECTION_EXTRAS = ("endpoint", "tunnel_endpoint", "sts_token")


class OdpsSqlHook(OdpsTunnelHook, DbApiHook):
    """Runs SQL on MaxCompute through an ``odps_tunnel`` connection, as ``common.sql`` expects.

    :param odps_tunnel_conn_id: the Airflow connection to use.
    :param project: a project overriding the connection's ``project`` extra.
    :param quota_name: a tunnel quota overriding the connection's ``quota_name`` extra.
    :param schema: a schema (three-tier projects) overriding the connection's; the
        ``database`` argument of the ``common.sql`` operators sets it too.
    :param hints: SQL settings sent with every statement (``{"odps.sql.timezone": ...}``).
    :param allow_limited_results: accept a query result the project only lets the instance
        tunnel read limited to 10,000 rows; by default such a result raises.
    :param log_sql: log each statement before running it (``DbApiHook``'s switch).
    """

    supports_autocommit = False
    supports_executemany = False

    def __init__(
        self,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        *,
        project: str | None = None,
        quota_name: str | None = None,
        schema: str | None = None,
        hints: Mapping[str, Any] | None = None,
        allow_limited_results: bool = False,
        log_sql: bool = True,
        **kwargs: Any,
    ) -> None:
        for name in list(kwargs):
            if name in _CONNECTION_EXTRAS or name.startswith("extra__odps_tunnel__"):
                del kwargs[name]
        super().__init__(
            odps_tunnel_conn_id,
            project=project,
            quota_name=quota_name,
            schema=schema,
            log_sql=log_sql,
            **kwargs,
        )
        self.schema = schema
        self.hints = dict(hints or {})
        self.allow_limited_results = allow_limited_results

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's settings, with this hook's ``schema`` when one was set."""
        settings = read_settings(
            self.connection, project=self._project, quota_name=self._quota_name
        )
        return dataclasses.replace(settings, schema=self.schema) if self.schema else settings

    @cached_property
    def dialect_name(self) -> str:
        """``odps``: there is no SQLAlchemy dialect to derive it from a URI."""
        return "odps"

    def get_conn(self) -> dbapi.Connection:
        """A DB-API connection on the hook's client (closing it leaves the client open)."""
        return dbapi.connect(
            self.odps, hints=self.hints, allow_limited_results=self.allow_limited_results
        )

    # -- data frames through Arrow -------------------------------------------------------------

    def _arrow_cursor(self, conn: dbapi.Connection, sql: str | list[str], parameters: Any) -> Any:
        """A cursor that ran ``sql`` (each statement of a list, in order)."""
        cursor = conn.cursor()
        for statement in [sql] if isinstance(sql, str) else sql:
            if self.log_sql:
                self.log.info("Running statement: %s, parameters: %s", statement, parameters)
            cursor.execute(statement, parameters)
        return cursor

    def get_arrow_table(
        self, sql: str | list[str], parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> pa.Table:
        """The result of ``sql`` (the last statement of a list) as an Arrow table, read
        through the instance tunnel's Arrow format."""
        with closing(self.get_conn()) as conn:
            return self._arrow_cursor(conn, sql, parameters).fetch_arrow_table()

    def _get_pandas_df(self, sql: Any, parameters: Any = None, **kwargs: Any) -> pd.DataFrame:
        return self.get_arrow_table(sql, parameters).to_pandas(**kwargs)

    def _get_polars_df(self, sql: Any, parameters: Any = None, **kwargs: Any) -> Any:
        import polars as pl  # optional: DbApiHook.get_df(df_type="polars") needs it installed

        return pl.from_arrow(self.get_arrow_table(sql, parameters), **kwargs)

    def _arrow_chunks(self, sql: Any, parameters: Any, chunksize: int) -> Iterator[pa.Table]:
        """The result in tables of ``chunksize`` rows (the last may be shorter)."""
        if chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, got {chunksize}")
        with closing(self.get_conn()) as conn:
            cursor = self._arrow_cursor(conn, sql, parameters)
            pending: pa.Table | None = None
            for batch in cursor.fetch_arrow_batches():
                table = pa.Table.from_batches([batch])
                pending = table if pending is None else pa.concat_tables([pending, table])
                while pending.num_rows >= chunksize:
                    yield pending.slice(0, chunksize)
                    pending = pending.slice(chunksize)
            if pending is not None and pending.num_rows:
                yield pending

    def _get_pandas_df_by_chunks(
        self, sql: Any, parameters: Any = None, *, chunksize: int, **kwargs: Any
    ) -> Iterator[pd.DataFrame]:
        for table in self._arrow_chunks(sql, parameters, chunksize):
            yield table.to_pandas(**kwargs)

    def _get_polars_df_by_chunks(
        self, sql: Any, parameters: Any = None, *, chunksize: int, **kwargs: Any
    ) -> Iterator[Any]:
        import polars as pl  # optional, as in _get_polars_df

        for table in self._arrow_chunks(sql, parameters, chunksize):
            yield pl.from_arrow(table, **kwargs)

    # -- loading rows through the tunnel -------------------------------------------------------

    def insert_rows(
        self,
        table: str,
        rows: Iterable[Sequence[Any]],
        target_fields: Sequence[str] | None = None,
        commit_every: int = 1000,
        replace: bool = False,
        *,
        partition: str | None = None,
        create_partition: bool = False,
        overwrite: bool = False,
        executemany: bool = False,
        fast_executemany: bool = False,
        autocommit: bool = False,
    ) -> int:
        """Upload ``rows`` into ``table`` through one tunnel upload session; returns the
        number of rows. The session is committed once, so the rows appear all together or
        not at all (a failed try leaves nothing behind).

        :param table: the table (``t``, ``project.t`` or ``project.schema.t``).
        :param rows: tuples of values, in the order of ``target_fields`` or of the table's
            data columns.
        :param target_fields: the columns the values fill; other columns are NULL.
        :param commit_every: rows per Arrow batch sent (0: all in one); the commit is single.
        :param replace: not supported (``REPLACE INTO`` has no tunnel equivalent): use
            ``overwrite=True`` to replace the table or partition, or an upsert on a
            primary-key table.
        :param partition: the partition to write (``ds=20240101``), for a partitioned table.
        :param create_partition: create the partition when it does not exist.
        :param overwrite: replace the table's or partition's rows on commit.
        :param executemany: ignored (``DbApiHook`` compatibility).
        :param fast_executemany: ignored (``DbApiHook`` compatibility).
        :param autocommit: ignored (``DbApiHook`` compatibility).
        """
        if replace:
            raise ValueError(
                f"insert_rows into {table}: replace=True (REPLACE INTO) has no tunnel "
                "equivalent; use overwrite=True to replace the table or partition, or an "
                "upsert on a primary-key table"
            )
        ref, session = self.create_upload_session(
            table, partition, overwrite=overwrite, create_partition=create_partition
        )
        schema = self.arrow_schema(session)
        fields = list(target_fields) if target_fields else schema.names
        by_name = {name.lower(): index for index, name in enumerate(schema.names)}
        unknown = [name for name in fields if name.lower() not in by_name]
        if unknown:
            raise ValueError(
                f"insert_rows into {ref.target}: column {unknown[0]!r} is not in the table, "
                f"whose columns are {schema.names}"
            )
        write = self.write_block(
            session, 0, _row_batches(rows, schema, fields, commit_every, ref.target)
        )
        session.commit([0])
        self.log.info(
            "Inserted %d rows into %s (tunnel upload session %s)",
            write.rows,
            ref.target,
            session.id,
        )
        return write.rows


def _row_batches(
    rows: Iterable[Sequence[Any]],
    schema: pa.Schema,
    fields: list[str],
    batch_rows: int,
    target: str,
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of ``schema`` holding ``rows`` (values in ``fields`` order), at most
    ``batch_rows`` rows each (0: one batch)."""
    chunk: list[Sequence[Any]] = []
    first = 0
    for row in rows:
        if len(row) != len(fields):
            raise ValueError(
                f"insert_rows into {target}: row {first + len(chunk)} has {len(row)} values "
                f"for {len(fields)} columns {fields}"
            )
        chunk.append(row)
        if batch_rows and len(chunk) >= batch_rows:
            yield from _conformed(chunk, first, schema, fields, target)
            first += len(chunk)
            chunk = []
    if chunk:
        yield from _conformed(chunk, first, schema, fields, target)


def _conformed(
    chunk: list[Sequence[Any]], first: int, schema: pa.Schema, fields: list[str], target: str
) -> Iterator[pa.RecordBatch]:
    """One chunk of rows converted to the table's Arrow schema; an error names the table,
    the column and the row (counted from the first row given to ``insert_rows``)."""
    position = {name.lower(): index for index, name in enumerate(fields)}
    arrays = []
    for field in schema:
        index = position.get(field.name.lower())
        values = [row[index] for row in chunk] if index is not None else [None] * len(chunk)
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            try:  # let conform_table convert (and explain) what pyarrow cannot take as is
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise RecordValidationError(
                    f"insert_rows into {target}: column {field.name!r} of rows "
                    f"{first}..{first + len(chunk) - 1} mixes values of different types: {exc}",
                    column=field.name,
                    table=target,
                ) from None
    table = pa.Table.from_arrays(arrays, names=schema.names)
    try:
        yield from conform_table(table, schema, resolve_timezone())
    except RecordValidationError as exc:
        raise RecordValidationError(
            f"insert_rows into {target}, rows from {first}: {exc}",
            column=exc.column,
            column_type=exc.column_type,
            value=exc.value,
        ) from exc
