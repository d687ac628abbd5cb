"""Rows of any SQL database with an Airflow ``DbApiHook`` into a MaxCompute table.

.. code-block:: python

    SqlToOdpsOperator(
        task_id="orders_to_odps",
        sql_conn_id="orders_db",
        sql="SELECT id, customer, total FROM orders WHERE day = '{{ ds }}'",
        split_column="id",
        ranges=8,
        table="orders",
        partition="ds={{ ds }}",
        create_partition=True,
    )

The query is cut into ``ranges`` parts, each read with its own query and written as one
block of one upload session: by ``split_column`` (an integer column: the span between its
smallest and largest value cut into equal key ranges), by ``order_by`` (``LIMIT``/``OFFSET``
pages of the ordered result), or, with neither, one part. The parts are written
``threads`` at a time in one task; in the mapped chain, ``SqlRangeSource`` is the
``source_callable`` of ``OdpsWriteBlocksOperator`` and an upload plan of ``source_parts``
gives each writer its ranges.

Resuming is the single-task transfer's (``ObjectStorageToOdpsOperator``): the session is
remembered in the task state store, a retry writes only the ranges (blocks) an earlier try
did not finish and the session is committed once. The source's fingerprint is the query,
its split, its key bounds and its row count: when a later try (a retry, or a run after a
clear) finds it unchanged it reuses the earlier session, and returns the recorded result
if that session was committed; when it changed, or with ``force_rerun=True``, it loads the
query again into a new session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from airflow.sdk import BaseHook

from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.lineage import with_source_sql
from airflow_provider_odps_tunnel.operators.planning import DEFAULT_BLOCK_BYTES
from airflow_provider_odps_tunnel.operators.sources import DEFAULT_BATCH_ROWS
from airflow_provider_odps_tunnel.operators.table_options import TableMixin, UploadSessionMixin
from airflow_provider_odps_tunnel.operators.transfer import _ResumableLoad

__all__ = ["SqlRangeSource", "SqlToOdpsOperator"]


def _db_hook(conn_id: str) -> Any:
    """The ``DbApiHook`` of an Airflow connection (any database with a common.sql hook)."""
    hook = BaseHook.get_hook(conn_id)
    if not hasattr(hook, "get_conn") or not hasattr(hook, "placeholder"):
        raise TypeError(
            f"connection {conn_id!r} gives a {type(hook).__name__}, not a DbApiHook: a SQL "
            "source needs a database connection with a common.sql hook"
        )
    return hook


@dataclass
class SqlRangeSource:
    """A SQL query as a callable source ``(part, parts) -> Arrow batches``.

    Part ``i`` of ``parts`` is the ``i``-th key range of ``split_column`` (NULL keys go to
    part 0), or the ``i``-th ``LIMIT``/``OFFSET`` page of the result ordered by
    ``order_by``, or (with neither) the whole query. Bounds and counts are read from the
    database on first use and kept, so every part of one object sees the same split.
    Usable as the ``source_callable`` of ``OdpsWriteBlocksOperator`` (it must be built the
    same way in each writer: with an unchanged source every writer computes the same
    bounds).

    :param conn_id: the Airflow connection of the database.
    :param sql: the query, a single SELECT (no trailing semicolon).
    :param split_column: an integer column to cut the result into key ranges.
    :param order_by: instead, the ORDER BY of the pages (a unique key keeps pages stable).
    :param parameters: the query's parameters, in the database driver's style.
    :param batch_rows: rows fetched per batch.
    """

    conn_id: str
    sql: str
    split_column: str | None = None
    order_by: str | None = None
    parameters: Sequence[Any] | dict[str, Any] | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    _bounds: tuple[Any, Any, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sql = self.sql.strip().rstrip(";")
        if self.split_column and self.order_by:
            raise ValueError("give split_column or order_by, not both")

    @property
    def _source(self) -> str:
        return f"({self.sql}) odps_src"

    def bounds(self) -> tuple[Any, Any, int]:
        """The smallest and largest ``split_column`` value (None without a split column)
        and the row count of the query."""
        if self._bounds is None:
            hook = _db_hook(self.conn_id)
            if self.split_column:
                col = self.split_column
                lo, hi, count = hook.get_first(
                    f"SELECT MIN({col}), MAX({col}), COUNT(*) FROM {self._source}",
                    parameters=self.parameters,
                )
            else:
                lo = hi = None
                (count,) = hook.get_first(
                    f"SELECT COUNT(*) FROM {self._source}", parameters=self.parameters
                )
            if lo is not None and not isinstance(lo, int):
                raise TypeError(
                    f"split_column {self.split_column!r} must hold integers, not "
                    f"{type(lo).__name__}; use order_by to page by other columns"
                )
            self._bounds = (lo, hi, int(count))
        return self._bounds

    def fingerprint(self, parts: int) -> str:
        """A digest of the query, its split into ``parts`` and the current bounds."""
        text = json.dumps(
            [self.sql, self.split_column, self.order_by, self.parameters, parts, self.bounds()],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def part_query(self, part: int, parts: int, placeholder: str) -> tuple[str, list[Any]]:
        """The query of part ``part`` of ``parts`` and its extra parameters."""
        lo, hi, count = self.bounds()
        if self.split_column and lo is not None:
            width = -(-(hi - lo + 1) // parts)
            start, end = lo + part * width, lo + (part + 1) * width
            col = self.split_column
            where = f"{col} >= {placeholder} AND {col} < {placeholder}"
            if part == 0:
                where = f"({where}) OR {col} IS NULL"
            return f"SELECT * FROM {self._source} WHERE {where}", [start, end]
        if self.order_by:
            size = -(-count // parts) if count else 0
            return (
                f"SELECT * FROM {self._source} ORDER BY {self.order_by} "
                f"LIMIT {size} OFFSET {part * size}",
                [],
            )
        if part == 0:
            return self.sql, []
        return f"SELECT * FROM {self._source} WHERE 1 = 0", []

    def __call__(self, part: int, parts: int) -> Iterator[pa.RecordBatch]:
        hook = _db_hook(self.conn_id)
        query, extra = self.part_query(part, parts, hook.placeholder)
        params = _with(self.parameters, extra)
        conn = hook.get_conn()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(query, params) if params else cursor.execute(query)
                names = [d[0] for d in cursor.description]
                while rows := cursor.fetchmany(self.batch_rows):
                    columns = list(zip(*rows, strict=True))
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(list(c)) for c in columns], names=names
                    )
            finally:
                cursor.close()
        finally:
            conn.close()


def _with(parameters: Any, extra: list[Any]) -> Any:
    """The query's own parameters followed by the range's (positional styles only)."""
    if not extra:
        return parameters
    if isinstance(parameters, dict):
        raise ValueError("a split query takes positional parameters, not a dict")
    return [*(parameters or ()), *extra]


class SqlToOdpsOperator(_ResumableLoad):
    """Load the result of a SQL query on any ``DbApiHook`` database into a table, in ranges.

    Returns ``{"table", "partition", "session_id", "blocks", "rows"}``, one block per
    range. The table options are described in ``TableOptions``
    (``operators.table_options``).

    :param sql_conn_id: the Airflow connection of the source database (templated).
    :param sql: the query (templated), a single SELECT.
    :param parameters: the query's parameters, positional in the driver's style
        (templated).
    :param split_column: an integer column to cut the result into ``ranges`` key ranges
        read in parallel (templated).
    :param order_by: instead, page the result ordered by these columns with
        ``LIMIT``/``OFFSET`` (templated).
    :param ranges: the number of parts (blocks) the query is read in (templated).
    :param table: the table, ``table``, ``project.table`` or ``project.schema.table``
        (templated).
    :param partition: the partition to load, e.g. ``"ds=2024-01-01"`` (templated).
    :param column_mapping: source column -> table column, where the names differ.
    :param ignore_extra_columns: drop result columns the table does not have.
    :param create_table_if_missing: create the table from the result's columns, with the
        partition columns of ``partition`` (as STRING).
    :param force_rerun: load again even when an earlier try committed the same result.
    :param batch_rows: rows fetched per batch.
    :param overwrite: replace the table's or partition's data at commit.
    :param create_partition: create the partition if it does not exist.
    :param compression: compress block bodies: ``"zlib"``, ``"zstd"``, ``"lz4"``,
        ``"snappy"`` or None (templated).
    :param tags: tags of the session, for the service's audit logs (templated).
    :param threads: ranges read and written at the same time.
    :param progress_interval: seconds between progress lines in the log.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        *TableMixin.templated_options,
        *UploadSessionMixin.templated_options,
        "sql_conn_id",
        "sql",
        "parameters",
        "split_column",
        "order_by",
        "ranges",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}

    def __init__(
        self,
        *,
        sql_conn_id: str,
        sql: str,
        table: str,
        partition: str | None = None,
        parameters: Sequence[Any] | None = None,
        split_column: str | None = None,
        order_by: str | None = None,
        ranges: int = 1,
        column_mapping: dict[str, str] | None = None,
        ignore_extra_columns: bool = False,
        create_table_if_missing: bool = False,
        force_rerun: bool = False,
        batch_rows: int = 10_000,
        overwrite: bool = False,
        create_partition: bool = False,
        compression: str | None = None,
        tags: str | list[str] | None = None,
        threads: int = 4,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            table=table,
            partition=partition,
            overwrite=overwrite,
            create_partition=create_partition,
            compression=compression,
            tags=tags,
            **kwargs,
        )
        # The load's source options (``LoadSource``): a callable built when the task runs.
        self.source_callable: SqlRangeSource | None = None
        self.source_parts = ranges
        self.batch_rows = batch_rows
        self.column_mapping = column_mapping
        self.ignore_extra_columns = ignore_extra_columns
        self.create_table_if_missing = create_table_if_missing
        self.force_rerun = force_rerun
        self.block_size = DEFAULT_BLOCK_BYTES
        self.threads = threads
        self.allow_empty = False
        self.progress_interval = progress_interval
        self.sql_conn_id = sql_conn_id
        self.sql = sql
        self.parameters = parameters
        self.split_column = split_column
        self.order_by = order_by
        self.ranges = ranges

    def execute(self, context: Any) -> dict[str, Any]:
        if int(self.ranges) < 1:
            raise ValueError(f"ranges must be at least 1, not {self.ranges}")
        self.source_parts = int(self.ranges)
        self.source_callable = SqlRangeSource(
            self.sql_conn_id,
            self.sql,
            split_column=self.split_column or None,
            order_by=self.order_by or None,
            parameters=self.parameters,
            batch_rows=int(self.batch_rows),
        )
        return super().execute(context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The table written, and the query's tables on the source database as inputs
        (``operators.lineage``)."""
        return with_source_sql(self.openlineage_facets(), self.sql_conn_id, self.sql)

    def source_fingerprint(self) -> str:
        return self.source_callable.fingerprint(int(self.source_parts))
