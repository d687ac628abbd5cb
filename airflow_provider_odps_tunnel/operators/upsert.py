"""Rows into a primary-key table through an upsert session, resumable across retries.

The source is read piece by piece (files in name order, or parts of a callable). After each
piece is flushed to the service the task state store records how many pieces are done, so
a retry reattaches to the same session and continues after the last recorded piece. A
piece interrupted mid-way is sent again, which is harmless: an upsert replaces by primary
key and a delete of a deleted key changes nothing. The commit is polled up to
``commit_timeout``; a retry after a commit that went through sees the session committed
and returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

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
    SourcePiece,
)
from airflow_provider_odps_tunnel.operators.table_options import (
    TableMixin,
    TableOptions,
    UpsertSessionMixin,
)

__all__ = ["OdpsUpsertOperator"]

_STATE_KEY = "upsert"


def _fingerprint(pieces: Sequence[SourcePiece]) -> str:
    text = json.dumps([p.to_dict() for p in pieces], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class OdpsUpsertOperator(LoadSourceMixin, TableMixin, UpsertSessionMixin, OdpsBaseOperator):
    """Upsert (and optionally delete) rows of a primary-key table from files or a callable.

    Returns ``{"table", "partition", "session_id", "upserted", "deleted"}``. The source
    options are described in ``LoadSource`` (``operators.sources``), the table options in
    ``TableOptions`` (``operators.table_options``).

    :param table: the primary-key (transactional) table (templated).
    :param partition: the partition, e.g. ``"ds=2024-01-01"`` (templated).
    :param source: a file, a directory (every file below it but hidden ones and markers like
        ``_SUCCESS``), a glob pattern, or a list of them, as ``ObjectStoragePath`` URIs
        (``s3://...``, ``file:///...``); each file is one piece, in name order (templated).
    :param source_conn_id: the Airflow connection of the source's filesystem (templated).
    :param source_format: ``parquet``, ``csv``, ``jsonl`` or ``arrow``; by default taken
        from each file's suffix (templated).
    :param source_callable: instead of files, a callable ``(part, parts)`` yielding Arrow
        batches or tables or DataFrames; it must give the same rows for a part every time,
        since a retry calls it again. Each part is a piece, and a retry continues after the
        last piece flushed.
    :param source_parts: the number of parts (pieces) the callable is called for (1 by
        default).
    :param ignore_extra_columns: drop source columns the table does not have instead of
        failing. The ``delete_column`` is kept.
    :param batch_rows: rows per batch read from files.
    :param source_compression: the stream compression of CSV and JSON lines files
        (``"gzip"``, ``"bz2"``, ``"zstd"`` or ``"none"``); by default taken from each file's
        suffix (``.gz``, ``.bz2``, ``.zst``).
    :param csv_options: how CSV files are read: a dict with any of ``delimiter``,
        ``quote_char``, ``escape_char``, ``null_values``, ``header``, ``column_names``,
        ``skip_rows``, ``encoding`` (see ``CsvOptions``).
    :param column_mapping: source column -> table column, where the names differ.
    :param delete_column: a boolean source column; rows where it is true are deleted by
        primary key instead of upserted (the column is not written).
    :param commit_timeout: seconds to wait for the commit to complete.
    :param slot_num: write slots of the session.
    :param lifecycle: hours (1..24) the session lives without a commit.
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
        *UpsertSessionMixin.templated_options,
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
        delete_column: str | None = None,
        commit_timeout: float = 120,
        slot_num: int = 1,
        lifecycle: int | None = None,
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
            compression=compression,
            **kwargs,
        )
        self.delete_column = delete_column
        self.commit_timeout = commit_timeout
        self.slot_num = slot_num
        self.lifecycle = lifecycle
        self.ignore_extra_columns = ignore_extra_columns
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        state = TaskState.of(context)
        source = LoadSource.of(self)
        pieces = source.pieces()
        progress_record, status = self._resume(state, _fingerprint(pieces), len(pieces))
        ref = SessionRef.of(progress_record["session"])
        if status in ("committed", "missing"):
            self.log.info("Upsert session %s was committed by an earlier try", ref.session_id)
            return self._finish(context, progress_record)
        session = self.hook.upsert_session(ref, commit_timeout=self.commit_timeout)
        done = int(progress_record["pieces_done"])
        if done:
            self.log.info("Resuming after %d of %d pieces done by earlier tries", done, len(pieces))
        if status == "normal":
            self._write(session, ref, source, pieces, done, progress_record, state)
        session.commit()
        progress_record["committed"] = True
        state.set(_STATE_KEY, progress_record)
        self.log.info(
            "Committed upsert into %s: %d rows upserted, %d deleted from %d pieces, session %s",
            ref.target,
            progress_record["upserted"],
            progress_record["deleted"],
            len(pieces),
            ref.session_id,
        )
        return self._finish(context, progress_record)

    def _resume(self, state: TaskState, fingerprint: str, total: int) -> tuple[dict[str, Any], str]:
        """The progress record to continue from, and its session's status: the earlier
        try's if its session is still usable (or committed) and it read the same source,
        else a new session's."""
        stored = state.get(_STATE_KEY)
        if isinstance(stored, dict) and stored.get("fingerprint") == fingerprint:
            ref = SessionRef.of(stored["session"])
            if TableOptions.of(self).matches(self.hook, ref):
                status = self.hook.session_status(ref)
                if status in ("normal", "committing"):
                    self.log.info("Reattaching to upsert session %s (%s)", ref.session_id, status)
                    return stored, status
                # "missing": the service forgets committed sessions; trust it only if this
                # task recorded the commit.
                committed = stored.get("committed") or (
                    status == "committed" and stored.get("pieces_done") == total
                )
                if status in ("committed", "missing") and committed:
                    return stored, status
                self.log.info(
                    "Upsert session %s of an earlier try is %s; starting over",
                    ref.session_id,
                    status,
                )
        ref, _ = self.hook.create_upsert_session(
            self.table,
            self.partition,
            slot_num=self.slot_num,
            commit_timeout=self.commit_timeout,
            lifecycle=self.lifecycle,
            compression=self.compression,
        )
        record = {
            "session": ref.to_dict(),
            "fingerprint": fingerprint,
            "pieces_done": 0,
            "upserted": 0,
            "deleted": 0,
        }
        state.set(_STATE_KEY, record)
        return record, "normal"

    def _write(
        self,
        session: Any,
        ref: SessionRef,
        source: LoadSource,
        pieces: Sequence[SourcePiece],
        done: int,
        record: dict[str, Any],
        state: TaskState,
    ) -> None:
        progress = TransferProgress(
            self.log,
            f"upsert into {ref.target}",
            total_units=len(pieces),
            unit="pieces",
            interval=self.progress_interval,
        )
        progress.units = done
        stream = session.open_upsert_stream(compress=bool(self.compression))
        arrow_schema = self.hook.arrow_schema(session)
        if self.delete_column and self.delete_column not in arrow_schema.names:
            # read (and keep) the delete flag with the table's columns
            arrow_schema = arrow_schema.append(pa.field(self.delete_column, pa.bool_()))
        for index in range(done, len(pieces)):
            upserted, deleted = self.hook.upsert_batches(
                stream,
                session.data_schema,
                source.read([pieces[index]], arrow_schema),
                delete_column=self.delete_column,
            )
            stream.flush()
            record.update(
                pieces_done=index + 1,
                upserted=record["upserted"] + upserted,
                deleted=record["deleted"] + deleted,
            )
            state.set(_STATE_KEY, record)
            progress.unit_done(upserted + deleted, 0)
        stream.close()  # the commit logs the summary line

    def _finish(self, context: Any, record: dict[str, Any]) -> dict[str, Any]:
        ref = SessionRef.of(record["session"])
        result = {
            "table": ref.table,
            "partition": ref.partition,
            "session_id": ref.session_id,
            "upserted": record["upserted"],
            "deleted": record["deleted"],
        }
        rows = record["upserted"] + record["deleted"]
        report_table_write(context, self, ref.table, ref.partition, ref.session_id, rows)
        return result
