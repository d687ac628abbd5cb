"""Readers and writers behave as pyodps 0.13.2's: iteration, slicing, frames, byte counts,
``count``, ``len``, ``flush`` and the metrics of §5.7.

Each reader test reads the same bytes with pyodps's reader and ours and compares what
both return; the metrics tests use a hand-built body whose footer carries the metrics
block, then the emulator's bodies (which carry it for tunnel version 6, as the service).
"""

from __future__ import annotations

import io
import json
import struct
import types

import pandas as pd
import pytest
from odps.models import Record as PyRecord
from odps.models import TableSchema as PyTableSchema
from odps.tunnel import InstanceTunnel as PyInstanceTunnel
from odps.tunnel.base import TunnelMetrics as PyTunnelMetrics
from odps.tunnel.io.reader import TunnelRecordReader as PyTunnelRecordReader
from odps.tunnel.io.writer import BufferedRecordWriter as PyBufferedRecordWriter
from odps.tunnel.io.writer import RecordWriter as PyRecordWriter

from airflow_provider_odps_tunnel.tunnel import (
    BufferedRecordWriter,
    ChecksumError,
    Column,
    RecordWriter,
    TableSchema,
    TunnelRecordReader,
    options,
)
from airflow_provider_odps_tunnel.tunnel.codec.crc import crc32c
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import END_METRICS, encode_rows
from airflow_provider_odps_tunnel.tunnel.io.metrics import TunnelMetrics
from airflow_provider_odps_tunnel.tunnel.io.reader_api import ResultFrame

SCHEMA = TableSchema([Column("id", "bigint"), Column("name", "string")])
PY_SCHEMA = PyTableSchema.from_lists(["id", "name"], ["bigint", "string"])
ROWS = [(i, f"name-{i}") for i in range(20)]
METRICS = {"PanguIOCost": 120, "ServerIOCost": 30, "ServerTotalCost": 1000, "RateLimitCost": 7}
# The footer's last field: tag META_CHECKSUM (33554431, wire type 0) as a varint.
META_CHECKSUM_TAG = b"\xf8\xff\xff\x7f"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def metrics_block(payload: bytes, crc: int | None = None) -> bytes:
    """tag(1, length-delimited), the JSON, tag(END_METRICS, varint), CRC32C(int32_le(1) + JSON)."""
    if crc is None:
        crc = crc32c(payload, crc32c(struct.pack("<i", 1)))
    return b"\x0a" + _varint(len(payload)) + payload + _varint(END_METRICS << 3) + _varint(crc)


def body_with_metrics(rows: list[tuple], metrics: dict, crc: int | None = None) -> bytes:
    """A record body whose footer carries the metrics block between count and checksum."""
    body = encode_rows(SCHEMA.columns, rows)
    cut = body.rindex(META_CHECKSUM_TAG)
    block = metrics_block(json.dumps(metrics).encode(), crc)
    return body[:cut] + block + body[cut:]


def ours_reader(body: bytes) -> TunnelRecordReader:
    return TunnelRecordReader(SCHEMA, lambda start: io.BytesIO(body))


def py_reader(body: bytes) -> PyTunnelRecordReader:
    return PyTunnelRecordReader(PY_SCHEMA, lambda pos, **_: io.BytesIO(body))


def values(records) -> list[list]:
    return [list(r.values) for r in records]


@pytest.fixture
def body() -> bytes:
    return encode_rows(SCHEMA.columns, ROWS)


# --------------------------------------------------------------------------- record reader


def test_next_read_and_count_as_pyodps(body):
    ours, theirs = ours_reader(body), py_reader(body)
    for step in (next, lambda r: r.next(), lambda r: r.read()):
        assert list(step(ours).values) == list(step(theirs).values)
        assert ours.count == theirs.count
    assert values(ours.reads()) == values(theirs.reads())
    assert ours.count == theirs.count == len(ROWS)
    with pytest.raises(StopIteration):
        next(ours)
    assert ours.read() is None and theirs.read() is None


