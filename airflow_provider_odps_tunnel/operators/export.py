"""A table, partition or SQL result to Parquet, CSV or JSON lines files, in parallel row
ranges (mapped) or in one task (``OdpsExportOperator``); the file formats and their
compression are in ``export_formats``.

.. code-block:: python

    plan = OdpsPlanExportOperator(
        task_id="plan", table="sales", partition="ds={{ ds }}", destination="s3://bucket/out/{{ ds }}"
    )
    export = OdpsExportRangeOperator.partial(task_id="export").expand_kwargs(plan.output)

The plan opens one download session, a snapshot, so every range reads the same data
however late it runs or retries. Each range writes one file under a temporary name and
moves it into place, so a file is either complete or absent; a retried range that finds
its file complete (recorded in the task state store) does not read it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.operators.assets import report_table_read
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.export_formats import BatchFileWriter, export_suffix
from airflow_provider_odps_tunnel.operators.ledger import TaskState
from airflow_provider_odps_tunnel.operators.lineage import (
    LineageDataset,
    record_input,
    record_output,
)
from airflow_provider_odps_tunnel.operators.planning import max_map_length, plan_row_ranges
from airflow_provider_odps_tunnel.operators.progress import TransferProgress
from airflow_provider_odps_tunnel.operators.table_options import TableMixin
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors

__all__ = ["OdpsPlanExportOperator", "OdpsExportRangeOperator", "OdpsExportOperator"]

_RANGE_KEY = "exported"


class OdpsPlanExportOperator(TableMixin, OdpsBaseOperator):
    """Open a download session on a table, partition or SQL result and plan the files.

    Returns the keyword arguments of the range tasks, one dict per file:
    ``{"session", "start", "count", "path"}``, for
    ``OdpsExportRangeOperator.partial(...).expand_kwargs(plan.output)``. A source with no
    rows still gets one (empty) file, so the export always leaves a readable dataset.
    The table options are described in ``TableOptions`` (``operators.table_options``).

    :param table: the table to export (templated); leave empty with ``instance_id``.
    :param partition: the partition to export, e.g. ``"ds=2024-01-01"`` (templated).
    :param instance_id: export the result of this SQL instance instead (templated).
    :param destination: the directory to write into, as an ``ObjectStoragePath`` URI
        (templated).
    :param destination_conn_id: the Airflow connection of the destination's filesystem
        (templated).
    :param rows_per_file: target rows per file (and per range task) (templated).
    :param max_files: the most files (range tasks); never more than Airflow's
        ``[core] max_map_length`` (templated).
    :param sql: export the result of this SQL query instead, run to completion first
        (templated).
    :param file_format: ``parquet`` (default), ``csv`` (with a header row) or ``jsonl``.
    :param file_compression: the Parquet codec (``snappy`` by default, ``zstd``, ``gzip``
        ...), or for CSV and JSON lines the whole-file compression: ``"gzip"``, ``"bz2"`` or
        ``"zstd"`` (files end ``.gz``, ``.bz2``, ``.zst``); None writes them plain.
    :param file_prefix: file names are ``{file_prefix}-{n:05d}`` and the format's suffix,
        e.g. ``part-00000.csv.gz`` (templated).
    :param clear_destination: delete existing ``{file_prefix}-*`` files of the format in
        the destination first, so a smaller re-export leaves no stale files.
    :param compression: compress the tunnel download (``"zlib"``, ``"zstd"``, ``"lz4"``...).
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        *TableMixin.templated_options,
        "instance_id",
        "destination",
        "destination_conn_id",
        "file_prefix",
        "rows_per_file",
        "max_files",
        "sql",
    )

    def __init__(
        self,
        *,
        destination: str,
        table: str | None = None,
        partition: str | None = None,
        instance_id: str | None = None,
        destination_conn_id: str | None = None,
        rows_per_file: int = 1_000_000,
        max_files: int = 64,
        file_prefix: str = "part",
        clear_destination: bool = False,
        compression: str | None = None,
        sql: str | None = None,
        file_format: str = "parquet",
        file_compression: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(table=table, partition=partition, **kwargs)
        self.sql = sql
        self.file_format = file_format
        self.file_compression = file_compression
        self.instance_id = instance_id
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.rows_per_file = rows_per_file
        self.max_files = max_files
        self.file_prefix = file_prefix
        self.clear_destination = clear_destination
        self.compression = compression

    def execute(self, context: Any) -> list[dict[str, Any]]:
        if sum(bool(x) for x in (self.table, self.instance_id, self.sql)) != 1:
            raise AirflowFailException("give either a table or an instance_id (or sql) to export")
        suffix = export_suffix(self.file_format, self.file_compression)
        instance_id = self.instance_id
        if self.sql:
            instance = self.hook.run_sql(self.sql)
            instance.wait_for_success()
            instance_id = instance.id
        if self.table:
            ref, session = self.hook.create_download_session(
                self.table, self.partition, compression=self.compression
            )
            report_table_read(self, ref.table, ref.partition)
        else:
            ref, session = self.hook.create_instance_download_session(
                instance_id, compression=self.compression
            )
        directory = ObjectStoragePath(self.destination, conn_id=self.destination_conn_id)
        directory.mkdir(parents=True, exist_ok=True)
        record_output(self, LineageDataset(uri=self.destination))
        if self.clear_destination:
            for stale in directory.glob(f"{self.file_prefix}-*{suffix}"):
                stale.unlink()
        ranges = plan_row_ranges(
            int(session.count),
            rows_per_range=int(self.rows_per_file),
            max_ranges=min(int(self.max_files), max_map_length()),
        ) or [(0, 0)]
        self.log.info(
            "Exporting %d rows of %s into %d files in %s",
            session.count,
            ref.target,
            len(ranges),
            self.destination,
        )
        return [
            {
                "session": ref.to_dict(),
                "start": start,
                "count": count,
                "path": str(directory / f"{self.file_prefix}-{i:05d}{suffix}"),
                "file_format": self.file_format,
                "file_compression": self.file_compression,
            }
            for i, (start, count) in enumerate(ranges)
        ]


class _RangeExport(OdpsBaseOperator):
    """Writes one row range of a download session to one file: the step the range task
    runs once and the single-task export runs per range. The operator holds the file
    options (``destination_conn_id``, ``columns``, ``file_format``, ``file_compression``,
    ``progress_interval``)."""

    destination_conn_id: str | None
    columns: list[str] | None
    file_format: str
    file_compression: str | None
    progress_interval: float

    def export_range(
        self, context: Any, state_key: str, ref: SessionRef, start: int, count: int, path: str
    ) -> dict[str, Any]:
        """Write rows ``start .. start+count-1`` to ``path``, unless the task state store
        under ``state_key`` says an earlier try wrote that file completely."""
        if ref.table:
            record_input(self, LineageDataset(table=ref.table, partition=ref.partition))
        state = TaskState.of(context)
        target = ObjectStoragePath(path, conn_id=self.destination_conn_id)
        mine = {"session_id": ref.session_id, "path": path, "start": start, "count": count}
        record = state.get(state_key)
        if (
            isinstance(record, dict)
            and all(record.get(k) == v for k, v in mine.items())
            and target.exists()
            and target.stat().st_size == record.get("bytes")
        ):
            self.log.info("%s was written completely by an earlier try", path)
            record_output(
                self, LineageDataset(uri=path, rows=record["rows"], nbytes=record["bytes"])
            )
            return {"path": path, "rows": record["rows"], "bytes": record["bytes"], "skipped": True}
        try:
            session = self.hook.download_session(ref)
        except (tunnel_errors.NoSuchDownload, tunnel_errors.SessionStateError) as exc:
            raise AirflowFailException(
                f"download session {ref.session_id} is gone ({exc}); clear the plan task to "
                "export from a new snapshot"
            ) from exc
        rows = self._write(session, ref, start, count, target)
        nbytes = int(target.stat().st_size)
        state.set(state_key, {**mine, "rows": rows, "bytes": nbytes})
        record_output(self, LineageDataset(uri=path, rows=rows, nbytes=nbytes))
        return {"path": path, "rows": rows, "bytes": nbytes, "skipped": False}

    def _write(
        self, session: Any, ref: SessionRef, start: int, count: int, target: ObjectStoragePath
    ) -> int:
        import pyarrow as pa

        progress = TransferProgress(
            self.log,
            f"export of {ref.target} rows {start}..{start + count - 1}",
            total_rows=count,
            interval=self.progress_interval,
        )
        temporary = target.parent / f".{target.name}.tmp"
        rows = 0
        with temporary.open("wb") as fh:
            writer: BatchFileWriter | None = None
            try:
                for batch in self.hook.read_range(
                    session, start, count, columns=self.columns, compress=bool(ref.compression)
                ):
                    if writer is None:
                        writer = BatchFileWriter(
                            fh, batch.schema, self.file_format, self.file_compression
                        )
                    writer.write(batch)
                    rows += batch.num_rows
                    progress.add(batch.num_rows, batch.nbytes)
                if writer is None:  # an empty range: a valid file with the table's columns
                    schema = self.hook.arrow_schema(session)
                    if self.columns:
                        wanted = {c.lower() for c in self.columns}
                        schema = pa.schema([f for f in schema if f.name.lower() in wanted])
                    writer = BatchFileWriter(fh, schema, self.file_format, self.file_compression)
            finally:
                if writer is not None:
                    writer.close()
        if rows != count:
            temporary.unlink()
            raise RuntimeError(f"read {rows} rows of the range, expected {count}")
        temporary.move(target)
        progress.finish()
        return rows


class OdpsExportRangeOperator(_RangeExport):
    """Write one row range of a download session to one Parquet file (map it over the plan).

    The file is written under a temporary name and moved into place when complete, so
    readers never see a partial file and a rewrite replaces it whole. Returns ``{"path",
    "rows", "bytes", "skipped"}``.

    :param session: the download session reference (templated; from the plan).
    :param start: the first row of the range.
    :param count: the number of rows.
    :param path: the file to write, as an ``ObjectStoragePath`` URI (templated).
    :param destination_conn_id: the Airflow connection of the destination's filesystem
        (templated).
    :param columns: only these columns (default: all data columns).
    :param file_format: ``parquet`` (default), ``csv`` or ``jsonl`` (from the plan).
    :param file_compression: the Parquet codec, or the whole-file compression of CSV and
        JSON lines (``"gzip"``, ``"bz2"``, ``"zstd"``) (from the plan).
    :param parquet_compression: the Parquet codec (``"snappy"``, ``"zstd"``, ``"gzip"``,
        ``"none"``) when ``file_compression`` is not given.
    :param progress_interval: seconds between progress lines in the log.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = (
        *OdpsBaseOperator.template_fields,
        "session",
        "path",
        "destination_conn_id",
    )

    def __init__(
        self,
        *,
        session: dict[str, Any] | Any,
        start: int,
        count: int,
        path: str,
        destination_conn_id: str | None = None,
        columns: list[str] | None = None,
        file_format: str = "parquet",
        file_compression: str | None = None,
        parquet_compression: str = "snappy",
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.start = start
        self.count = count
        self.path = path
        self.destination_conn_id = destination_conn_id
        self.columns = columns
        self.file_format = file_format
        self.parquet_compression = parquet_compression
        if file_compression is None and file_format == "parquet":
            file_compression = parquet_compression
        self.file_compression = file_compression
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        return self.export_range(
            context, _RANGE_KEY, SessionRef.of(self.session), self.start, self.count, self.path
        )


class OdpsExportOperator(_RangeExport, OdpsPlanExportOperator):
    """Export a table, partition or SQL result to files in one task: plan, then write
    every range, one after the other.

    For exports small enough for one worker; the mapped form
    (``OdpsPlanExportOperator`` + ``OdpsExportRangeOperator``) writes the ranges in parallel
    tasks. Each try opens a new download session (a new snapshot) and writes every file
    again, under temporary names moved into place, so a retry or a clear leaves complete
    files of one snapshot. Returns ``{"files": [{"path", "rows", "bytes"}, ...], "rows",
    "bytes"}``.

    :param destination: the directory to write into, as an ``ObjectStoragePath`` URI
        (templated).
    :param table: the table to export (templated); leave empty with ``instance_id`` or
        ``sql``.
    :param partition: the partition to export, e.g. ``"ds=2024-01-01"`` (templated).
    :param instance_id: export the result of this SQL instance instead (templated).
    :param sql: export the result of this SQL query instead, run first (templated).
    :param destination_conn_id: the Airflow connection of the destination's filesystem
        (templated).
    :param file_format: ``parquet`` (default), ``csv`` (with a header row) or ``jsonl``.
    :param file_compression: the Parquet codec, or for CSV and JSON lines ``"gzip"``,
        ``"bz2"`` or ``"zstd"`` (files end ``.gz``, ``.bz2``, ``.zst``).
    :param rows_per_file: target rows per file (templated).
    :param max_files: the most files (templated).
    :param file_prefix: file names are ``{file_prefix}-{n:05d}`` and the format's suffix
        (templated).
    :param clear_destination: delete existing ``{file_prefix}-*`` files of the format first.
    :param compression: compress the tunnel download (``"zlib"``, ``"zstd"``, ``"lz4"``...).
    :param columns: only these columns (default: all data columns).
    :param progress_interval: seconds between progress lines in the log.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    """

    def __init__(
        self,
        *,
        destination: str,
        table: str | None = None,
        partition: str | None = None,
        instance_id: str | None = None,
        sql: str | None = None,
        destination_conn_id: str | None = None,
        file_format: str = "parquet",
        file_compression: str | None = None,
        rows_per_file: int = 1_000_000,
        max_files: int = 64,
        file_prefix: str = "part",
        clear_destination: bool = False,
        compression: str | None = None,
        columns: list[str] | None = None,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            destination=destination,
            table=table,
            partition=partition,
            instance_id=instance_id,
            sql=sql,
            destination_conn_id=destination_conn_id,
            file_format=file_format,
            file_compression=file_compression,
            rows_per_file=rows_per_file,
            max_files=max_files,
            file_prefix=file_prefix,
            clear_destination=clear_destination,
            compression=compression,
            **kwargs,
        )
        self.columns = columns
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        plan = OdpsPlanExportOperator.execute(self, context)
        files = []
        for i, item in enumerate(plan):
            written = self.export_range(
                context,
                f"{_RANGE_KEY}/{i}",
                SessionRef.of(item["session"]),
                item["start"],
                item["count"],
                item["path"],
            )
            files.append({k: written[k] for k in ("path", "rows", "bytes")})
        return {
            "files": files,
            "rows": sum(f["rows"] for f in files),
            "bytes": sum(f["bytes"] for f in files),
        }
