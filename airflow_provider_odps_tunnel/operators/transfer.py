"""Files (or a callable) into a MaxCompute table in one task: open, write in threads, commit.

For loads small enough for one worker. The guarantees are those of the mapped chain,
through Airflow's ``ResumableJobMixin``: the upload session is the external job (its
reference is stored before any block is written), a retry reconnects to it while the
service reports it ``normal``, returns at once if it is already committed, and opens a new
session if it expired; finished blocks are recorded per block id, so a retry only writes
what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import ResumableJobMixin

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.operators.assets import default_outlets, report_table_write
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.ledger import BlockLedger, TaskState
from airflow_provider_odps_tunnel.operators.planning import DEFAULT_BLOCK_BYTES, BlockPlan
from airflow_provider_odps_tunnel.operators.sources import (
    DEFAULT_BATCH_ROWS,
    LoadSource,
    LoadSourceMixin,
    SourceCallable,
)
from airflow_provider_odps_tunnel.operators.table_options import (
    TableMixin,
    TableOptions,
    UploadSessionMixin,
)
from airflow_provider_odps_tunnel.operators.upload_steps import (
    commit_planned_upload,
    open_upload,
    plan_source_blocks,
    write_planned_blocks,
)

__all__ = ["ObjectStorageToOdpsOperator"]

_RESULT_KEY = "result"


class ObjectStorageToOdpsOperator(
    ResumableJobMixin, LoadSourceMixin, TableMixin, UploadSessionMixin, OdpsBaseOperator
):
    """Load files from object storage (or a callable's data) into a table in one task.

    Returns ``{"table", "partition", "session_id", "blocks", "rows"}``. The source options
    are described in ``LoadSource`` (``operators.sources``), the table options in
    ``TableOptions`` (``operators.table_options``).

    :param table: the table, ``table``, ``project.table`` or ``project.schema.table``
        (templated).
    :param partition: the partition to load, e.g. ``"ds=2024-01-01"`` (templated).
    :param source: a file, a directory (every file below it but hidden ones and markers like
        ``_SUCCESS``), a glob pattern, or a list of them, as ``ObjectStoragePath`` URIs
        (``s3://...``, ``file:///...``); the files are grouped into blocks of
        ``block_size`` (templated).
    :param source_conn_id: the Airflow connection of the source's filesystem (templated).
    :param source_format: ``parquet``, ``csv``, ``jsonl`` or ``arrow``; by default taken
        from each file's suffix (templated).
    :param source_callable: instead of files, a callable ``(part, parts)`` yielding Arrow
        batches or tables or DataFrames; it must give the same rows for a part every time,
        since a retry calls it again. Each part is written as a block of its own.
    :param source_parts: the number of parts (blocks) the callable is called for (1 by
        default).
    :param ignore_extra_columns: drop source columns the table does not have instead of
        failing.
    :param batch_rows: rows per batch read from files.
    :param overwrite: replace the table's or partition's data at commit (``INSERT
        OVERWRITE``) instead of appending.
    :param create_partition: create the partition if it does not exist.
    :param compression: compress block bodies: ``"zlib"``, ``"zstd"``, ``"lz4"``,
        ``"snappy"`` or None (templated).
    :param tags: tags of the session, for the service's audit logs (templated).
    :param block_size: target bytes of source per block (default 64 MiB).
    :param threads: blocks written at the same time.
    :param allow_empty: commit nothing, instead of failing, when the source has no files.
    :param progress_interval: seconds between progress lines in the log.
    :param durable: remember the session across retries (``ResumableJobMixin``).
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    external_id_key = "upload_session"
    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        *TableMixin.templated_options,
        *LoadSourceMixin.templated_options,
        *UploadSessionMixin.templated_options,
    )

    def __init__(
        self,
        *,
        table: str,
        partition: str | None = None,
        source: str | Sequence[str] | None = None,
        source_conn_id: str | None = None,
        source_format: str | None = None,
        source_callable: SourceCallable | None = None,
        source_parts: int | None = None,
        ignore_extra_columns: bool = False,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        overwrite: bool = False,
        create_partition: bool = False,
        compression: str | None = None,
        tags: str | list[str] | None = None,
        block_size: int = DEFAULT_BLOCK_BYTES,
        threads: int = 4,
        allow_empty: bool = False,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        kwargs["outlets"] = default_outlets(kwargs.get("outlets"))
        super().__init__(
            table=table,
            partition=partition,
            source=source,
            source_conn_id=source_conn_id,
            source_format=source_format,
            source_callable=source_callable,
            source_parts=source_parts,
            batch_rows=batch_rows,
            overwrite=overwrite,
            create_partition=create_partition,
            compression=compression,
            tags=tags,
            **kwargs,
        )
        self.ignore_extra_columns = ignore_extra_columns
        self.block_size = block_size
        self.threads = threads
        self.allow_empty = allow_empty
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        result = self.execute_resumable(context)
        report_table_write(
            context,
            self,
            result["table"],
            result["partition"],
            result["session_id"],
            result["rows"],
        )
        return result

    # -- ResumableJobMixin: the upload session is the job ------------------------------------

    def submit_job(self, context: Any) -> dict[str, Any]:
        return open_upload(self.hook, TableOptions.of(self)).to_dict()

    def get_job_status(self, external_id: Any, context: Any) -> str:
        ref = SessionRef.of(external_id)
        if not TableOptions.of(self).matches(self.hook, ref, upload=True):
            return "other_target"
        return self.hook.session_status(ref)

    def is_job_active(self, status: str) -> bool:
        return status == "normal"

    def is_job_succeeded(self, status: str) -> bool:
        return status in ("closed", "committed")

    def poll_until_complete(self, external_id: Any, context: Any) -> dict[str, Any]:
        # Returns the result: on a reconnect the mixin returns what this returns.
        ref = SessionRef.of(external_id)
        state = TaskState.of(context)
        blocks = self._plan()
        results = write_planned_blocks(
            self.hook,
            ref,
            blocks,
            state,
            self.log,
            sources=LoadSource.of(self),
            threads=self.threads,
            progress_interval=self.progress_interval,
        )
        commit_planned_upload(self.hook, ref, [b.block_id for b in blocks], self.log)
        result = self._result(ref, len(blocks), sum(r["rows"] for r in results))
        state.set(_RESULT_KEY, result)
        return result

    def get_job_result(self, external_id: Any, context: Any) -> dict[str, Any]:
        ref = SessionRef.of(external_id)
        state = TaskState.of(context)
        stored = state.get(_RESULT_KEY)
        if isinstance(stored, dict) and stored.get("session_id") == ref.session_id:
            return stored
        # Committed, but the try that committed died before recording the result: the
        # block ledger still knows what each block held.
        blocks = self._plan()
        ledger = BlockLedger(state, ref.session_id)
        records = [ledger.finished(b.block_id, b.fingerprint()) for b in blocks]
        rows = sum(int(r["rows"]) for r in records if r is not None)
        return self._result(ref, len(blocks), rows)

    def _plan(self) -> list[BlockPlan]:
        return plan_source_blocks(
            LoadSource.of(self),
            block_bytes=self.block_size,
            first_block_id=0,
            allow_empty=self.allow_empty,
        )

    @staticmethod
    def _result(ref: SessionRef, blocks: int, rows: int) -> dict[str, Any]:
        return {
            "table": ref.table,
            "partition": ref.partition,
            "session_id": ref.session_id,
            "blocks": blocks,
            "rows": rows,
        }
