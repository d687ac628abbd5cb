"""Files (or a callable) into a MaxCompute table in one task: open, write in threads, commit.

For loads small enough for one worker. The guarantees are those of the mapped chain,
through Airflow's ``ResumableJobMixin``: the upload session is the external job (its
reference is stored before any block is written), a retry reconnects to it while the
service reports it ``normal``, returns at once if it is already committed, and opens a new
session if it expired; finished blocks are recorded per block id, so a retry only writes
what is missing.

What a retry or a clear does: the session reference is kept with the source's listing
fingerprint (file names, sizes, ETags or modification times, as ``listing_fingerprint``
computes it). A later try of the same task instance (a retry, or a run after a clear) whose
source lists the same files reuses the session: it resumes a ``normal`` one and returns the
recorded result of a committed one without loading again. When the listing changed, or
with ``force_rerun=True``, it opens a new session and loads the source again (with
``overwrite=True`` that replaces what the earlier try committed; without, it appends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from airflow.sdk import ResumableJobMixin
from airflow.sdk.exceptions import AirflowFailException

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
    listing_fingerprint,
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
#: No table columns: the source's own types, for a table that does not exist yet.
_EMPTY_SCHEMA = pa.schema([])
#: Task-state key of the fingerprint of the source a session loads (with its session id).
_FINGERPRINT = "source_fingerprint"


class _ResumableLoad(ResumableJobMixin, TableMixin, UploadSessionMixin, OdpsBaseOperator):
    """The single-task load of a source into a table, resumable (see the module's
    docstring): the base of ``ObjectStorageToOdpsOperator`` and ``SqlToOdpsOperator``.

    A subclass's ``__init__`` sets the table and session options through the mixins and
    these attributes: the ``LoadSource`` options it reads with (others keep their
    defaults), ``create_table_if_missing``, ``force_rerun``, ``block_size``, ``threads``,
    ``allow_empty`` and ``progress_interval``; ``source_fingerprint`` says what identifies
    its source.
    """

    external_id_key = "upload_session"

    def execute(self, context: Any) -> dict[str, Any]:
        self._blocks: list[BlockPlan] | None = None
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
        if self.create_table_if_missing:
            self._create_table()
        return open_upload(self.hook, TableOptions.of(self)).to_dict()

    def get_job_status(self, external_id: Any, context: Any) -> str:
        ref = SessionRef.of(external_id)
        if not TableOptions.of(self).matches(self.hook, ref, upload=True):
            return "other_target"
        loaded = TaskState.of(context).get(_FINGERPRINT)
        if (
            isinstance(loaded, dict)
            and loaded.get("session_id") == ref.session_id
            and loaded.get("fingerprint") != self.source_fingerprint()
        ):
            self.log.info(
                "The source changed since session %s of an earlier try loaded it: loading it "
                "again in a new session",
                ref.session_id,
            )
            return "source_changed"
        status = self.hook.session_status(ref)
        if self.force_rerun and self.is_job_succeeded(status):
            self.log.info(
                "Session %s of an earlier try committed this source; force_rerun loads it again",
                ref.session_id,
            )
            return "rerun"
        return status

    def is_job_active(self, status: str) -> bool:
        return status == "normal"

    def is_job_succeeded(self, status: str) -> bool:
        return status in ("closed", "committed")

    def poll_until_complete(self, external_id: Any, context: Any) -> dict[str, Any]:
        # Returns the result: on a reconnect the mixin returns what this returns.
        ref = SessionRef.of(external_id)
        state = TaskState.of(context)
        blocks = self._plan()
        fingerprint = {"session_id": ref.session_id, "fingerprint": self.source_fingerprint()}
        state.set(_FINGERPRINT, fingerprint)
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

    def source_fingerprint(self) -> str:
        """The fingerprint of what this task loads: the source listing's (a callable's
        parts are only numbered, so its fingerprint changes only with their number)."""
        return listing_fingerprint(p for b in self._plan() for p in b.pieces)

    def _plan(self) -> list[BlockPlan]:
        # Listed once per try: the fingerprint and the blocks written come from one listing.
        if getattr(self, "_blocks", None) is None:
            self._blocks = plan_source_blocks(
                LoadSource.of(self),
                block_bytes=self.block_size,
                first_block_id=0,
                allow_empty=self.allow_empty,
            )
        return self._blocks

    def _create_table(self) -> None:
        """Create the table from the schema of the source's first rows, with the partition
        columns of ``partition``."""
        source = LoadSource.of(self)
        schema = None
        for block in self._plan():
            for piece in block.pieces:
                batches = source.read([piece], _EMPTY_SCHEMA)
                first = next(iter(batches), None)
                if first is not None:
                    schema = first.schema
                    break
            if schema is not None:
                break
        if schema is None:
            raise AirflowFailException(
                f"cannot create table {self.table}: the source has no rows to take a schema from"
            )
        partition_columns = [
            kv.split("=", 1)[0].strip() for kv in (self.partition or "").split(",") if "=" in kv
        ]
        self.hook.create_table_if_missing(self.table, schema, partition_columns)

    @staticmethod
    def _result(ref: SessionRef, blocks: int, rows: int) -> dict[str, Any]:
        return {
            "table": ref.table,
            "partition": ref.partition,
            "session_id": ref.session_id,
            "blocks": blocks,
            "rows": rows,
        }


class ObjectStorageToOdpsOperator(LoadSourceMixin, _ResumableLoad):
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
    :param source_compression: the stream compression of CSV and JSON lines files
        (``"gzip"``, ``"bz2"``, ``"zstd"`` or ``"none"``); by default taken from each file's
        suffix (``.gz``, ``.bz2``, ``.zst``).
    :param csv_options: how CSV files are read: a dict with any of ``delimiter``,
        ``quote_char``, ``escape_char``, ``null_values``, ``header``, ``column_names``,
        ``skip_rows``, ``encoding`` (see ``CsvOptions``).
    :param column_mapping: source column -> table column, where the names differ.
    :param create_table_if_missing: create the table from the source's schema (the first
        file's, or the callable's first batch) before loading, its partition columns (as
        STRING) taken from ``partition``.
    :param force_rerun: load the source again even when an earlier try of this task
        instance committed the same source listing.
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
        source_compression: str | None = None,
        csv_options: dict[str, Any] | None = None,
        column_mapping: dict[str, str] | None = None,
        create_table_if_missing: bool = False,
        force_rerun: bool = False,
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
            source_compression=source_compression,
            source_callable=source_callable,
            source_parts=source_parts,
            batch_rows=batch_rows,
            csv_options=csv_options,
            column_mapping=column_mapping,
            overwrite=overwrite,
            create_partition=create_partition,
            compression=compression,
            tags=tags,
            **kwargs,
        )
        self.ignore_extra_columns = ignore_extra_columns
        self.create_table_if_missing = create_table_if_missing
        self.force_rerun = force_rerun
        self.block_size = block_size
        self.threads = threads
        self.allow_empty = allow_empty
        self.progress_interval = progress_interval