@pytest.mark.parametrize(
    "item", [slice(2, 9), slice(3, 15, 4), slice(5, None), slice(None, 4), 0, 7]
)
def test_slicing_as_pyodps(body, item):
    ours, theirs = ours_reader(body), py_reader(body)
    mine, reference = ours[item], theirs[item]
    if isinstance(item, int):
        assert list(mine.values) == list(reference.values)
    else:
        assert values(mine) == values(reference)
    # slices count from where the reader is: reading on continues after them
    assert values(ours) == values(theirs)


def test_slicing_errors_as_pyodps(body):
    for reader in (ours_reader(body), py_reader(body)):
        with pytest.raises(ValueError):
            reader[-1:]
        with pytest.raises(ValueError):
            reader[5:2]
        with pytest.raises(ValueError):
            reader["a"]
        with pytest.raises(IndexError):
            reader[len(ROWS)]


def test_slice_to_pandas_as_pyodps(body):
    mine = ours_reader(body)[4:12:2].to_pandas()
    reference = py_reader(body)[4:12:2].to_pandas()
    assert mine.values.tolist() == reference.values.tolist()
    assert list(mine.columns) == list(reference.columns)


@pytest.mark.parametrize(
    "kw", [{}, {"start": 3}, {"count": 5}, {"start": 2, "count": 6}, {"start": 1, "step": 3}]
)
def test_to_pandas_as_pyodps(body, kw):
    mine = ours_reader(body).to_pandas(**kw)
    reference = py_reader(body).to_pandas(**kw)
    assert isinstance(mine, pd.DataFrame)
    assert mine.values.tolist() == reference.values.tolist()
    assert list(mine.columns) == list(reference.columns)


def test_to_result_frame_as_pyodps(body):
    mine = ours_reader(body).to_result_frame(start=2, count=4)
    reference = py_reader(body).to_result_frame(start=2, count=4)
    assert isinstance(mine, ResultFrame) and len(mine) == len(reference) == 4
    assert mine.values.values.tolist() == reference.values.values.tolist()
    assert list(mine) == [list(row) for row in ROWS[2:6]]


def test_to_result_frame_keeps_the_columns_asked_for(body):
    """pyodps's tunnel readers fail on ``columns=`` (it only works for its CSV readers);
    ours keeps those columns."""
    frame = ours_reader(body).to_result_frame(start=2, count=4, columns=["name"])
    assert [c.name for c in frame.columns] == ["name"]
    assert list(frame) == [[f"name-{i}"] for i in range(2, 6)]
    with pytest.raises(ValueError):
        py_reader(body).to_result_frame(start=2, count=4, columns=["name"])


def test_bytes_schema_and_context_manager_as_pyodps(body):
    with ours_reader(body) as ours, py_reader(body) as theirs:
        assert ours.n_bytes == theirs.n_bytes == 0
        list(ours), list(theirs)
        assert ours.n_bytes == theirs.n_bytes == len(body)
        assert ours.get_total_bytes() == theirs.get_total_bytes() == len(body)
        assert [c.name for c in ours.schema.columns] == [c.name for c in theirs.schema.columns]


