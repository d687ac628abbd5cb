"""The service model: bandwidth caps per connection, the concurrent-stream limit, latency.

Throughput is measured on what the emulator paces: bodies of about 1 MB at a cap of a few
MB/s, so each transfer takes a fraction of a second. The request log gives each request's
start, duration and body sizes as the server saw them; the bounds leave room below the cap
for a busy machine and allow the 64 KiB burst above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from odps import ODPS as PyODPS
from odps.tunnel import TableTunnel as PyTableTunnel
from polling import wait_until
from signed_requests import signed

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.emulator.cli import build_parser
from airflow_provider_odps_tunnel.emulator.errors import EmulatorError
from airflow_provider_odps_tunnel.emulator.server import SERVE_OPTIONS, option_args
from airflow_provider_odps_tunnel.emulator.service_model import (
    BURST,
    ServiceModel,
    TokenBucket,
    is_data_stream,
    parse_rate,
)
from airflow_provider_odps_tunnel.emulator.state import EmulatorConfig
from airflow_provider_odps_tunnel.tunnel import ODPS, Column, TableSchema, TableTunnel

CAP = 4_000_000
ROWS = 10_000  # about 1 MB on the wire with the 90-byte strings below
TABLE = "t"


@pytest.fixture
def make_emulator(tmp_path):
    """A private emulator with the given service model and a table ``t (id, s)``."""
    started: list[Emulator] = []

    def make(**options) -> tuple[Emulator, TableTunnel]:
        emu = Emulator(tmp_path / f"emu{len(started)}", **options).start()
        started.append(emu)
        schema = TableSchema([Column("id", "bigint"), Column("s", "string")])
        emu.catalog.create_table(emu.project, TABLE, schema)
        odps = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
        return emu, TableTunnel(odps)

    yield make
    for emu in started:
        emu.stop()


def _batch(start: int = 0) -> pa.RecordBatch:
    ids = pa.array(range(start, start + ROWS), pa.int64())
    return pa.record_batch({"id": ids, "s": pa.array(["x" * 90] * ROWS)})


def _write_block(session, block_id: int, together: threading.Barrier | None = None) -> None:
    """Write block ``block_id`` (rows ``block_id * ROWS`` on) with our client; with
    ``together``, only once every writer of the barrier is ready to send."""
    batch = _batch(block_id * ROWS)
    with session.open_arrow_writer(block_id) as writer:
        if together is not None:
            together.wait(timeout=30)
        writer.write(batch)


def _two_writers(write) -> None:
    """``write(block, barrier)`` for blocks 0 and 1 in two threads that send together."""
    together = threading.Barrier(2)
    threads = [threading.Thread(target=write, args=(b, together)) for b in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _log(emu: Emulator) -> list[dict]:
    return [json.loads(line) for line in emu.request_log_path.read_text().splitlines()]


def _bodies(emu: Emulator, method: str) -> list[dict]:
    """Request-log lines of ``method`` requests that moved more than a burst of data."""
    return [
        e
        for e in _log(emu)
        if e["method"] == method and max(e["bytes_in"], e["bytes_out"]) > 4 * BURST
    ]


def _rate(entry: dict) -> float:
    """Bytes per second of one logged request, from the server's view."""
    return max(entry["bytes_in"], entry["bytes_out"]) / (entry["ms"] / 1000)


def _service(emu: Emulator) -> dict:
    return requests.get(f"{emu.tunnel_endpoint}/__emulator__/service", timeout=10).json()


def test_rates_parse_with_units():
    assert parse_rate("8MB") == 8_000_000
    assert parse_rate("8 MiB/s") == 8 * 2**20
    assert parse_rate("512KB") == 512_000
    assert parse_rate("1.5GB") == 1_500_000_000
    assert parse_rate("1000") == parse_rate(1000) == 1000
    assert parse_rate(None) is parse_rate("") is parse_rate("0") is None
    with pytest.raises(ValueError, match="8 furlongs"):
        parse_rate("8 furlongs")
    with pytest.raises(ValueError, match="stream_limit_scope"):
        EmulatorConfig(data_dir=Path("unused"), stream_limit_scope="bucket")


def test_token_bucket_spends_a_burst_then_paces():
    now = [0.0]
    bucket = TokenBucket(1000, burst=100, clock=lambda: now[0])
    assert bucket.take(100) == 0  # the burst
    assert bucket.take(500) == pytest.approx(0.5)  # 500 bytes of debt at 1000 B/s
    now[0] = 0.5
    assert bucket.take(0) == 0
    now[0] = 10.0  # idle time refills the bucket up to the burst only
    assert bucket.take(300) == pytest.approx(0.2)


