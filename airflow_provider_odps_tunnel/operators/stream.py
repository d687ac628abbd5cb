"""Small, frequent appends through a stream upload session (no commit step).

Every batch the service accepts is committed at once, which suits small loads that run
often. Each source piece is written through its own writer and recorded in the task state
store when done, so a retry skips finished pieces. A piece is sent as one batch as long as
it encodes to less than the client's ``block_buffer_size`` (20 MiB by default): keep
pieces that small and a piece is appended once or not at all, unless the service stored it
and its answer was lost (then the retry appends it again). A larger piece that fails
part-way may be appended partly twice; use the block upload for large data or data that
must not repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.operators.assets import default_outlets, report_table_write
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.ledger import TaskState
from airflow_provider_odps_tunnel.operators.progress import TransferProgress
from airflow_provider_odps_tunnel.operators.sources import (
    DEFAULT_BATCH_ROWS,
    LoadSource,
    LoadSourceMixin,
    SourceCallable,
)
from airflow_provider_odps_tunnel.operators.table_options import (
    StreamSessionMixin,
    TableMixin,
    TableOptions,
)

__all__ = ["OdpsStreamUploadOperator"]

_STATE_KEY = "stream"


class OdpsStreamUploadOperator(LoadSourceMixin, TableMixin, StreamSessionMixin, OdpsBaseOperator):
    """Append rows from files or a callable through a stream upload session.

    Returns ``{"table", "partition", "session_id", "rows", "pieces"}``. The source options
    are described in ``LoadSource`` (``operators.sources``), the table options in
    ``TableOptions`` (``operators.table_options``).

    :param table: the table (templated).
    :param partition: the partition, e.g. ``"ds=2024-01-01"`` (templated).
    :param source: a file, a directory (every file below it but hidden ones and markers like
        ``_SUCCESS``), a glob pattern, or a list of them, as ``ObjectStoragePath`` URIs
        (``s3://...``, ``file:///...``); each file is one piece with a writer of its own
        (templated).
    :param source_conn_id: the Airflow connection of the source's filesystem (templated).
    :param source_format: ``parquet``, ``csv``, ``jsonl`` or ``arrow``; by default taken
        from each file's suffix (templated).
    :param source_callable: instead of files, a callable ``(part, parts)`` yielding Arrow
        batches or tables or DataFrames; it must give the same rows for a part every time,
        since a retry calls it again. Each part is a piece, and a retry skips the pieces
        already appended.
    :param source_parts: the number of parts (pieces) the callable is called for (1 by
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
    :param create_partition: create the partition if it does not exist.
    :param compression: compress bodies (``"zlib"``, ``"zstd"``, ``"lz4"``, ``"snappy"``)
        (templated).
    :param progress_interval: seconds between progress lines in the log.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        *TableMixin.templated_options,
        *LoadSourceMixin.templated_options,
        *StreamSessionMixin.templated_options,
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
        create_partition: bool = False,
        compression: str | None = None,
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
            create_partition=create_partition,
            compression=compression,
            **kwargs,
        )
        self.ignore_extra_columns = ignore_extra_columns
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        state = TaskState.of(context)
        source = LoadSource.of(self)
        pieces = source.pieces()
        stored = state.get(_STATE_KEY)
        same_target = isinstance(stored, dict) and TableOptions.of(self).matches(self.hook, stored)
        # Appended pieces are in the table whatever became of their session: never resend.
        done: dict[str, int] = dict(stored.get("done") or {}) if same_target else {}
        ref = self._session(stored if same_target else None)
        session = self.hook.stream_upload_session(ref)
        arrow_schema = self.hook.arrow_schema(session)
        progress = TransferProgress(
            self.log,
            f"stream upload into {ref.target}",
            total_units=len(pieces),
            unit="pieces",
            interval=self.progress_interval,
        )
        for piece in pieces:
            key = piece.fingerprint()
            if key in done:
                progress.unit_done(done[key], 0)
                continue
            batches = source.read([piece], arrow_schema)
            rows = self.hook.write_stream(session, batches, compress=bool(self.compression))
            done[key] = rows
            state.set(
                _STATE_KEY,
                {
                    "table": ref.table,
                    "partition": ref.partition,
                    "session": ref.to_dict(),
                    "done": done,
                },
            )
            progress.unit_done(rows, 0)
            self.log.info("Appended %s: %d rows", piece.describe(), rows)
        progress.finish()
        total = sum(done[p.fingerprint()] for p in pieces)
        report_table_write(context, self, ref.table, ref.partition, ref.session_id, total)
        return {
            "table": ref.table,
            "partition": ref.partition,
            "session_id": ref.session_id,
            "rows": total,
            "pieces": len(pieces),
        }

    def _session(self, stored: Any) -> SessionRef:
        """The stream session of an earlier try while it still takes writes, else a new one."""
        if stored is not None:
            ref = SessionRef.of(stored["session"])
            if self.hook.session_status(ref) == "normal":
                self.log.info("Reattaching to stream session %s", ref.session_id)
                return ref
        ref, _ = self.hook.create_stream_upload_session(
            self.table,
            self.partition,
            create_partition=self.create_partition,
            compression=self.compression,
        )
        return ref
