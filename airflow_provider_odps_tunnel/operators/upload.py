"""A block upload as a chain of tasks: create session -> plan -> write blocks (mapped) -> commit.

Each task can fail, retry, be killed or be cleared, and every row is still committed once:

.. code-block:: python

    create = OdpsCreateUploadSessionOperator(task_id="create", table="sales", partition="ds={{ ds }}")
    plan = OdpsPlanUploadOperator(task_id="plan", source="s3://bucket/sales/{{ ds }}/")
    write = OdpsWriteBlocksOperator.partial(task_id="write", session=create.output).expand_kwargs(
        plan.output
    )
    commit = OdpsCommitUploadOperator(
        task_id="commit", session=create.output, plan=plan.output, written=write.output
    )

XCom carries the session reference and the plan between tasks; the task state store
carries each task's own progress across its retries (Airflow deletes a task's own XComs when
it retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.operators.assets import default_outlets, report_table_write
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.ledger import TaskState
from airflow_provider_odps_tunnel.operators.lineage import (
    LineageDataset,
    OdpsLineageMixin,
    record_output,
)
from airflow_provider_odps_tunnel.operators.planning import (
    DEFAULT_BLOCK_BYTES,
    BlockPlan,
    max_map_length,
    split_work,
)
from airflow_provider_odps_tunnel.operators.sources import (
    DEFAULT_BATCH_ROWS,
    FileSourceMixin,
    LoadSource,
    SourceCallable,
)
from airflow_provider_odps_tunnel.operators.table_options import (
    TableMixin,
    TableOptions,
    UploadSessionMixin,
)
from airflow_provider_odps_tunnel.operators.upload_steps import (
    commit_planned_upload,
    open_or_reattach_upload,
    plan_source_blocks,
    write_planned_blocks,
)

__all__ = [
    "OdpsCreateUploadSessionOperator",
    "OdpsPlanUploadOperator",
    "OdpsWriteBlocksOperator",
    "OdpsCommitUploadOperator",
]


class OdpsCreateUploadSessionOperator(TableMixin, UploadSessionMixin, OdpsBaseOperator):
    """Open a block upload session and return its reference (a dict) for the next tasks.

    A retry of this task reattaches to the session its earlier try opened (remembered in
    the task state store) as long as the service still reports it ``normal``; otherwise,
    or if the target changed, it opens a new session. A task cleared after its session was
    committed fails rather than load the rows twice, unless ``overwrite`` (the load
    replaces the data, so running it again is harmless) or ``force_rerun``. The table
    options are described in ``TableOptions`` (``operators.table_options``).

    :param table: the table, ``table``, ``project.table`` or ``project.schema.table``
        (templated).
    :param partition: the partition to load, e.g. ``"ds=2024-01-01"`` (templated).
    :param overwrite: replace the table's or partition's data at commit (``INSERT
        OVERWRITE``) instead of appending.
    :param create_partition: create the partition if it does not exist.
    :param compression: compress block bodies: ``"zlib"``, ``"zstd"``, ``"lz4"``,
        ``"snappy"`` or None (templated).
    :param tags: tags of the session, for the service's audit logs (templated).
    :param force_rerun: when the task is cleared after its session was committed, open a
        new session and append the rows again (without ``overwrite`` the task fails
        instead, since the rows are already in the table).
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        *TableMixin.templated_options,
        *UploadSessionMixin.templated_options,
    )

    def __init__(
        self,
        *,
        table: str,
        partition: str | None = None,
        overwrite: bool = False,
        create_partition: bool = False,
        compression: str | None = None,
        tags: str | list[str] | None = None,
        force_rerun: bool = False,
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
        self.force_rerun = force_rerun

    def execute(self, context: Any) -> dict[str, Any]:
        ref = open_or_reattach_upload(
            self.hook,
            TaskState.of(context),
            self.log,
            TableOptions.of(self),
            force_rerun=self.force_rerun,
        )
        return ref.to_dict()


class OdpsPlanUploadOperator(OdpsLineageMixin, FileSourceMixin, BaseOperator):
    """Cut the source into blocks and the blocks into writer tasks; returns the list of
    keyword arguments for ``OdpsWriteBlocksOperator.partial(...).expand_kwargs(...)``.

    Each element is ``{"blocks": [{"block_id": n, "pieces": [...]}, ...], "plan_blocks": N}``
    (``N`` the blocks of the whole plan, so a writer's log names its share): references to
    files (or callable parts), never data. Blocks hold at least ``block_size`` bytes of
    source where the data allows, ids stay within ``first_block_id .. 19999``, and there are
    at most ``max_writers`` writers (never more than Airflow's ``[core] max_map_length``).
    The plan is deterministic for the same files, so a re-run plans the same blocks.
    The source options are described in ``LoadSource`` (``operators.sources``).

    :param source: a file, a directory (every file below it but hidden ones and markers like
        ``_SUCCESS``), a glob pattern, or a list of them, as ``ObjectStoragePath`` URIs
        (``s3://...``, ``file:///...``): the files to cut into blocks (templated).
    :param source_conn_id: the Airflow connection of the source's filesystem (templated).
    :param source_format: ``parquet``, ``csv``, ``jsonl`` or ``arrow``; by default taken
        from each file's suffix (templated).
    :param source_compression: the stream compression of CSV and JSON lines files (``gzip``,
        ``bz2``, ``zstd``, or ``none``); by default taken from each file's suffix (``.gz``,
        ``.bz2``, ``.zst``).
    :param source_parts: instead of files, the number of parts of a source callable that the
        writers are given (templated).
    :param block_size: target bytes of source per block (default 64 MiB) (templated).
    :param max_writers: the most writer tasks to map (templated).
    :param first_block_id: the first block id to use (to share a session between plans).
    :param allow_empty: plan no blocks, instead of failing, when the source has no files.
    """

    template_fields: Sequence[str] = (
        *FileSourceMixin.templated_options,
        "source_parts",
        "block_size",
        "max_writers",
    )

    def __init__(
        self,
        *,
        source: str | Sequence[str] | None = None,
        source_conn_id: str | None = None,
        source_format: str | None = None,
        source_compression: str | None = None,
        source_parts: int | None = None,
        block_size: int = DEFAULT_BLOCK_BYTES,
        max_writers: int = 16,
        first_block_id: int = 0,
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            source=source,
            source_conn_id=source_conn_id,
            source_format=source_format,
            source_compression=source_compression,
            **kwargs,
        )
        self.source_parts = source_parts
        self.block_size = block_size
        self.max_writers = max_writers
        self.first_block_id = first_block_id
        self.allow_empty = allow_empty

    def execute(self, context: Any) -> list[dict[str, Any]]:
        blocks = plan_source_blocks(
            LoadSource.of(self),
            block_bytes=int(self.block_size),
            first_block_id=self.first_block_id,
            allow_empty=self.allow_empty,
        )
        writers = split_work(blocks, min(int(self.max_writers), max_map_length()))
        if not writers:  # nothing to load: one writer with no blocks keeps the chain running
            writers = [[]]
        self.log.info(
            "Planned %d blocks (%d bytes of source) for %d writers",
            len(blocks),
            sum(b.nbytes for b in blocks),
            len(writers),
        )
        return [
            {"blocks": [b.to_dict() for b in work], "plan_blocks": len(blocks)} for work in writers
        ]


class OdpsWriteBlocksOperator(OdpsBaseOperator):
    """Write a run of planned blocks into an upload session (map it over the plan).

    Each block id is written from its fixed pieces, so a retry rewrites the same rows into
    the same id and the service keeps the last complete write. Every finished block is
    recorded in the task state store (content digest, rows, bytes) under its block id: a
    retry skips the blocks that the record and the service's block list both show as done
    and sends only the rest. Returns ``{"session_id", "rows", "bytes", "blocks": [...]}``
    with one ``{"block_id", "rows", "bytes", "digest", "skipped"}`` per block.

    :param session: the reference returned by ``OdpsCreateUploadSessionOperator``
        (templated; pass ``create.output``).
    :param blocks: this writer's blocks, from ``OdpsPlanUploadOperator`` (templated;
        normally supplied by ``expand_kwargs(plan.output)``).
    :param plan_blocks: the number of blocks in the whole plan, so that progress lines name
        this writer's share (``block 3 of 16``); supplied by the plan.
    :param source_callable: the callable for plans made with ``source_parts``, called as
        ``source_callable(part, parts)`` and yielding Arrow batches or tables or DataFrames;
        it must give the same rows for a part every time, since a retry calls it again.
    :param csv_options: how CSV files are read, a dict of ``CsvOptions``' fields
        (``delimiter``, ``quote_char``, ``escape_char``, ``null_values``, ``header``,
        ``column_names``, ``skip_rows``, ``encoding``; ``operators.sources``).
    :param column_mapping: source column -> table column, for sources whose column names
        differ from the table's.
    :param ignore_extra_columns: drop source columns the table does not have instead of
        failing.
    :param threads: blocks written at the same time inside this task.
    :param batch_rows: rows per batch read from files.
    :param progress_interval: seconds between progress lines in the log.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (*OdpsBaseOperator.template_fields, "session", "blocks")

    def __init__(
        self,
        *,
        session: dict[str, Any] | Any,
        blocks: list[dict[str, Any]] | Any,
        plan_blocks: int | None = None,
        source_callable: SourceCallable | None = None,
        csv_options: dict[str, Any] | None = None,
        column_mapping: dict[str, str] | None = None,
        ignore_extra_columns: bool = False,
        threads: int = 1,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.blocks = blocks
        self.plan_blocks = plan_blocks
        self.source_callable = source_callable
        self.csv_options = csv_options
        self.column_mapping = column_mapping
        self.ignore_extra_columns = ignore_extra_columns
        self.threads = threads
        self.batch_rows = batch_rows
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        ref = SessionRef.of(self.session)
        blocks = [BlockPlan.of(b) for b in self.blocks]
        results = write_planned_blocks(
            self.hook,
            ref,
            blocks,
            TaskState.of(context),
            self.log,
            sources=LoadSource.of(self),
            threads=self.threads,
            progress_interval=self.progress_interval,
            plan_blocks=self.plan_blocks,
        )
        written = {
            "session_id": ref.session_id,
            "rows": sum(r["rows"] for r in results),
            "bytes": sum(r["bytes"] for r in results),
            "blocks": results,
        }
        # Lineage: the rows this writer sent into the (not yet committed) session.
        record_output(
            self,
            LineageDataset(
                table=ref.table,
                partition=ref.partition,
                rows=written["rows"],
                nbytes=written["bytes"],
                upload=ref,
            ),
        )
        return written

    def lineage_source_uris(self) -> list[str]:
        """The files of this writer's blocks (its OpenLineage inputs)."""
        pieces = (p for b in self.blocks for p in BlockPlan.of(b).pieces)
        return list(dict.fromkeys(p.uri for p in pieces if p.uri))


class OdpsCommitUploadOperator(OdpsBaseOperator):
    """Commit an upload session once every planned block is written (the fan-in task).

    The service's block list must equal the plan; a session that is already committed
    with the planned blocks counts as success, so a retry after a commit that went through
    succeeds without committing twice. On success the table's Asset gets an event (see
    ``assets``). Returns ``{"table", "partition",
    "session_id", "blocks", "rows", "committed"}``; ``rows`` is the sum the writers
    reported and ``committed`` is False when an earlier attempt had already committed.

    :param session: the reference returned by ``OdpsCreateUploadSessionOperator``
        (templated; pass ``create.output``).
    :param plan: the plan of ``OdpsPlanUploadOperator`` (templated; pass
        ``plan.output``). Without it the blocks the writers reported are committed.
    :param written: the writers' results (templated; pass ``write.output``).
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        "session",
        "plan",
        "written",
    )

    def __init__(
        self,
        *,
        session: dict[str, Any] | Any,
        plan: list[dict[str, Any]] | Any = None,
        written: list[dict[str, Any]] | Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs["outlets"] = default_outlets(kwargs.get("outlets"))
        super().__init__(**kwargs)
        self.session = session
        self.plan = plan
        self.written = written

    def execute(self, context: Any) -> dict[str, Any]:
        ref = SessionRef.of(self.session)
        written = [w for w in _all_items(self.written) if w]
        reported = {int(b["block_id"]): b for w in written for b in w["blocks"]}
        if self.plan is not None:
            planned = [int(b["block_id"]) for work in self.plan for b in work["blocks"]]
            unreported = sorted(set(planned) - set(reported))
            if written and unreported:
                raise AirflowFailException(f"planned blocks {unreported} were not written")
        elif self.written is not None:
            planned = sorted(reported)
        else:
            raise AirflowFailException("give the plan or the writers' results to commit")
        rows = sum(int(reported[b]["rows"]) for b in planned if b in reported)
        committed = commit_planned_upload(self.hook, ref, planned, self.log, rows=rows)
        result = {
            "table": ref.table,
            "partition": ref.partition,
            "session_id": ref.session_id,
            "blocks": len(planned),
            "rows": rows,
            "committed": committed,
        }
        nbytes = sum(int(reported[b].get("bytes", 0)) for b in planned if b in reported)
        report_table_write(context, self, ref.table, ref.partition, ref.session_id, rows, nbytes)
        return result


def _all_items(values: Sequence[Any] | None) -> list[Any]:
    """Every item of ``values`` in one read.

    The results of mapped writers arrive as Airflow's lazy XCom sequence. Iterating it asks
    for one item after another until a request past the end fails, and the API server logs
    that miss (``XCom not found ... offset=N``) as an error; a slice is one request for all.
    """
    if values is None:
        return []
    return list(values[:])
