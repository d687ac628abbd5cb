"""Parallel downloads, the entry object and table references."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    TableTunnel,
    download_to_files,
    iter_arrow_batches,
)
from airflow_provider_odps_tunnel.tunnel.parallel import split_ranges
from airflow_provider_odps_tunnel.tunnel.transport.resources import TableRef

from .test_table_download import SCHEMA, load, rows


@pytest.fixture
def big(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    load(tunnel, table, rows(3000))
    return tunnel.create_download_session(table)


def test_parallel_batches_come_in_order(big, faults):
    faults.add(method="GET", session_kind="download", kind="reset_after_bytes", bytes=20_000)
    events = []
    batches = list(iter_arrow_batches(big, n_workers=4, rows_per_range=250, progress=events.append))
    ids = pa.Table.from_batches(batches).column("id").to_pylist()
    assert ids == list(range(3000))
    assert events[-1].done and events[-1].rows == 3000
    assert len(faults.injected) == 1
    part = list(iter_arrow_batches(big, n_workers=2, start=100, count=50, columns=["id"]))
    assert pa.Table.from_batches(part).column("id").to_pylist() == list(range(100, 150))


@pytest.mark.parametrize("n_workers", [1, 2, 3])
def test_parallel_batches_hold_few_ranges(big, monkeypatch, n_workers):
    """Ranges come in order, and no more than max(n_workers, 2) of them are held at once:
    ranges asked for and not yet fully handed out, the one being consumed included."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_provider_odps_tunnel.tunnel import parallel

    submitted = [0]

    class CountingPool(ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            submitted[0] += 1
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(parallel, "ThreadPoolExecutor", CountingPool)
    ids, most = [], 0
    for batch in iter_arrow_batches(big, n_workers=n_workers, rows_per_range=300):
        done = len(ids) // 300  # ranges handed out whole before this batch: released
        most = max(most, submitted[0] - done)
        ids.extend(batch.column("id").to_pylist())
    assert ids == list(range(3000))
    assert most <= max(n_workers, 2)


@pytest.mark.parametrize("file_format", ["parquet", "arrow"])
def test_download_to_files(big, tmp_path, file_format):
    paths = download_to_files(
        big, tmp_path, n_workers=3, rows_per_range=700, file_format=file_format
    )
    assert len(paths) == 5
    if file_format == "parquet":
        tables = [pq.read_table(p) for p in paths]
    else:
        tables = [pa.ipc.open_file(p).read_all() for p in paths]
    assert pa.concat_tables(tables).column("id").to_pylist() == list(range(3000))


def test_split_ranges():
    assert split_ranges(10, 25, 10) == [(10, 10), (20, 10), (30, 5)]
    assert split_ranges(0, 0, 10) == []
    with pytest.raises(ValueError):
        split_ranges(0, 5, 0)


def test_table_refs_and_schema_paths():
    assert TableRef.of("t", "p").resource() == "/projects/p/tables/t"
    assert TableRef.of("q.t", "p").resource() == "/projects/q/tables/t"
    assert TableRef.of("q.s.t", "p").resource() == "/projects/q/schemas/s/tables/t"
    assert TableRef.of("t", "p", "s").preview_resource() == "/projects/p/schemas/s/tables/t/preview"
    assert (
        TableRef.of("t", "p").preview_resource() == "/projects/p/schemas/default/tables/t/preview"
    )
    assert TableRef.of("a b", "p").resource() == "/projects/p/tables/a%20b"

    class Table:
        name = "t2"
        project = type("P", (), {"name": "other"})()
        schema_name = None

    assert TableRef.of(Table(), "p") == TableRef("other", "t2", None)
    with pytest.raises(TypeError):
        TableRef.of(42, "p")


def test_entry_with_explicit_tunnel_endpoint(emulator, emulator_table):
    table = emulator_table("a bigint")
    entry = ODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )
    tunnel = TableTunnel(entry, quota_name=None)
    assert tunnel.endpoint == emulator.tunnel_endpoint.rstrip("/")
    session = tunnel.create_upload_session(table, tags=["a", "b"])
    session.commit([])
    with pytest.raises(ValueError):
        ODPS("a", "b", "p")
    with pytest.raises(TypeError):
        TableTunnel()
    entry.close()
