"""A table, partition or SQL result to Parquet files, in parallel row ranges.

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
from airflow_provider_odps_tunnel.operators.assets import report_table_lineage
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.ledger import TaskState
from airflow_provider_odps_tunnel.operators.planning import max_map_length, plan_row_ranges
from airflow_provider_odps_tunnel.operators.progress import TransferProgress
from airflow_provider_odps_tunnel.operators.table_options import TableMixin
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors

__all__ = ["OdpsPlanExportOperator", "OdpsExportRangeOperator"]

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
    :param file_prefix: file names are ``{file_prefix}-{n:05d}.parquet`` (templated).
    :param clear_destination: delete existing ``{file_prefix}-*.parquet`` files in the
        destination first, so a smaller re-export leaves no stale files.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(table=table, partition=partition, **kwargs)
        self.instance_id = instance_id
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.rows_per_file = rows_per_file
        self.max_files = max_files
        self.file_prefix = file_prefix
        self.clear_destination = clear_destination
        self.compression = compression

    def execute(self, context: Any) -> list[dict[str, Any]]:
        if bool(self.table) == bool(self.instance_id):
            raise AirflowFailException("give either a table or an instance_id to export")
        if self.table:
            ref, session = self.hook.create_download_session(
                self.table, self.partition, compression=self.compression
            )
            report_table_lineage(self.hook, ref.table, output=False)
        else:
            ref, session = self.hook.create_instance_download_session(
                self.instance_id, compression=self.compression
            )
        directory = ObjectStoragePath(self.destination, conn_id=self.destination_conn_id)
        directory.mkdir(parents=True, exist_ok=True)
        if self.clear_destination:
            for stale in directory.glob(f"{self.file_prefix}-*.parquet"):
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
                "path": str(directory / f"{self.file_prefix}-{i:05d}.parquet"),
            }
            for i, (start, count) in enumerate(ranges)
        ]


class OdpsExportRangeOperator(OdpsBaseOperator):
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
    :param parquet_compression: the Parquet codec (``"snappy"``, ``"zstd"``, ``"gzip"``,
        ``"none"``).
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
        self.parquet_compression = parquet_compression
        self.progress_interval = progress_interval

    def execute(self, context: Any) -> dict[str, Any]:
        ref = SessionRef.of(self.session)
        state = TaskState.of(context)
        target = ObjectStoragePath(self.path, conn_id=self.destination_conn_id)
        mine = {
            "session_id": ref.session_id,
            "path": self.path,
            "start": self.start,
            "count": self.count,
        }
        record = state.get(_RANGE_KEY)
        if (
            isinstance(record, dict)
            and all(record.get(k) == v for k, v in mine.items())
            and target.exists()
            and target.stat().st_size == record.get("bytes")
        ):
            self.log.info("%s was written completely by an earlier try", self.path)
            return {
                "path": self.path,
                "rows": record["rows"],
                "bytes": record["bytes"],
                "skipped": True,
            }
        try:
            session = self.hook.download_session(ref)
        except (tunnel_errors.NoSuchDownload, tunnel_errors.SessionStateError) as exc:
            raise AirflowFailException(
                f"download session {ref.session_id} is gone ({exc}); clear the plan task to "
                "export from a new snapshot"
            ) from exc
        rows = self._write(session, ref, target)
        nbytes = int(target.stat().st_size)
        state.set(_RANGE_KEY, {**mine, "rows": rows, "bytes": nbytes})
        return {"path": self.path, "rows": rows, "bytes": nbytes, "skipped": False}

    def _write(self, session: Any, ref: SessionRef, target: ObjectStoragePath) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        progress = TransferProgress(
            self.log,
            f"export of {ref.target} rows {self.start}..{self.start + self.count - 1}",
            total_rows=self.count,
            interval=self.progress_interval,
        )
        temporary = target.parent / f".{target.name}.tmp"
        rows = 0
        with temporary.open("wb") as fh:
            writer: pq.ParquetWriter | None = None
            try:
                for batch in self.hook.read_range(
                    session,
                    self.start,
                    self.count,
                    columns=self.columns,
                    compress=bool(ref.compression),
                ):
                    if writer is None:
                        writer = pq.ParquetWriter(
                            fh, batch.schema, compression=self.parquet_compression
                        )
                    writer.write_batch(batch)
                    rows += batch.num_rows
                    progress.add(batch.num_rows, batch.nbytes)
                if writer is None:  # an empty range: a valid file with the table's columns
                    schema = self.hook.arrow_schema(session)
                    if self.columns:
                        wanted = {c.lower() for c in self.columns}
                        schema = pa.schema([f for f in schema if f.name.lower() in wanted])
                    writer = pq.ParquetWriter(fh, schema, compression=self.parquet_compression)
            finally:
                if writer is not None:
                    writer.close()
        if rows != self.count:
            temporary.unlink()
            raise RuntimeError(f"read {rows} rows of the range, expected {self.count}")
        temporary.move(target)
        progress.finish()
        return rows
