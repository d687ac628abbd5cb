"""Source files and tables the provider tests and DAG runs load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_odps_tunnel.tunnel import TableSchema
from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns

SALES_COLUMNS = "id bigint, item string, amount double"


def sales_rows(start: int, count: int) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "item": [f"item-{i % 7}" for i in ids],
            "amount": [round(i * 1.25, 2) for i in ids],
        }
    )


def write_sales_files(directory: Path, files: int, rows_per_file: int) -> int:
    """Parquet files of sales rows with ids 0..files*rows_per_file-1; returns the row count."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        pq.write_table(
            sales_rows(i * rows_per_file, rows_per_file), directory / f"sales-{i:03d}.parquet"
        )
    return files * rows_per_file


def create_table(emu: Any, name: str, columns: str, partitions: str = "", **kwargs: Any) -> str:
    schema = TableSchema(parse_columns(columns), parse_columns(partitions))
    emu.catalog.create_table(emu.project, name, schema, if_not_exists=True, **kwargs)
    return name


def read_table(emu: Any, name: str, partition: str | None = None) -> pa.Table:
    return emu.catalog.read_table(emu.project, name, partition)


def load_rows(emu: Any, table: str, partition: str | None, data: pa.Table) -> None:
    """Commit ``data`` into the table (or partition, created if missing) with our client."""
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel

    odps = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    session = TableTunnel(odps).create_upload_session(
        table, partition_spec=partition, create_partition=True
    )
    with session.open_arrow_writer(0) as writer:
        writer.write(data)
    session.commit([0])