def test_only_table_data_bodies_count_as_streams():
    assert is_data_stream("PUT", "upload", {"uploadid": "u", "blockid": "0"})
    assert is_data_stream("PUT", "upsert", {"upsertid": "u"})
    assert is_data_stream("GET", "download", {"data": "", "downloadid": "d"})
    assert is_data_stream("GET", "instance", {"data": "", "downloadid": "d"})
    assert not is_data_stream("GET", "download", {"downloadid": "d"})  # a reload
    assert not is_data_stream("POST", "upload", {"uploadid": "u"})  # a commit
    assert not is_data_stream("GET", None, {})


def test_the_project_scope_counts_streams_of_every_table():
    model = ServiceModel(stream_limit=2, stream_limit_scope="project")
    put = ("PUT", "upload", {"uploadid": "u"})

    async def admit_three() -> None:
        with contextlib.ExitStack() as held:
            await model.admit(*put, {"project": "p", "table": "a"}, held)
            await model.admit(*put, {"project": "p", "table": "b"}, held)
            assert model.to_json()["in_flight"] == {"p": 2}
            await model.admit(*put, {"project": "q", "table": "a"}, held)  # another project
            with pytest.raises(EmulatorError) as refused:
                await model.admit(*put, {"project": "p", "table": "c"}, held)
            assert refused.value.code == "FlowExceeded"
        assert model.to_json()["in_flight"] == {}

    asyncio.run(admit_three())


def test_one_upload_and_one_download_stay_within_the_cap(make_emulator):
    emu, tunnel = make_emulator(upload_bandwidth="4MB", download_bandwidth="4MB")
    upload = tunnel.create_upload_session(TABLE)
    started = time.monotonic()
    _write_block(upload, 0)
    upload_seconds = time.monotonic() - started
    upload.commit([0])
    download = tunnel.create_download_session(TABLE)
    started = time.monotonic()
    table = download.open_arrow_reader(0, download.count).read()
    download_seconds = time.monotonic() - started
    assert table.num_rows == ROWS
    (put,) = _bodies(emu, "PUT")
    # The line of a download is written once its last byte is sent, maybe after the read.
    (get,) = wait_until(
        lambda: _bodies(emu, "GET"), timeout=10, message="the download's request-log line"
    )
    for entry, seconds in ((put, upload_seconds), (get, download_seconds)):
        size = max(entry["bytes_in"], entry["bytes_out"])
        assert size > 900_000
        assert 0.3 * CAP < _rate(entry) < 1.1 * CAP, entry  # (low: decoding, fsync, load)
        assert seconds >= (size - BURST) / CAP  # the client saw it take that long too


def test_parallel_connections_each_get_their_own_cap(make_emulator):
    cap = 2_000_000  # half a second per block: room for the threads' start-up jitter
    emu, tunnel = make_emulator(upload_bandwidth=cap)
    upload = tunnel.create_upload_session(TABLE)
    _two_writers(lambda block, together: _write_block(upload, block, together))
    upload.commit([0, 1])
    puts = _bodies(emu, "PUT")
    assert len(puts) == 2
    for put in puts:
        assert 0.3 * cap < _rate(put) < 1.1 * cap, put
    first = min(e["time"] for e in puts)
    last = max(e["time"] + e["ms"] / 1000 for e in puts)
    aggregate = sum(e["bytes_in"] for e in puts) / (last - first)
    one = sum(_rate(e) for e in puts) / 2
    # About twice one connection's rate (the second started a little later), never
    # above twice the cap.
    assert 1.5 * one < aggregate < 2.2 * cap, (aggregate, one)
    assert emu.catalog.read_table(emu.project, TABLE).num_rows == 2 * ROWS


