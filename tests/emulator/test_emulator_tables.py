"""Block upload and download sessions, driven by pyodps against the emulator."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
import requests

SCHEMA = "a bigint, b double, c string, d boolean, e datetime, f decimal(18,4)"


def make_rows(n: int, offset: int = 0) -> list[list]:
    rows = [
        [
            i,
            i * 0.25,
            f"value-{i:06d}",
            i % 3 == 0,
            dt.datetime(2024, 1, 1, 8, 30) + dt.timedelta(seconds=i, milliseconds=i % 1000),
            Decimal(f"{i}.{i % 10000:04d}"),
        ]
        for i in range(offset, offset + n)
    ]
    if n:
        rows[-1] = [rows[-1][0], None, None, None, None, None]
    return rows


def write_block(session, block_id: int, rows: list[list]) -> None:
    with session.open_record_writer(block_id) as writer:
        for row in rows:
            writer.write(session.new_record(row))


def read_records(tunnel, table, start=0, count=None, partition_spec=None, **reader_kw):
    session = tunnel.create_download_session(table, partition_spec=partition_spec)
    count = session.count - start if count is None else count
    with session.open_record_reader(start, count, **reader_kw) as reader:
        return [list(r.values) for r in reader]


def test_record_writer_explicit_blocks(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    rows = make_rows(120)
    session = tunnel.create_upload_session(table)
    write_block(session, 7, rows[60:])
    write_block(session, 3, rows[:60])
    assert sorted(session.get_block_list()) == [3, 7]
    session.commit([3, 7])
    assert read_records(tunnel, table) == rows


def test_buffered_record_writer_many_blocks(tunnel, emulator_table, emulator):
    table = emulator_table(SCHEMA)
    rows = make_rows(3000)
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(buffer_size=4096) as writer:
        for row in rows:
            writer.write(session.new_record(row))
    blocks = writer.get_blocks_written()
    assert len(blocks) > 5
    session.commit(blocks)
    assert read_records(tunnel, table) == rows
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 3000


def _arrow_batch(n: int, offset: int = 0) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "a": pa.array(range(offset, offset + n), pa.int64()),
            "b": pa.array([i * 0.5 for i in range(n)], pa.float64()),
            "c": pa.array([f"s{i}" if i % 7 else None for i in range(n)], pa.string()),
            "d": pa.array([i % 2 == 0 for i in range(n)], pa.bool_()),
            "e": pa.array(
                [dt.datetime(2023, 5, 1) + dt.timedelta(minutes=i) for i in range(n)],
                pa.timestamp("ms"),
            ),
            "f": pa.array([Decimal(f"{i}.5") for i in range(n)], pa.decimal128(18, 4)),
        }
    )


@pytest.mark.parametrize("buffered", [False, True])
def test_arrow_writer_and_readers(tunnel, emulator_table, buffered):
    table = emulator_table(SCHEMA)
    batches = [_arrow_batch(500, 0), _arrow_batch(700, 500)]
    session = tunnel.create_upload_session(table)
    if buffered:
        with session.open_arrow_writer(buffer_size=2048) as writer:
            for batch in batches:
                writer.write(batch)
        blocks = writer.get_blocks_written()
        assert len(blocks) > 1
    else:
        with session.open_arrow_writer(0) as writer:
            for batch in batches:
                writer.write(batch)
        blocks = [0]
    session.commit(blocks)
    expected = pa.Table.from_batches(batches).to_pandas()

    download = tunnel.create_download_session(table)
    assert download.count == 1200
    with download.open_arrow_reader(0, 1200) as reader:
        got = reader.read().to_pandas()
    assert got.equals(expected)
    # The record path reads the same rows.
    records = read_records(tunnel, table)
    assert [r[0] for r in records] == list(range(1200))
    assert records[3][2] == "s3" and records[7][2] is None


def test_reader_ranges_and_columns(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    rows = make_rows(300)
    session = tunnel.create_upload_session(table)
    write_block(session, 0, rows[:150])
    write_block(session, 1, rows[150:])
    session.commit([0, 1])

    assert read_records(tunnel, table, start=140, count=20) == rows[140:160]
    # Columns out of table order: the record body follows the requested order.
    got = read_records(tunnel, table, start=10, count=5, columns=["c", "a"])
    assert got == [[r[2], r[0]] for r in rows[10:15]]
    download = tunnel.create_download_session(table)
    with download.open_arrow_reader(295, 10, columns=["f", "a"]) as reader:
        data = reader.read()
    assert data.num_rows == 5
    assert data.column("a").to_pylist() == [r[0] for r in rows[295:300]]
    # Buffered reader (several requests of a few rows each).
    with download.open_record_reader(0, 300, buffered=True, row_batch_size=17) as reader:
        assert [list(r.values) for r in reader] == rows


def test_partitions_and_append_partitions(tunnel, emulator_table, emulator):
    table = emulator_table("a bigint, b string", partitions="pt string, region string")
    for pt in ("20240101", "20240102"):
        session = tunnel.create_upload_session(
            table, partition_spec=f"pt={pt},region=eu", create_partition=True
        )
        write_block(session, 0, [[i, f"{pt}-{i}"] for i in range(5)])
        session.commit([0])
    specs = [s.to_param() for s in emulator.catalog.list_partitions(emulator.project, table)]
    assert specs == ["pt=20240101,region=eu", "pt=20240102,region=eu"]

    download = tunnel.create_download_session(table, partition_spec="pt=20240102,region=eu")
    with download.open_record_reader(0, download.count) as reader:
        got = [list(r.values) for r in reader]
    assert got[0] == [0, "20240102-0", "20240102", "eu"]
    with download.open_record_reader(0, 5, append_partitions=False) as reader:
        assert [list(r.values) for r in reader][4] == [4, "20240102-4"]
    with download.open_arrow_reader(0, 5, append_partitions=True) as reader:
        data = reader.read()
    assert data.column("pt").to_pylist() == ["20240102"] * 5


def _capture_encodings(monkeypatch) -> list[str | None]:
    seen: list[str | None] = []
    original = requests.Session.send

    def send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        if request.method == "GET" and "rowrange" in request.url:
            seen.append(response.headers.get("Content-Encoding"))
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    return seen


@pytest.mark.parametrize("algo", ["zlib", "snappy", "lz4", "zstd"])
def test_compression_round_trip(tunnel, emulator_table, monkeypatch, algo):
    table = emulator_table(SCHEMA)
    rows = make_rows(400)
    session = tunnel.create_upload_session(table, compress_algo=algo)
    with session.open_record_writer(0, compress=True) as writer:
        for row in rows:
            writer.write(session.new_record(row))
    with session.open_arrow_writer(1, compress=True) as writer:
        writer.write(_arrow_batch(100, 1000))
    session.commit([0, 1])

    seen = _capture_encodings(monkeypatch)
    download = tunnel.create_download_session(table, compress_algo=algo)
    with download.open_record_reader(0, 400, compress=True) as reader:
        assert [list(r.values) for r in reader] == rows
    with download.open_arrow_reader(400, 100, compress=True) as reader:
        assert reader.read().column("a").to_pylist() == list(range(1000, 1100))
    expected = {
        "zlib": "deflate",
        "snappy": "x-snappy-framed",
        "lz4": "x-lz4-frame",
        "zstd": "zstd",
    }
    assert seen and all(enc == expected[algo] for enc in seen)


@pytest.mark.parametrize("async_mode", [True, False])
def test_download_async_mode(tunnel, emulator_table, async_mode):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    write_block(session, 0, make_rows(10))
    session.commit([0])
    download = tunnel.create_download_session(table, async_mode=async_mode)
    assert download.count == 10
    assert download.status.value == "NORMAL"


def test_overwrite_and_block_rewrite(tunnel, emulator_table, emulator):
    table = emulator_table(SCHEMA)
    first = tunnel.create_upload_session(table)
    write_block(first, 0, make_rows(10))
    first.commit([0])

    second = tunnel.create_upload_session(table, overwrite=True)
    write_block(second, 0, make_rows(4, offset=100))
    write_block(second, 0, make_rows(3, offset=200))  # rewrite: the last PUT wins
    second.commit([0])
    assert [r[0] for r in read_records(tunnel, table)] == [200, 201, 202]
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 3


def test_download_session_reads_its_snapshot(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    write_block(session, 0, make_rows(10))
    session.commit([0])
    old = tunnel.create_download_session(table)

    appended = tunnel.create_upload_session(table)
    write_block(appended, 0, make_rows(5, offset=50))
    appended.commit([0])
    replaced = tunnel.create_upload_session(table, overwrite=True)
    write_block(replaced, 0, make_rows(2, offset=90))
    replaced.commit([0])

    with old.open_record_reader(0, old.count) as reader:
        assert [r[0] for r in reader] == list(range(10))
    assert [r[0] for r in read_records(tunnel, table)] == [90, 91]


def test_uncommitted_data_is_invisible(tunnel, emulator_table, emulator):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    write_block(session, 0, make_rows(10))
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 0
    assert tunnel.create_download_session(table).count == 0


def test_all_types_round_trip(tunnel, emulator_table):
    import pandas as pd

    table = emulator_table(
        "t1 tinyint, t2 smallint, t3 int, t4 float, t5 date, t6 binary, t7 timestamp, "
        "t8 array<bigint>, t9 map<string,bigint>, t10 struct<x:bigint,y:string>, "
        "t11 varchar(10), t12 interval_year_month, t13 interval_day_time, t14 json, "
        "t15 timestamp_ntz, t16 char(5)"
    )
    from odps.types import Monthdelta

    row = [
        -5,
        300,
        -70000,
        1.5,
        dt.date(1999, 12, 31),
        b"\x00\xffbytes",
        pd.Timestamp("2024-02-29 12:34:56.123456789"),
        [1, None, 3],
        {"k": 1, "z": None},
        {"x": 5, "y": "why"},
        "varchar",
        Monthdelta(years=1, months=2),
        pd.Timedelta(days=2, seconds=5, nanoseconds=7),
        {"a": [1, 2]},
        pd.Timestamp("2020-01-01 00:00:00.5"),
        "ab",
    ]
    session = tunnel.create_upload_session(table)
    write_block(session, 0, [row, [None] * len(row)])
    session.commit([0])
    got = read_records(tunnel, table)
    assert got[1] == [None] * len(row)
    first = got[0]
    assert first[:10] == row[:9] + [first[9]] and dict(first[9]) == {"x": 5, "y": "why"}
    assert first[10:12] == row[10:12]
    assert first[12] == row[12] and first[13] == row[13] and first[14] == row[14]
    assert first[15] == "ab   "  # CHAR is padded on read, as the service does


def test_empty_table_reads(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    download = tunnel.create_download_session(table)
    assert download.count == 0
    with download.open_arrow_reader(0, 1) as reader:
        assert reader.read().num_rows == 0