def test_n_bytes_adds_up_over_a_resume(body):
    """A body that breaks is re-opened at the next row; n_bytes counts both attempts."""
    calls = []

    def stream_creator(start: int) -> io.BytesIO:
        calls.append(start)
        if len(calls) == 1:
            return io.BytesIO(body[: len(body) // 2])  # truncated: the reader resumes
        return io.BytesIO(encode_rows(SCHEMA.columns, ROWS[start:]))

    reader = TunnelRecordReader(SCHEMA, stream_creator)
    assert values(reader) == [list(r) for r in ROWS]
    assert calls == [0, 0]  # rows are delivered per verified batch: none before the break
    # the whole second body, and the complete records decoded from the first
    assert len(body) < reader.n_bytes <= len(body) // 2 + len(body)


# --------------------------------------------------------------------------- metrics (§5.7)


def test_metrics_from_the_body_trailer_as_pyodps():
    body = body_with_metrics(ROWS, METRICS)
    ours, theirs = ours_reader(body), py_reader(body)
    assert ours.metrics is None and theirs.metrics is None  # not before the footer
    assert values(ours) == values(theirs)
    assert isinstance(ours.metrics, TunnelMetrics)
    assert ours.metrics.to_dict() == theirs.metrics.to_dict()
    assert ours.metrics.tunnel_process_cost == 1000 - 30 - 120 - 7
    assert ours.n_bytes == theirs.n_bytes == len(body)


def test_no_trailer_no_metrics(body):
    ours, theirs = ours_reader(body), py_reader(body)
    list(ours), list(theirs)
    assert ours.metrics is None and theirs.metrics is None


def test_metrics_with_a_wrong_crc_is_refused(monkeypatch):
    """A ChecksumError, as pyodps raises (it then re-reads the same bytes forever)."""
    good = crc32c(json.dumps(METRICS).encode(), crc32c(struct.pack("<i", 1)))
    body = body_with_metrics(ROWS, METRICS, crc=good ^ 1)
    monkeypatch.setattr(options, "retry_times", 0)
    with pytest.raises(ChecksumError):
        list(ours_reader(body))


def test_client_metrics_are_measured_when_enabled(monkeypatch):
    monkeypatch.setattr(options, "enable_client_metrics", True)
    reader = ours_reader(body_with_metrics(ROWS, METRICS))
    list(reader)
    metrics = reader.metrics
    assert metrics.network_wall_cost >= 0 and metrics.client_process_cost >= 0
    assert (metrics.storage_cost, metrics.server_io_cost, metrics.server_total_cost) == (
        120,
        30,
        1000,
    )


def test_tunnel_metrics_arithmetic_as_pyodps():
    text = json.dumps(METRICS)
    mine = TunnelMetrics.from_server_json("W", text, 500, 200)
    reference = PyTunnelMetrics.from_server_json("W", text, 500, 200)
    assert mine.to_dict() == reference.to_dict()
    assert (mine + mine).to_dict() == (reference + reference).to_dict()
    assert repr(mine) == repr(reference)
    with pytest.raises(ValueError):
        mine + TunnelMetrics("other")


# --------------------------------------------------------------------------- writers


def _py_response(metrics: dict | None) -> types.SimpleNamespace:
    headers = {} if metrics is None else {"odps-tunnel-metrics": json.dumps(metrics)}
    return types.SimpleNamespace(headers=headers)


def test_record_writer_count_len_flush_and_metrics_as_pyodps():
    sent: list[bytes] = []

    def ours_callback(chunks) -> str:
        sent.append(b"".join(chunks))
        return json.dumps(METRICS)

    def py_callback(chunks) -> types.SimpleNamespace:
        b"".join(chunks)
        return _py_response(METRICS)

    ours = RecordWriter(SCHEMA, ours_callback)
    theirs = PyRecordWriter(PY_SCHEMA, py_callback)
    for row in ROWS[:5]:
        ours.write(list(row))
        theirs.write(PyRecord(schema=PY_SCHEMA, values=list(row)))
    assert ours.count == theirs.count == 5
    ours.flush(), theirs.flush()
    ours.flush_all(), theirs.flush_all()
    assert len(ours) == ours.n_bytes == ours.get_total_bytes() > 0
    assert ours.metrics is None and theirs.metrics is None  # not before close
    ours.close(), theirs.close()
    assert ours.count == theirs.count == 0  # a closed body starts a fresh count
    assert ours.metrics.to_dict() == theirs.metrics.to_dict()
    assert len(sent[0]) == ours.n_bytes


def test_buffered_writer_count_len_and_metrics(monkeypatch):
    blocks: dict[int, bytes] = {}

    def callback(block_id, body) -> str:
        blocks[block_id] = b"".join(body)
        return json.dumps(METRICS)

    writer = BufferedRecordWriter(SCHEMA, callback, buffer_size=10 * 1024 * 1024)
    theirs = PyBufferedRecordWriter(PY_SCHEMA, lambda bid, data: _py_response(METRICS))
    assert writer.metrics is None and theirs.metrics is None  # client metrics off
    for row in ROWS:
        writer.write(list(row))
        theirs.write(PyRecord(schema=PY_SCHEMA, values=list(row)))
    assert writer.count == theirs.count == len(ROWS)
    assert len(writer) == writer.get_total_bytes() == writer.n_bytes
    writer.close(), theirs.close()
    assert writer.count == theirs.count == 0
    assert writer.get_blocks_written() == theirs.get_blocks_written() == [0]
    assert writer.n_bytes == len(blocks[0])

    monkeypatch.setattr(options, "enable_client_metrics", True)
    writer = BufferedRecordWriter(SCHEMA, callback)
    for row in ROWS:
        writer.write(list(row))
        writer.flush_all()  # ours sends the block (pyodps's flush does not)
    writer.close()
    assert writer.get_blocks_written() == list(range(len(ROWS)))
    metrics = writer.metrics
    assert metrics.server_total_cost == len(ROWS) * 1000
    assert metrics.storage_cost == len(ROWS) * 120


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def filled_table(tunnel, emulator_table):
    table = emulator_table("id bigint, name string")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer() as writer:
        for row in ROWS:
            writer.write(list(row))
    session.commit(writer.get_blocks_written())
    return table


def test_download_metrics_end_to_end_as_pyodps(tunnel, py_tunnel, filled_table):
    ours = tunnel.create_download_session(filled_table)
    theirs = py_tunnel.create_download_session(filled_table)
    with (
        ours.open_record_reader(0, ours.count) as mine,
        theirs.open_record_reader(0, theirs.count) as reference,
    ):
        assert values(mine) == values(reference)
        # the JSON holds the server's time, so the two bodies' lengths may differ
        assert mine.get_total_bytes() == mine.n_bytes > 0
        mine_metrics, reference_metrics = mine.metrics, reference.metrics
    assert reference_metrics is not None and mine_metrics is not None
    assert mine_metrics.owner == reference_metrics.owner == "TunnelRecordReader"
    assert mine_metrics.server_total_cost > 0


def test_arrow_reader_iteration_as_pyodps(tunnel, py_tunnel, filled_table):
    ours = tunnel.create_download_session(filled_table)
    theirs = py_tunnel.create_download_session(filled_table)
    mine = ours.open_arrow_reader(0, ours.count)
    reference = theirs.open_arrow_reader(0, theirs.count)
    assert iter(mine) is mine and iter(reference) is reference
    assert next(mine).to_pylist() == next(reference).to_pylist()
    with pytest.raises(StopIteration):
        next(mine)
    assert mine.count == reference.count == len(ROWS)
    assert mine.get_total_bytes() == mine.n_bytes > 0
    assert not mine.closed and not reference.closed
    mine.close()
    assert mine.closed


def test_arrow_writers_flush_and_total_bytes():
    import pyarrow as pa

    from airflow_provider_odps_tunnel.tunnel import ArrowWriter, BufferedArrowWriter

    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    blocks: dict[int, bytes] = {}
    buffered = BufferedArrowWriter(
        SCHEMA, lambda bid, chunks: blocks.setdefault(bid, b"".join(chunks))
    )
    buffered.write(table)
    buffered.flush()  # sends the block now, as our buffered record writer does
    buffered.flush()  # nothing buffered: no empty block
    buffered.write(table)
    buffered.close()
    assert buffered.get_blocks_written() == [0, 1] == sorted(blocks)
    assert buffered.get_total_bytes() == buffered.n_bytes > 0

    sent: list[bytes] = []
    streaming = ArrowWriter(SCHEMA, lambda chunks: sent.append(b"".join(chunks)))
    streaming.write(table)
    streaming.flush()
    streaming.close()
    assert streaming.get_total_bytes() == streaming.n_bytes == len(sent[0])


def test_upload_writer_metrics_end_to_end_as_pyodps(tunnel, py_tunnel, emulator_table, monkeypatch):
    """A block writer's metrics come from its PUT's header, with either client; buffered
    writers sum theirs under enable_client_metrics (the session sends blocks in the
    background, so the writer collects them from the sender's futures)."""
    table = emulator_table("id bigint, name string")
    ours = tunnel.create_upload_session(table)
    theirs = py_tunnel.create_upload_session(table)
    with ours.open_record_writer(0) as mine, theirs.open_record_writer(1) as reference:
        for row in ROWS:
            mine.write(list(row))
            reference.write(reference_record(theirs, row))
    assert mine.metrics is not None and reference.metrics is not None
    assert mine.metrics.owner == reference.metrics.owner == "RecordWriter"
    assert mine.metrics.server_total_cost > 0

    monkeypatch.setattr(options, "enable_client_metrics", True)
    with ours.open_record_writer(buffer_size=64) as mine:
        for row in ROWS:
            mine.write(list(row))
    blocks = mine.get_blocks_written()
    assert len(blocks) > 1
    # the owner is the writer's class name, as in pyodps (a session's buffered writer
    # is a BufferedRecordWriter that sends in the background)
    assert isinstance(mine, BufferedRecordWriter)
    assert mine.metrics.owner == type(mine).__name__
    assert mine.metrics.server_total_cost >= len(blocks)  # every block's, summed
    ours.commit([0, *blocks])


def reference_record(session, row: tuple) -> PyRecord:
    record = session.new_record()
    for i, value in enumerate(row):
        record[i] = value
    return record


def test_instance_result_reader_metrics_as_pyodps(odps, pyodps, filled_table):
    """A query result's record reader has the same trailer and metrics as a table's."""
    instance = odps.execute_sql(f"SELECT id, name FROM {filled_table} ORDER BY id")
    with instance.open_reader() as mine:
        assert values(mine) == [list(r) for r in ROWS]
        assert mine.metrics is not None and mine.metrics.server_total_cost > 0
    theirs = PyInstanceTunnel(pyodps).create_download_session(instance.id)
    with theirs.open_record_reader(0, theirs.count) as reference:
        assert values(reference) == [list(r) for r in ROWS]
        assert reference.metrics is not None


def test_buffered_reader_as_pyodps(tunnel, py_tunnel, filled_table, monkeypatch):
    """``open_record_reader(..., buffered=True)``: several requests, one reader's surface."""
    monkeypatch.setattr(options, "enable_client_metrics", True)
    ours = tunnel.create_download_session(filled_table)
    theirs = py_tunnel.create_download_session(filled_table)
    mine = ours.open_record_reader(0, ours.count, buffered=True, row_batch_size=6)
    reference = theirs.open_record_reader(0, theirs.count, buffered=True)
    assert list(next(mine).values) == list(next(reference).values)
    assert values(mine[2:9:3]) == values(reference[2:9:3])
    assert mine.to_pandas(count=4).values.tolist() == reference.to_pandas(count=4).values.tolist()
    assert values(mine.reads()) == values(reference.reads())
    assert mine.count == reference.count == len(ROWS)
    assert mine.get_total_bytes() == mine.n_bytes > 0
    assert [c.name for c in mine.schema.columns] == ["id", "name"]
    # 4 requests of at most 6 rows, each body ending with its metrics block
    assert mine.metrics.owner == "BufferedRecordReader"
    assert mine.metrics.server_total_cost >= 4 * 3