def test_the_stream_beyond_the_limit_is_answered_429_flow_exceeded(make_emulator):
    emu, tunnel = make_emulator(stream_limit=1, download_bandwidth="1MB")
    upload = tunnel.create_upload_session(TABLE)
    for block in range(3):
        _write_block(upload, block)
    upload.commit([0, 1, 2])
    emu.catalog.create_table(
        emu.project, "other", TableSchema([Column("id", "bigint"), Column("s", "string")])
    )
    download = tunnel.create_download_session(TABLE)
    path = f"/projects/{emu.project}/tables/{TABLE}"
    params = {"data": "", "downloadid": download.id, "rowrange": f"(0,{3 * ROWS})"}
    result: dict[str, requests.Response] = {}
    plain = {"Accept-Encoding": "identity"}  # uncompressed: the full 3 MB go over the wire

    def hold() -> None:
        result["held"] = signed(emu, "GET", path, params, headers=plain, timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()  # 3 MB at 1 MB/s: the table's one slot is taken for about 3 s
    try:
        wait_until(
            lambda: _service(emu)["in_flight"].get(f"{emu.project}.{TABLE}") == 1,
            timeout=20,
            message="the first download to take the table's stream slot",
        )
        refused = signed(emu, "GET", path, {**params, "rowrange": "(0,10)"})
        assert refused.status_code == 429
        assert refused.json()["Code"] == "FlowExceeded"
        assert refused.headers["Retry-After"] == "1"
        # Session requests are not streams, and the limit is per table.
        other = tunnel.create_upload_session("other")
        _write_block(other, 0)
        assert other.get_block_list() == [0]
        assert _service(emu)["in_flight"].get(f"{emu.project}.{TABLE}") == 1
    finally:
        holder.join()
    assert result["held"].status_code == 200 and len(result["held"].content) > 3_000_000
    assert _service(emu)["in_flight"] == {}  # the slot is given back after the body


def test_our_client_and_pyodps_complete_under_a_stream_limit(make_emulator):
    # A block takes a second at 1 MB/s, so the writers' PUTs overlap and one is refused.
    emu, tunnel = make_emulator(stream_limit=1, upload_bandwidth="1MB")
    ours = tunnel.create_upload_session(TABLE)
    _two_writers(lambda block, together: _write_block(ours, block, together))
    ours.commit([0, 1])
    refused = [e for e in _log(emu) if e.get("error") == "FlowExceeded"]
    assert refused and all(e["method"] == "PUT" for e in refused)
    odps = PyODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    theirs = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint).create_upload_session(TABLE)

    blocks: list[int] = []

    def pyodps_block(block: int, together: threading.Barrier) -> None:
        # Buffered: pyodps retries a block PUT only when it holds the whole block, which
        # it sends on close.
        with theirs.open_record_writer(initial_block_id=10 * block) as writer:
            for i in range(ROWS):
                writer.write(theirs.new_record([(2 + block) * ROWS + i, "y" * 90]))
            together.wait(timeout=30)
        blocks.extend(writer.get_blocks_written())

    before = len(refused)
    _two_writers(pyodps_block)
    theirs.commit(blocks)
    refused = [e for e in _log(emu) if e.get("error") == "FlowExceeded"]
    assert len(refused) > before  # pyodps was refused too, and retried
    ids = emu.catalog.read_table(emu.project, TABLE).column("id").to_pylist()
    assert sorted(ids) == list(range(4 * ROWS))


def test_request_latency_is_added_to_every_request(make_emulator):
    emu, tunnel = make_emulator(request_latency=0.3)
    started = time.monotonic()
    upload = tunnel.create_upload_session(TABLE)
    upload.reload()
    elapsed = time.monotonic() - started
    requests_made = [e for e in _log(emu) if e["method"] in ("GET", "POST")]
    assert len(requests_made) >= 2
    assert all(e["ms"] >= 300 for e in requests_made)
    assert len(requests_made) * 0.3 <= elapsed < len(requests_made) * 0.3 + 5


def test_cli_flags_reach_the_server(tmp_path):
    args = [
        "--upload-bandwidth",
        "8MB",
        "--download-bandwidth",
        "16MiB",
        "--stream-limit",
        "4",
        "--stream-limit-scope",
        "project",
        "--request-latency",
        "0.05",
    ]
    parsed = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), *args])
    config = EmulatorConfig(
        data_dir=tmp_path, **{name: getattr(parsed, name) for name in SERVE_OPTIONS}
    )
    model = ServiceModel.from_config(config).to_json()
    assert model == {
        "upload_bandwidth": 8_000_000,
        "download_bandwidth": 16 * 2**20,
        "stream_limit": 4,
        "stream_limit_scope": "project",
        "request_latency": 0.05,
        "in_flight": {},
    }
    assert option_args(config)[-10:] == [
        "--upload-bandwidth",
        "8000000",
        "--download-bandwidth",
        str(16 * 2**20),
        "--stream-limit",
        "4",
        "--stream-limit-scope",
        "project",
        "--request-latency",
        "0.05",
    ]
    with Emulator(
        tmp_path / "child", subprocess=True, upload_bandwidth="8MB", stream_limit=4
    ) as emu:
        served = _service(emu)
    assert served["upload_bandwidth"] == 8_000_000 and served["stream_limit"] == 4
