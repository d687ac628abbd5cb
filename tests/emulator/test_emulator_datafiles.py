"""Data files: the Arrow IPC files written now, and the Parquet files of earlier versions.

A data directory written by an earlier version holds ``.parquet`` data files; every path
that reads data (downloads, SQL, schema changes, upsert merges, garbage collection) must
still take them, next to the ``.arrow`` files written now.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_odps_tunnel.emulator import datafiles
from airflow_provider_odps_tunnel.emulator.catalog import DataFile

SCHEMA = pa.schema([("a", pa.int64()), ("s", pa.string())])


def _table(start: int, rows: int) -> pa.Table:
    return pa.table(
        {"a": range(start, start + rows), "s": [f"v{i}" for i in range(start, start + rows)]},
        schema=SCHEMA,
    )


def _written(tmp_path, batches: list[pa.RecordBatch]) -> tuple[pa.Table, object]:
    path = tmp_path / f"f{datafiles.SUFFIX}"
    writer = datafiles.DataFileWriter(path, SCHEMA)
    for batch in batches:
        writer.write(batch)
    writer.close()
    assert writer.rows == sum(b.num_rows for b in batches)
    with pa.OSFile(str(path)) as source:
        stored = pa.ipc.open_file(source)
        sizes = [stored.get_batch(i).num_rows for i in range(stored.num_record_batches)]
    return datafiles.read_table(path), sizes


def test_small_batches_are_gathered_and_large_ones_split(tmp_path):
    ones = _table(0, 40_000).to_batches(max_chunksize=1)
    data, sizes = _written(tmp_path, ones)
    assert data.equals(_table(0, 40_000))
    assert sizes[:-1] == [datafiles.COALESCE_ROWS] * 2 + [40_000 - 2 * datafiles.COALESCE_ROWS]
    assert sizes[-1] == 0  # the closing batch that carries the row index

    big = _table(0, 3 * datafiles.MAX_BATCH_ROWS + 5).combine_chunks().to_batches()
    data, sizes = _written(tmp_path, big)
    assert data.num_rows == 3 * datafiles.MAX_BATCH_ROWS + 5
    assert max(sizes) == datafiles.MAX_BATCH_ROWS


@pytest.mark.parametrize(("skip", "count"), [(0, 10**9), (0, 1), (16_383, 2), (20_000, 30_000)])
def test_a_row_range_reads_exactly_those_rows(tmp_path, skip, count):
    pieces = [_table(0, 30_000), _table(30_000, 5), _table(30_005, 40_000)]
    path = tmp_path / f"r{datafiles.SUFFIX}"
    writer = datafiles.DataFileWriter(path, SCHEMA)
    for piece in pieces:
        writer.write_table(piece)
    writer.close()
    whole = pa.concat_tables(pieces)
    got = pa.Table.from_batches(list(datafiles.read_range(path, skip, count, ["s", "a"])))
    assert got.equals(whole.select(["s", "a"]).slice(skip, count))


# -- a data directory of an earlier version ---------------------------------------------------


def _legacy_file(emulator, table: str, data: pa.Table, spec: str | None = None) -> str:
    """Commit ``data`` as a Parquet file, written as earlier versions wrote them."""
    catalog = emulator.catalog
    info = catalog.get_table(emulator.project, table)
    name = f"{uuid.uuid4().hex}.parquet"
    pq.write_table(
        data.cast(info.arrow_schema()),
        info.data_dir / name,
        compression="lz4",
        use_dictionary=False,
        row_group_size=100,
    )
    catalog.append(info, catalog.normalize_spec(info, spec), [DataFile(name, data.num_rows)], None)
    return name


def test_parquet_files_of_earlier_versions_are_still_served(
    emulator, emulator_table, tunnel, odps_entry
):
    table = emulator_table("a bigint, s string")
    _legacy_file(emulator, table, _table(0, 250))
    session = tunnel.create_download_session(table)
    with session.open_record_reader(95, 10) as reader:
        assert [r.values[0] for r in reader] == list(range(95, 105))

    upload = tunnel.create_upload_session(table)
    with upload.open_arrow_writer(0) as writer:
        writer.write(_table(250, 50))
    upload.commit([0])
    session = tunnel.create_download_session(table)
    assert session.count == 300
    with session.open_arrow_reader(240, 20, columns=["s"]) as reader:
        assert reader.read().column("s").to_pylist() == [f"v{i}" for i in range(240, 260)]

    with odps_entry.execute_sql(f"SELECT count(*), sum(a) FROM {table}").open_reader() as rows:
        assert [list(r.values) for r in rows] == [[300, sum(range(300))]]


def test_schema_changes_and_overwrites_of_parquet_files(emulator, emulator_table, odps_entry):
    table = emulator_table("a bigint, s string")
    legacy = _legacy_file(emulator, table, _table(0, 10))
    odps_entry.execute_sql(f"ALTER TABLE {table} ADD COLUMNS (x double)")
    data = emulator.catalog.read_table(emulator.project, table)
    assert data.column("a").to_pylist() == list(range(10))
    assert data.column("x").null_count == 10
    info = emulator.catalog.get_table(emulator.project, table)
    names = {p.name for p in info.data_dir.iterdir()}
    assert legacy not in names and all(n.endswith(datafiles.SUFFIX) for n in names)

    second = _legacy_file(emulator, table, _table(10, 5).append_column("x", pa.nulls(5)))
    odps_entry.execute_sql(f"INSERT OVERWRITE TABLE {table} SELECT a, s, 1.5 FROM {table}")
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 15
    emulator.catalog.collect_garbage(emulator.project, table)  # (the statement pinned it)
    assert not (info.data_dir / second).exists()


def test_upsert_merges_into_a_parquet_file(emulator, emulator_table, tunnel):
    table = emulator_table("k bigint, v string", primary_key=["k"], buckets=2)
    base = pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    _legacy_file(emulator, table, base)
    session = tunnel.create_upsert_session(table)
    stream = session.open_upsert_stream()
    stream.upsert(session.new_record([2, "B"]))
    stream.delete(session.new_record([3, None]))
    stream.close()
    session.commit()
    rows = emulator.catalog.read_table(emulator.project, table).to_pylist()
    assert sorted((r["k"], r["v"]) for r in rows) == [(1, "a"), (2, "B")]


def test_a_growing_file_has_its_write_back_started_as_it_grows(tmp_path, monkeypatch):
    """After a stored batch once WRITEBACK_BYTES more are written, on the file's own
    descriptor; the file is the same."""
    started: list[int] = []
    monkeypatch.setattr(datafiles, "start_writeback", started.append)
    batches = [_table(i * 4096, 4096).to_batches()[0] for i in range(16)]
    monkeypatch.setattr(datafiles, "WRITEBACK_BYTES", 10**9)
    _written(tmp_path, batches)
    assert started == []  # a file smaller than WRITEBACK_BYTES
    monkeypatch.setattr(datafiles, "WRITEBACK_BYTES", 64 * 1024)  # below a stored batch
    stored, sizes = _written(tmp_path, batches)
    assert stored.equals(pa.concat_tables(pa.Table.from_batches([b]) for b in batches))
    assert len(started) == len([n for n in sizes if n]) == 4  # 16,384 rows per stored batch
    assert len(set(started)) == 1  # one descriptor: the file being written


def test_start_writeback_is_the_kernels(tmp_path):
    """The suite runs on Linux, where the C library has sync_file_range."""
    from airflow_provider_odps_tunnel.emulator import fsutil

    assert fsutil._SYNC_FILE_RANGE is not None
    with open(tmp_path / "f", "wb") as fh:
        fh.write(b"x" * 100_000)
        fsutil.start_writeback(fh.fileno())  # returns at once; fsync still persists
        fh.flush()
    assert (tmp_path / "f").read_bytes() == b"x" * 100_000
