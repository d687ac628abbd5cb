"""Upload then download throughput of our tunnel client beside pyodps, through the emulator.

Run on purpose (``python benchmarks/transfer.py [--gb 1.0] [--cases ...]``), not as a test.
A child-process emulator serves a temporary directory on loopback. For each case (client
``ours``/``pyodps`` x path ``arrow``/``record`` x ``1``/``4`` parallel writers and readers),
a fresh child process uploads ``--gb`` GB of the typical schema ``bigint, double,
string(20), boolean, datetime, decimal(18,4)`` into a new table, commits, then downloads
all of it. It reports its peak RSS during the transfers (sampled every 20 ms) and its RSS
just before them (interpreter, libraries and the generated data).

Sizes are record-wire bytes (the size of the data in the tunnel's record format), so MB/s
of every case measure the same data. Rows are generated once per child (one batch of
32768 rows, written again and again; record rows without pyarrow), so generation does
not count. Record-path rows are written and
read one row at a time (pyodps ``Record`` objects, our row lists and ``Record`` objects);
Arrow-path data moves as ``RecordBatch`` objects. ``ratio`` is ours / pyodps for the same
path and writer count. Targets (issue 5): Arrow up/down >= 2x, record up/down >= 1.0x,
client RSS < 2 x buffer size + 150 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from typing import Any

import pyarrow as pa

NAMES = ["a", "b", "c", "d", "e", "f"]
TYPES = ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"]
SCHEMA = ", ".join(f"{n} {t}" for n, t in zip(NAMES, TYPES, strict=True))
BATCH_ROWS = 32768
BUFFER_SIZE = 20 * 1024 * 1024
MB = 1e6


def sample_batch(rows: int = BATCH_ROWS) -> pa.RecordBatch:
    base = dt.datetime(2024, 1, 1)
    return pa.RecordBatch.from_pydict(
        {
            "a": pa.array(range(rows), pa.int64()),
            "b": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
            "c": pa.array([f"value-{i:014d}" for i in range(rows)], pa.string()),
            "d": pa.array([i % 2 == 0 for i in range(rows)], pa.bool_()),
            "e": pa.array(
                [base + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("ms")
            ),
            "f": pa.array([Decimal(i) / 8 for i in range(rows)], pa.decimal128(18, 4)),
        }
    )


def sample_rows(rows: int = BATCH_ROWS) -> list[list]:
    """The same values as :func:`sample_batch`, built without pyarrow (whose memory pool
    would otherwise count in the client's RSS)."""
    base = dt.datetime(2024, 1, 1)
    return [
        [i, i * 0.25, f"value-{i:014d}", i % 2 == 0, base + dt.timedelta(seconds=i), Decimal(i) / 8]
        for i in range(rows)
    ]


class PeakRss:
    """Samples this process's RSS every 20 ms: ``setup`` when started, ``peak`` since
    (or since the last :meth:`lap`)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.setup = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def lap(self) -> int:
        """The peak since the start or the last lap; the next lap starts from now."""
        peak = max(self.peak, self._proc.memory_info().rss)
        self.peak = self._proc.memory_info().rss
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def wire_bytes_per_row() -> float:
    from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
    from airflow_provider_odps_tunnel.tunnel.codec.schema import Column

    columns = [Column(n, t) for n, t in zip(NAMES, TYPES, strict=True)]
    rows = sample_rows(4096)
    return len(encode_rows(columns, rows)) / len(rows)


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def batches_for(n_rows: int, batch: pa.RecordBatch):
    while n_rows > 0:
        take = min(n_rows, batch.num_rows)
        yield batch if take == batch.num_rows else batch.slice(0, take)
        n_rows -= take


# -- one case, in a child process ---------------------------------------------------------


def run_ours(spec: dict[str, Any]) -> tuple[float, float]:
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, iter_arrow_batches

    tunnel = TableTunnel(
        ODPS(spec["ak"], spec["sk"], spec["project"], tunnel_endpoint=spec["tunnel_endpoint"])
    )
    table, n, writers, path = spec["table"], spec["rows"], spec["writers"], spec["path"]
    batch = sample_batch() if path == "arrow" else None
    rows = sample_rows() if path == "record" else None
    spec["rss"] = PeakRss()
    started = time.perf_counter()
    session = tunnel.create_upload_session(table)
    blocks: list[int] = []
    lock = threading.Lock()

    def upload(share: int) -> None:
        if path == "arrow":
            with session.open_arrow_writer(buffer_size=BUFFER_SIZE) as writer:
                for part in batches_for(share, batch):
                    writer.write(part)
        else:
            with session.open_record_writer(buffer_size=BUFFER_SIZE) as writer:
                left = share
                while left > 0:
                    for row in rows[: min(left, len(rows))]:
                        writer.write(row)
                    left -= len(rows)
        with lock:
            blocks.extend(writer.get_blocks_written())

    run_threads(upload, shares(n, writers))
    session.commit(blocks)
    up = time.perf_counter() - started
    spec["rss_up"] = spec["rss"].lap()

    started = time.perf_counter()
    down_session = tunnel.create_download_session(table)
    got = 0
    if path == "arrow":
        for part in iter_arrow_batches(down_session, n_workers=writers):
            got += part.num_rows
    else:
        counts = []

        def download(rng: tuple[int, int]) -> None:
            c = 0
            with down_session.open_record_reader(*rng) as reader:
                for _record in reader:
                    c += 1
            counts.append(c)

        run_threads(download, ranges(down_session.count, writers))
        got = sum(counts)
    down = time.perf_counter() - started
    assert got == n, (got, n)
    return up, down


def run_pyodps(spec: dict[str, Any]) -> tuple[float, float]:
    from odps import ODPS as PyODPS
    from odps.tunnel import TableTunnel as PyTableTunnel

    odps = PyODPS(
        spec["ak"],
        spec["sk"],
        spec["project"],
        endpoint=spec["endpoint"],
        tunnel_endpoint=spec["tunnel_endpoint"],
    )
    tunnel = PyTableTunnel(odps)
    table, n, writers, path = spec["table"], spec["rows"], spec["writers"], spec["path"]
    batch = sample_batch() if path == "arrow" else None
    session = tunnel.create_upload_session(table)
    records = None
    if path == "record":
        records = [session.new_record(row) for row in sample_rows()]
    spec["rss"] = PeakRss()
    started = time.perf_counter()
    blocks: list[int] = []
    lock = threading.Lock()

    def upload(args: tuple[int, int]) -> None:
        k, share = args
        if path == "arrow":
            writer = session.open_arrow_writer(buffer_size=BUFFER_SIZE, initial_block_id=k * 1000)
            with writer:
                for part in batches_for(share, batch):
                    writer.write(part)
        else:
            writer = session.open_record_writer(buffer_size=BUFFER_SIZE, initial_block_id=k * 1000)
            with writer:
                left = share
                while left > 0:
                    for record in records[: min(left, len(records))]:
                        writer.write(record)
                    left -= len(records)
        with lock:
            blocks.extend(writer.get_blocks_written())

    run_threads(upload, list(enumerate(shares(n, writers))))
    session.commit(blocks)
    up = time.perf_counter() - started
    spec["rss_up"] = spec["rss"].lap()

    started = time.perf_counter()
    down_session = tunnel.create_download_session(table)
    counts: list[int] = []

    def download(rng: tuple[int, int]) -> None:
        c = 0
        if path == "arrow":
            with down_session.open_arrow_reader(*rng) as reader:
                for part in reader:
                    c += part.num_rows
        else:
            with down_session.open_record_reader(*rng) as reader:
                for _record in reader:
                    c += 1
        counts.append(c)

    run_threads(download, ranges(down_session.count, writers))
    down = time.perf_counter() - started
    assert sum(counts) == n, (sum(counts), n)
    return up, down


def ranges(count: int, parts: int) -> list[tuple[int, int]]:
    out, start = [], 0
    for share in shares(count, parts):
        out.append((start, share))
        start += share
    return out


def run_threads(target: Any, args: list[Any]) -> None:
    errors: list[BaseException] = []

    def wrapped(arg: Any) -> None:
        try:
            target(arg)
        except BaseException as exc:  # reported by the parent
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def child(spec_json: str) -> None:
    spec = json.loads(spec_json)
    up, down = (run_ours if spec["client"] == "ours" else run_pyodps)(spec)
    rss: PeakRss = spec["rss"]
    rss.stop()
    result = {"up": up, "down": down, "rss_up": spec["rss_up"], "rss_down": rss.peak}
    print(json.dumps({**result, "setup": rss.setup}))


# -- the parent: emulator, cases, table ----------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="GB (record-wire bytes) per case")
    parser.add_argument(
        "--cases",
        default="arrow:1,arrow:4,record:1,record:4",
        help="comma-separated path:writers pairs",
    )
    parser.add_argument(
        "--clients", default="pyodps,ours", help="comma-separated clients to run (pyodps, ours)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from airflow_provider_odps_tunnel.emulator import Emulator
    from airflow_provider_odps_tunnel.emulator.cli import parse_columns
    from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

    per_row = wire_bytes_per_row()
    n_rows = int(args.gb * 1e9 / per_row)
    size_mb = n_rows * per_row / MB
    print(f"{args.gb} GB per case: {n_rows} rows of {per_row:.1f} record-wire bytes")
    results: dict[tuple[str, int, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Emulator(tmp, subprocess=True) as emu:
        for case in args.cases.split(","):
            path, writers = case.split(":")
            for client in args.clients.split(","):
                table = f"bench_{client}_{path}_{writers}"
                emu.catalog.create_table(
                    emu.project, table, TableSchema(parse_columns(SCHEMA)), if_not_exists=True
                )
                spec = {
                    "client": client,
                    "path": path,
                    "writers": int(writers),
                    "rows": n_rows,
                    "table": table,
                    "ak": emu.access_id,
                    "sk": emu.secret_access_key,
                    "project": emu.project,
                    "endpoint": emu.endpoint,
                    "tunnel_endpoint": emu.tunnel_endpoint,
                }
                out = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    print(f"{client} {case} failed:\n{out.stderr[-3000:]}")
                    continue
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results[(path, int(writers), client)] = result
                print(
                    f"  {client:6} {path:6} x{writers}: up {size_mb / result['up']:7.1f} MB/s  "
                    f"down {size_mb / result['down']:7.1f} MB/s  "
                    f"peak rss up {result['rss_up'] / MB:4.0f} MB, "
                    f"down {result['rss_down'] / MB:4.0f} MB ({result['setup'] / MB:.0f} before)",
                    flush=True,
                )
                emu.catalog.drop_table(emu.project, table, if_exists=True)
    report(results, size_mb)


def report(results: dict, size_mb: float) -> None:
    print()
    print(
        "| path | writers | client | up MB/s | down MB/s | up ratio | down ratio "
        "| peak RSS up MB | peak RSS down MB | RSS before MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (path, writers, client), r in sorted(results.items()):
        base = results.get((path, writers, "pyodps"))
        up_ratio = down_ratio = ""
        if client == "ours" and base:
            up_ratio = f"{base['up'] / r['up']:.2f}x"
            down_ratio = f"{base['down'] / r['down']:.2f}x"
        print(
            f"| {path} | {writers} | {client} | {size_mb / r['up']:.1f} | "
            f"{size_mb / r['down']:.1f} | {up_ratio} | {down_ratio} | {r['rss_up'] / MB:.0f} "
            f"| {r['rss_down'] / MB:.0f} | {r['setup'] / MB:.0f} |"
        )
    print(
        f"\nRSS target: < 2 x {BUFFER_SIZE / MB:.0f} MB buffer + 150 MB = "
        f"{(2 * BUFFER_SIZE + 150e6) / MB:.0f} MB per client process"
    )


if __name__ == "__main__":
    main()
