"""RecordWriter, BufferedRecordWriter and TunnelRecordReader with no server: bodies go to a
collecting callback and come back from a stream creator."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import random

import pandas as pd
import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import (
    Record,
    RecordValidationError,
    StreamTruncatedError,
    TableSchema,
    TunnelError,
    options,
)
from airflow_provider_odps_tunnel.tunnel.codec.compression import (
    CompressOption,
    decompressing_stream,
)
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import RecordDecoder, encode_rows
from airflow_provider_odps_tunnel.tunnel.io.record_reader import TunnelRecordReader
from airflow_provider_odps_tunnel.tunnel.io.record_writer import BufferedRecordWriter, RecordWriter
from airflow_provider_odps_tunnel.tunnel.options import resolve_timezone

TYPICAL = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
    ["pt", "region"],
    ["string", "bigint"],
)


def typical_rows(n: int, seed: int = 7) -> list[tuple]:
    rnd = random.Random(seed)
    base = dt.datetime(2024, 1, 1)
    rows = []
    for i in range(n):
        rows.append(
            (
                i,
                rnd.random() * 1e6 - 5e5,
                "".join(rnd.choice("abcxyz日本🙂") for _ in range(rnd.randint(0, 30))),
                rnd.random() < 0.5,
                base + dt.timedelta(milliseconds=rnd.randint(-(10**12), 10**12)),
                decimal.Decimal(rnd.randint(-(10**12), 10**12)).scaleb(-4),
            )
        )
    if n > 3:
        rows[3] = (3, 0.0, None, None, None, None)  # pandas cannot hold a null double
    return rows


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setattr(options, "local_timezone", "UTC")
    monkeypatch.setenv("TZ", "UTC")  # the zone of codecs used directly, without a tz


def collect(chunks) -> bytes:
    return b"".join(chunks)


def decode(body: bytes, schema: TableSchema = TYPICAL) -> list[tuple]:
    decoder = RecordDecoder(schema.simple_columns, io.BytesIO(body), tz=resolve_timezone())
    return decoder.read_rows(10**9)


def server_of(rows: list[tuple], schema: TableSchema = TYPICAL):
    """A stream creator serving ``rows`` from any start row, recording each request."""
    calls = []

    def stream_creator(start: int) -> io.BytesIO:
        calls.append(start)
        return io.BytesIO(encode_rows(schema.simple_columns, rows[start:]))

    return stream_creator, calls


class BreakingStream(io.RawIOBase):
    """A body that raises ConnectionResetError after ``limit`` bytes."""

    def __init__(self, data: bytes, limit: int):
        self._data = io.BytesIO(data)
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            raise ConnectionResetError("connection reset by peer")
        n = self._data.readinto(memoryview(buffer)[: min(len(buffer), self._left)])
        self._left -= n
        return n


def test_record_writer_streams_one_block_in_chunks(monkeypatch):
    monkeypatch.setattr(options, "chunk_size", 1024)
    rows = typical_rows(500)
    seen = []

    def callback(chunks):
        for chunk in chunks:
            seen.append(len(chunk))
        return "response"

    writer = RecordWriter(TYPICAL, callback)
    for row in rows:
        writer.write(row)
    assert writer.close() == "response"
    assert len(seen) > 5 and max(seen) <= 1024
    assert writer.n_records == 0  # the footer resets the count for a new body
    body = collect_from(rows)
    assert sum(seen) == len(body)


def collect_from(rows: list[tuple]) -> bytes:
    out = []
    writer = RecordWriter(TYPICAL, lambda chunks: out.append(collect(chunks)))
    for row in rows:
        writer.write(row)
    writer.close()
    return out[0]


def test_every_input_kind_gives_the_same_body():
    rows = typical_rows(50)
    expected = collect_from(rows)
    names = TYPICAL.names[:6]
    frame = pd.DataFrame(rows, columns=names)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for data in (
        [Record(schema=TYPICAL, values=list(r)) for r in rows],
        [list(r) for r in rows],
        [table],
        table.to_batches(),
        [frame],
    ):
        out = []
        writer = RecordWriter(TYPICAL, lambda chunks, out=out: out.append(collect(chunks)))
        for item in data:
            writer.write(item)
        writer.close()
        assert decode(out[0]) == decode(expected)


@pytest.mark.parametrize("algo", ["zlib", "snappy", "lz4", "zstd"])
def test_compressed_writer_round_trip(algo):
    rows = typical_rows(300)
    out = []
    option = CompressOption(algo)
    writer = RecordWriter(TYPICAL, lambda chunks: out.append(collect(chunks)), option)
    for row in rows:
        writer.write(row)
    writer.close()
    token = option.algorithm.get_encoding()
    plain = decompressing_stream(io.BytesIO(out[0]), token).read()
    assert plain == collect_from(rows)
    assert len(out[0]) < len(plain)


def test_writer_aborts_on_exception_inside_with_block():
    received = []

    def callback(chunks):
        for chunk in chunks:
            received.append(chunk)

    with pytest.raises(KeyError), RecordWriter(TYPICAL, callback) as writer:
        writer.write(typical_rows(1)[0])
        raise KeyError("boom")
    body = b"".join(received)
    with pytest.raises(StreamTruncatedError):
        decode(body)


def test_callback_failure_reaches_the_writer():
    def callback(chunks):
        next(iter(chunks))
        raise ConnectionError("server went away")

    writer = RecordWriter(TYPICAL, callback)
    with pytest.raises(ConnectionError):
        for row in typical_rows(5000):
            writer.write(row)
        writer.close()


def test_bad_value_names_column_and_nothing_is_buffered():
    writer = RecordWriter(TYPICAL, collect)
    writer.write(typical_rows(1)[0])
    with pytest.raises(RecordValidationError) as info:
        writer.write((1, "not a number", "x", True, None, None))
    assert info.value.column == "score"
    assert "score" in str(info.value) and "double" in str(info.value)
    writer.write(typical_rows(2)[1])  # the writer stays usable
    assert writer.n_records == 2


def test_buffered_writer_cuts_blocks_with_generated_ids():
    rows = typical_rows(2000)
    blocks = {}
    ids = iter(range(100, 200, 3))

    def callback(block_id, body):
        first, second = collect(body), collect(body)
        assert first == second  # re-iterable: the HTTP layer may re-send it
        blocks[block_id] = first

    writer = BufferedRecordWriter(
        TYPICAL, callback, buffer_size=8192, block_id=7, block_id_gen=lambda: next(ids)
    )
    for row in rows:
        writer.write(row)
    writer.close()
    written = writer.get_blocks_written()
    assert written[:3] == [7, 100, 103] and len(written) > 5
    assert sorted(blocks) == sorted(written)
    decoded = [row for block_id in written for row in decode(blocks[block_id])]
    assert decoded == decode(collect_from(rows))


@pytest.mark.parametrize("algo", [None, "zlib", "zstd"])
def test_buffered_writer_compresses_each_block(algo):
    rows = typical_rows(800)
    blocks = []
    option = CompressOption(algo) if algo else None
    writer = BufferedRecordWriter(
        TYPICAL, lambda block_id, body: blocks.append(collect(body)), option, buffer_size=4096
    )
    for row in rows:
        writer.write(row)
    writer.close()
    token = option.algorithm.get_encoding() if option else None
    decoded = [r for b in blocks for r in decode(decompressing_stream(io.BytesIO(b), token).read())]
    assert decoded == decode(collect_from(rows))


def test_buffered_writer_refuses_block_ids_out_of_range():
    with pytest.raises(TunnelError, match="outside 0..19999"):
        BufferedRecordWriter(TYPICAL, lambda *a: None, block_id=20000)
    writer = BufferedRecordWriter(TYPICAL, lambda *a: None, buffer_size=10, block_id_gen=lambda: -1)
    with pytest.raises(TunnelError, match="outside"):
        writer.write(typical_rows(1)[0])


def test_empty_buffered_writer_sends_nothing():
    calls = []
    writer = BufferedRecordWriter(TYPICAL, lambda *a: calls.append(a))
    writer.close()
    assert calls == [] and writer.get_blocks_written() == []


def test_reader_reads_records_tuples_and_arrow():
    rows = typical_rows(100)
    creator, _ = server_of(rows)
    reader = TunnelRecordReader(TYPICAL, creator)
    records = list(reader)
    assert [tuple(r.values) for r in records] == decode(encode_rows(TYPICAL.simple_columns, rows))
    assert records[5]["name"] == records[5].name == rows[5][2]
    assert list(TunnelRecordReader(TYPICAL, server_of(rows)[0]).iter_tuples()) == [
        tuple(r.values) for r in records
    ]
    table = TunnelRecordReader(TYPICAL, server_of(rows)[0]).read_arrow()
    assert table.num_rows == 100 and table.column("id").to_pylist() == list(range(100))


def test_reader_columns_and_partitions():
    rows = typical_rows(20)
    selected = ["name", "region", "id"]
    sub_schema = TYPICAL.select(["name", "id"])

    def creator(start):
        return io.BytesIO(encode_rows(sub_schema.simple_columns, [(r[2], r[0]) for r in rows]))

    reader = TunnelRecordReader(
        TYPICAL, creator, columns=selected, partition_spec="pt='a',region=5"
    )
    assert [c.name for c in reader.wire_columns] == ["name", "id"]
    got = list(reader.iter_tuples())
    assert got == [(r[2], 5, r[0]) for r in rows]

    reader = TunnelRecordReader(
        TYPICAL, server_of(rows)[0], partition_spec="pt=a,region=5", append_partitions=True
    )
    first = reader.read()
    assert first.values[6:] == ["a", 5] and first["pt"] == "a"


def test_reader_resumes_at_the_row_where_the_connection_broke():
    rows = typical_rows(3000)
    calls = []

    def creator(start):
        calls.append(start)
        body = encode_rows(TYPICAL.simple_columns, rows[start:])
        if len(calls) == 1:
            return BreakingStream(body, len(body) // 2)
        return io.BytesIO(body)

    reader = TunnelRecordReader(TYPICAL, creator)
    got = list(reader.iter_tuples())
    assert got == decode(encode_rows(TYPICAL.simple_columns, rows))
    assert len(calls) == 2 and calls[1] > 0  # resumed after the rows already delivered
    assert reader.count == 3000


def test_reader_on_exception_can_stop_the_retry():
    rows = typical_rows(3000)
    body = encode_rows(TYPICAL.simple_columns, rows)
    seen = []

    def on_exception(exc):
        seen.append(exc)
        return True

    reader = TunnelRecordReader(
        TYPICAL, lambda start: BreakingStream(body, 5000), on_exception=on_exception
    )
    with pytest.raises(ConnectionResetError):
        list(reader.iter_tuples())
    assert len(seen) == 1


def test_reader_gives_up_after_retries_with_row_context():
    rows = typical_rows(3000)
    calls = []

    def truncating(start):
        calls.append(start)
        body = encode_rows(TYPICAL.simple_columns, rows[start:])
        return io.BytesIO(body[: len(body) - 3])  # the footer never arrives

    reader = TunnelRecordReader(TYPICAL, truncating)
    with pytest.raises(StreamTruncatedError) as info:
        list(reader.iter_tuples())
    assert info.value.row == 3000 and info.value.offset is not None  # rows of the body
    assert len(calls) == options.retry_times + 1 and calls[-1] == 2048


def test_progress_callback_reports_rows():
    rows = typical_rows(50)
    events = []
    reader = TunnelRecordReader(TYPICAL, server_of(rows)[0])
    reader.progress.callback = events.append
    list(reader)
    assert events[-1].done and events[-1].rows == 50 and events[-1].bytes > 0

    events.clear()
    writer = RecordWriter(TYPICAL, collect)
    writer.progress.callback = events.append
    for row in rows:
        writer.write(row)
    writer.close()
    assert events[-1].done and events[-1].rows == 50


# ------------------------------------------------------------------ pyodps cross-checks


def _pyodps_schema():
    from odps import types as odps_types

    return odps_types.OdpsSchema.from_lists(TYPICAL.names[:6], [str(t) for t in TYPICAL.types[:6]])


def test_pyodps_reads_what_we_write():
    from odps.tunnel.io.reader import TunnelRecordReader as PyodpsReader

    rows = typical_rows(1000, seed=11)
    body = collect_from(rows)
    reader = PyodpsReader(_pyodps_schema(), lambda *a, **k: io.BytesIO(body))
    theirs = [tuple(r.values) for r in reader]
    assert theirs == decode(body)


def test_we_read_what_pyodps_writes():
    from odps.models import Record as PyodpsRecord
    from odps.tunnel.io.writer import BaseRecordWriter

    rows = typical_rows(1000, seed=12)
    schema = _pyodps_schema()
    buf = io.BytesIO()
    writer = BaseRecordWriter(schema, buf)
    for row in rows:
        writer.write(PyodpsRecord(schema=schema, values=list(row)))
    writer.close()
    ours = decode(buf.getvalue())
    assert ours == [
        tuple(
            v.replace(microsecond=v.microsecond // 1000 * 1000) if isinstance(v, dt.datetime) else v
            for v in row
        )
        for row in rows
    ]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin"])
def test_arrow_and_tuple_inputs_agree_on_datetimes_outside_utc(monkeypatch, zone):
    """Naive datetimes are wall clock in the local zone whichever way they are written."""
    monkeypatch.setattr(options, "local_timezone", zone)
    schema = TableSchema.from_lists(
        ["ts", "nested"], ["datetime", "struct<t:datetime,ts:timestamp,ntz:timestamp_ntz>"]
    )
    when = dt.datetime(2024, 7, 1, 12, 0, 0)
    rows = [
        (
            when + dt.timedelta(hours=i),
            {
                "t": when,
                "ts": pd.Timestamp(when) + pd.Timedelta(nanoseconds=5),
                "ntz": pd.Timestamp(when),
            },
        )
        for i in range(3)
    ]
    bodies = []
    for data in (rows, [pd.DataFrame(rows, columns=["ts", "nested"])]):
        writer = RecordWriter(schema, lambda chunks: bodies.append(collect(chunks)))
        for item in data:
            writer.write(item)
        writer.close()
    assert bodies[0] == bodies[1]
    decoded = decode(bodies[1], schema)
    assert [r[0] for r in decoded] == [r[0] for r in rows]
    assert decoded[0][1]["t"] == when and decoded[0][1]["ntz"] == pd.Timestamp(when)
