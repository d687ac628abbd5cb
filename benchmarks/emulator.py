"""Throughput and memory of the emulator under pyodps, with the loopback ceiling beside them.

Run on purpose (``python benchmarks/emulator.py [--gb 1.0]``), not as a test. A child-process
emulator serves a temporary directory; pyodps uploads then downloads ``--gb`` GB (wire bytes)
of the typical schema ``bigint, double, string(20), boolean, datetime, decimal(18,4)`` on the
Arrow path and on the record path. For each phase it prints MB/s and the emulator's peak RSS
(sampled every 50 ms with psutil) and CPU use (100% = one core busy: the
emulator is the bottleneck only near that). The loopback ceiling is the same number of bytes pushed
through one plain chunked HTTP PUT to a handler that discards them, in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import psutil
import pyarrow as pa
import requests
import uvicorn

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.emulator.cli import parse_columns
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

SCHEMA = "a bigint, b double, c string, d boolean, e datetime, f decimal(18,4)"
BATCH_ROWS = 65536
MB = 1e6


class PeakRss:
    """Samples a process's RSS in a thread; ``peak`` is the highest since ``reset``."""

    def __init__(self, pid: int):
        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except psutil.Error:
                return

    def reset(self) -> None:
        self.peak = self._proc.memory_info().rss
        self._cpu = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        times = self._proc.cpu_times()
        return times.user + times.system

    def cpu_since_reset(self) -> float:
        return self.cpu_seconds() - self._cpu

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def sample_batch(rows: int) -> pa.RecordBatch:
    base = dt.datetime(2024, 1, 1)
    return pa.RecordBatch.from_pydict(
        {
            "a": pa.array(range(rows), pa.int64()),
            "b": pa.array([i * 0.37 for i in range(rows)], pa.float64()),
            "c": pa.array([f"{i:020d}" for i in range(rows)], pa.string()),
            "d": pa.array([i % 2 == 0 for i in range(rows)], pa.bool_()),
            "e": pa.array(
                [base + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("ms")
            ),
            "f": pa.array([Decimal(i % 100000) / 10000 for i in range(rows)], pa.decimal128(18, 4)),
        }
    )


def timed(label: str, nbytes: float, rss: PeakRss | None, func: Callable[[], None]) -> None:
    if rss is not None:
        rss.reset()
    started = time.monotonic()
    func()
    elapsed = time.monotonic() - started
    peak = ""
    if rss is not None:
        busy = rss.cpu_since_reset() / elapsed * 100
        peak = f"  server peak RSS {rss.peak / MB:6.1f} MB, server CPU {busy:5.1f}%"
    print(
        f"{label:<28} {nbytes / MB:9.1f} MB in {elapsed:7.2f} s = {nbytes / MB / elapsed:8.1f} MB/s{peak}"
    )


def loopback_ceiling(nbytes: int) -> None:
    """One chunked PUT of ``nbytes`` to a discard handler on the same uvicorn stack."""

    async def discard(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(discard, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    chunk = b"x" * 65536

    def body() -> Iterator[bytes]:
        left = nbytes
        while left > 0:
            yield chunk[: min(left, len(chunk))]
            left -= len(chunk)

    url = f"http://127.0.0.1:{sock.getsockname()[1]}/discard"
    timed(
        "loopback ceiling (PUT)",
        nbytes,
        None,
        lambda: requests.put(url, data=body(), timeout=600).raise_for_status(),
    )
    server.should_exit = True
    thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="wire gigabytes per transfer")
    parser.add_argument("--paths", default="arrow,record", help="arrow, record or both")
    args = parser.parse_args()

    from odps import ODPS
    from odps.tunnel import TableTunnel

    batch = sample_batch(BATCH_ROWS)
    arrow_row_bytes = batch.serialize().size / BATCH_ROWS
    sample = [list(r.values()) for r in batch.slice(0, 1000).to_pylist()]
    record_row_bytes = (
        len(encode_rows(TableSchema(parse_columns(SCHEMA)).simple_columns, sample)) / 1000
    )
    target = args.gb * 1e9
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    print(f"emulator benchmark: {args.gb} GB per transfer, schema ({SCHEMA})")
    loopback_ceiling(int(target))

    with tempfile.TemporaryDirectory(prefix="emulator-bench-") as data_dir:
        emu = Emulator(data_dir, subprocess=True, log_level="warning")
        schema = TableSchema(parse_columns(SCHEMA))
        for path in paths:
            emu.catalog.create_table(emu.project, f"bench_{path}", schema)
        with emu:
            rss = PeakRss(emu.pid)
            entry = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
            tunnel = TableTunnel(entry, endpoint=emu.tunnel_endpoint)
            if "arrow" in paths:
                batches = int(target / arrow_row_bytes / BATCH_ROWS) or 1
                nbytes = batches * BATCH_ROWS * arrow_row_bytes

                def arrow_upload() -> None:
                    session = tunnel.create_upload_session("bench_arrow")
                    with session.open_arrow_writer(0) as writer:
                        for _ in range(batches):
                            writer.write(batch)
                    session.commit([0])

                def arrow_download() -> None:
                    session = tunnel.create_download_session("bench_arrow")
                    with session.open_arrow_reader(0, session.count) as reader:
                        rows = sum(b.num_rows for b in reader)
                    assert rows == batches * BATCH_ROWS, rows

                timed("arrow upload (pyodps)", nbytes, rss, arrow_upload)
                timed("arrow download (pyodps)", nbytes, rss, arrow_download)
            if "record" in paths:
                rows = int(target / record_row_bytes)
                nbytes = rows * record_row_bytes

                def record_upload() -> None:
                    session = tunnel.create_upload_session("bench_record")
                    records = [session.new_record(v) for v in sample]
                    with session.open_record_writer(0) as writer:
                        for i in range(rows):
                            writer.write(records[i % len(records)])
                    session.commit([0])

                def record_download() -> None:
                    session = tunnel.create_download_session("bench_record")
                    count = 0
                    with session.open_record_reader(0, session.count) as reader:
                        for _ in reader:
                            count += 1
                    assert count == rows, count

                timed("record upload (pyodps)", nbytes, rss, record_upload)
                timed("record download (pyodps)", nbytes, rss, record_download)
            rss.close()


if __name__ == "__main__":
    main()
