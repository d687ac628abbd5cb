"""Download sessions against the emulator: records, Arrow, columns, ranges, compression."""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import CompressOption, errors
from airflow_provider_odps_tunnel.tunnel.progress import ProgressEvent
from airflow_provider_odps_tunnel.tunnel.sessions.table_download import BufferedRecordReader

SCHEMA = "id bigint, name string, score double, flag boolean, ts datetime, amount decimal(18,4)"
ALGOS = ["zlib", "snappy", "zstd", "lz4"]


def rows(n: int, start: int = 0) -> list[list]:
    base = datetime.datetime(2024, 1, 1, 12, 0, 0)
    return [
        [
            i,
            f"name-{i:016d}",
            i * 0.5,
            i % 3 == 0,
            base + datetime.timedelta(seconds=i),
            decimal.Decimal(i) / 4,
        ]
        for i in range(start, start + n)
    ]


def load(tunnel, table: str, data: list[list], partition: str | None = None) -> None:
    session = tunnel.create_upload_session(table, partition_spec=partition, create_partition=True)
    with session.open_record_writer(0) as writer:
        for row in data:
            writer.write(row)
    session.commit([0])


@pytest.fixture
def filled(tunnel, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string, region string")
    data = rows(500)
    load(tunnel, table, data, "pt=20240101,region=eu")
    return table, data


def test_record_reader_reads_everything_with_partitions(tunnel, filled):
    table, data = filled
    session = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    assert session.count == 500 and session.status == session.Status.Normal
    with session.open_record_reader(0, session.count) as reader:
        got = [r.values for r in reader]
    assert got == [row + ["20240101", "eu"] for row in data]
    with session.open_record_reader(0, 10, append_partitions=False) as reader:
        assert [r.values for r in reader] == data[:10]


def test_columns_subset_ranges_and_tuples(tunnel, filled):
    table, data = filled
    session = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    with session.open_record_reader(100, 50, columns=["score", "region", "id"]) as reader:
        got = list(reader.iter_tuples())
    assert got == [(r[2], "eu", r[0]) for r in data[100:150]]
    with session.open_record_reader(490, 100) as reader:  # clamped to the snapshot
        assert [r["id"] for r in reader] == list(range(490, 500))


def test_arrow_reader_columns_ranges_and_partitions(tunnel, filled):
    table, data = filled
    session = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    with session.open_arrow_reader(10, 20, columns=["amount", "id"]) as reader:
        got = reader.read()
    assert got.column_names == ["amount", "id"]
    assert got.column("id").to_pylist() == list(range(10, 30))
    assert got.column("amount").to_pylist() == [r[5] for r in data[10:30]]
    with session.open_arrow_reader(0, 5, append_partitions=True) as reader:
        got = reader.read()
    assert got.column("pt").to_pylist() == ["20240101"] * 5
    assert got.column("name").to_pylist() == [r[1] for r in data[:5]]


@pytest.mark.parametrize("algo", ALGOS)
def test_each_compression(tunnel, filled, algo):
    table, data = filled
    session = tunnel.create_download_session(
        table, partition_spec="pt=20240101,region=eu", compress_algo=algo
    )
    with session.open_record_reader(0, session.count, compress=True) as reader:
        assert [r.values[:6] for r in reader] == data
    with session.open_arrow_reader(0, session.count, compress=True) as reader:
        assert reader.read().column("id").to_pylist() == list(range(500))


def test_reattach_by_id_and_buffered_reader(tunnel, filled):
    table, data = filled
    first = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    again = tunnel.create_download_session(
        table, partition_spec="pt=20240101,region=eu", download_id=first.id
    )
    assert again.id == first.id and again.count == 500 and again.schema == first.schema
    reader = again.open_record_reader(0, 500, buffered=True, row_batch_size=64)
    assert isinstance(reader, BufferedRecordReader)
    assert [r["id"] for r in reader] == list(range(500))
    assert reader.count == 500
    tuples = again.open_record_reader(10, 200, buffered=True, row_batch_size=64).iter_tuples()
    assert [t[0] for t in tuples] == list(range(10, 210))
    frame = again.open_record_reader(0, 100, buffered=True, row_batch_size=30).to_pandas()
    assert list(frame["id"]) == list(range(100)) and list(frame["pt"]) == ["20240101"] * 100


def test_progress_callback(tunnel, filled):
    table, _ = filled
    session = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    events: list[ProgressEvent] = []
    with session.open_record_reader(0, session.count) as reader:
        reader.progress.callback = events.append
        list(reader)
        reader.read()
    assert events and events[-1].done and events[-1].rows == 500 and events[-1].bytes > 0


def test_pandas_and_arrow_helpers(tunnel, filled):
    table, data = filled
    session = tunnel.create_download_session(table, partition_spec="pt=20240101,region=eu")
    frame = session.open_arrow_reader(0, 20).to_pandas()
    assert list(frame["id"]) == list(range(20))
    table_read = session.open_record_reader(0, 20).read_arrow()
    assert isinstance(table_read, pa.Table) and table_read.num_rows == 20


def test_missing_table_and_partition_are_mapped(tunnel, emulator_table):
    with pytest.raises(errors.NoSuchTable) as info:
        tunnel.create_download_session("no_such_table_here")
    assert info.value.table.endswith("no_such_table_here") and info.value.request_id
    table = emulator_table("a bigint", partitions="pt string")
    with pytest.raises(errors.NoSuchPartition) as info:
        tunnel.create_download_session(table, partition_spec="pt=missing")
    assert info.value.partition == "pt=missing"


def test_bad_session_id_is_mapped(tunnel, emulator_table):
    table = emulator_table("a bigint")
    with pytest.raises(errors.NoSuchObject):
        tunnel.create_download_session(table, download_id="nonexistent")


def test_compress_option_object(tunnel, filled):
    table, data = filled
    option = CompressOption(CompressOption.CompressAlgorithm.ODPS_ZSTD, level=3)
    session = tunnel.create_download_session(
        table, partition_spec="pt=20240101,region=eu", compress_option=option
    )
    with session.open_record_reader(0, 3, compress=True) as reader:
        assert [r["id"] for r in reader] == [0, 1, 2]
