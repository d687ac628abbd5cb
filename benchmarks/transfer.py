"""Upload then download throughput of our tunnel client beside pyodps, through the emulator.

Run on purpose (``python benchmarks/transfer.py [--gb 1.0] [--cases ...] [--repeat 3]``), not
as a test; ``--quick`` is 0.005 GB of ``arrow:1,record:1``. A child-process emulator serves a
temporary directory on loopback (no service bandwidth cap). For each case (path
``arrow``/``record`` x ``1``/``4`` parallel writers and readers) each round runs both clients,
``ours`` and ``pyodps``, the order alternating from round to round; each run is a fresh child
process that uploads ``--gb`` GB of the typical schema ``bigint, double, string(20), boolean,
datetime, decimal(18,4)`` into a new table, commits, then downloads all of it. Every figure
is the median (min–max) over the rounds: MB/s, wall seconds, the client's CPU seconds
(``time.process_time()`` of the client process, its threads included), the emulator's CPU
seconds (``/proc/<pid>/stat`` of the emulator process) and the client's peak RSS (sampled
every 20 ms, upload and download apart) next to its RSS just before them (interpreter,
libraries and the generated data). The loopback ceiling (raw bytes between two child
processes) is measured in the same run.

Sizes are record-wire bytes (the size of the data in the tunnel's record format), so MB/s
of every case measure the same data. Rows are generated once per child (one batch of
32768 rows, written again and again; record rows without pyarrow), so generation does
not count. Record-path rows are written and read one row at a time: pyodps writes
``Record`` objects built before timing, ours row lists (converted by the writer, inside
the timing); both read ``Record`` objects. Arrow-path data moves as ``RecordBatch`` objects.
``ratio`` is ours / pyodps throughput for the same path and writer count, paired per round.
Targets (issue 5): Arrow up/down >= 2x, record up/down >= 1.0x, client RSS < 2 x buffer
size + 150 MB; check them with ``--min-arrow-ratio 2 --min-record-ratio 1 --max-rss-mb
192`` (a target not met exits with status 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
from decimal import Decimal
from typing import Any

import _measure as measure
import pyarrow as pa

NAMES = ["a", "b", "c", "d", "e", "f"]
TYPES = ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"]
SCHEMA = ", ".join(f"{n} {t}" for n, t in zip(NAMES, TYPES, strict=True))
BATCH_ROWS = 32768
BUFFER_SIZE = 20 * 1024 * 1024
# What each side does, per path and direction: says so where the work differs.
WORK = {
    ("arrow", "up"): "same: RecordBatches",
    ("arrow", "down"): "same data; ours iter_arrow_batches, pyodps a reader per range",
    ("record", "up"): "unequal: ours row lists, pyodps Records built untimed",
    ("record", "down"): "same: Records one at a time",
}


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


def wire_bytes_per_row() -> float:
    from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
    from airflow_provider_odps_tunnel.tunnel.codec.schema import Column

    columns = [Column(n, t) for n, t in zip(NAMES, TYPES, strict=True)]
    rows = sample_rows(4096)
    return len(encode_rows(columns, rows)) / len(rows)


def shares(total: int, n: int) -> list[int]:
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


def parts(n_rows: int, data: Any) -> Any:
    """``data`` (a RecordBatch or a list of rows) again and again, cut to ``n_rows`` in all."""
    while n_rows > 0:
        take = min(n_rows, len(data))
        yield data if take == len(data) else data[:take]
        n_rows -= take


def upload_shares(session: Any, spec: dict[str, Any], data: Any, open_writer: Any) -> None:
    """Upload ``spec["rows"]`` rows of ``data`` from ``spec["writers"]`` threads, then commit;
    ``open_writer(k)`` opens writer ``k`` on ``session`` (the same code for both clients)."""
    blocks: list[int] = []
    lock = threading.Lock()

    def upload(args: tuple[int, int]) -> None:
        k, share = args
        with open_writer(k) as writer:
            for part in parts(share, data):
                if spec["path"] == "arrow":
                    writer.write(part)
                else:
                    for row in part:
                        writer.write(row)
        with lock:
            blocks.extend(writer.get_blocks_written())

    run_threads(upload, list(enumerate(shares(spec["rows"], spec["writers"]))))
    session.commit(blocks)


def download_ranges(session: Any, spec: dict[str, Any]) -> int:
    """Read all rows as ``spec["writers"]`` ranges, one reader per thread; the row count."""
    arrow = spec["path"] == "arrow"
    counts: list[int] = []

    def download(rng: tuple[int, int]) -> None:
        c = 0
        with (session.open_arrow_reader if arrow else session.open_record_reader)(*rng) as reader:
            for part in reader:
                c += part.num_rows if arrow else 1
        counts.append(c)

    run_threads(download, ranges(session.count, spec["writers"]))
    return sum(counts)


# -- one case, in a child process ---------------------------------------------------------


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, iter_arrow_batches

    tunnel = TableTunnel(
        ODPS(spec["ak"], spec["sk"], spec["project"], tunnel_endpoint=spec["tunnel_endpoint"])
    )
    arrow = spec["path"] == "arrow"
    data = sample_batch() if arrow else sample_rows()

    def upload_all() -> None:
        session = tunnel.create_upload_session(spec["table"])
        opener = session.open_arrow_writer if arrow else session.open_record_writer
        upload_shares(session, spec, data, lambda k: opener(buffer_size=BUFFER_SIZE))

    def download_all() -> int:
        session = tunnel.create_download_session(spec["table"])
        if arrow:
            batches = iter_arrow_batches(session, n_workers=spec["writers"])
            return sum(part.num_rows for part in batches)
        return download_ranges(session, spec)

    return measure_transfer(spec, upload_all, download_all)


def run_pyodps(spec: dict[str, Any]) -> dict[str, Any]:
    from odps import ODPS as PyODPS
    from odps.models import Record
    from odps.tunnel import TableTunnel as PyTableTunnel
    from odps.types import OdpsSchema

    odps = PyODPS(
        spec["ak"],
        spec["sk"],
        spec["project"],
        endpoint=spec["endpoint"],
        tunnel_endpoint=spec["tunnel_endpoint"],
    )
    tunnel = PyTableTunnel(odps)
    arrow = spec["path"] == "arrow"
    if arrow:
        data = sample_batch()
    else:  # built untimed and without a session, as the Records a caller has
        schema = OdpsSchema.from_lists(NAMES, TYPES)
        data = [Record(schema=schema, values=row) for row in sample_rows()]

    def upload_all() -> None:
        session = tunnel.create_upload_session(spec["table"])
        opener = session.open_arrow_writer if arrow else session.open_record_writer
        upload_shares(
            session,
            spec,
            data,
            lambda k: opener(buffer_size=BUFFER_SIZE, initial_block_id=k * 1000),
        )

    def download_all() -> int:
        return download_ranges(tunnel.create_download_session(spec["table"]), spec)

    return measure_transfer(spec, upload_all, download_all)


def measure_transfer(spec: dict[str, Any], upload_all: Any, download_all: Any) -> dict[str, Any]:
    """Time the upload then the download (client and emulator CPU, peak RSS of each)."""
    rss = measure.RssSampler()
    up, _ = measure.timed(upload_all, spec["server_pid"])
    rss_up = rss.lap()
    down, got = measure.timed(download_all, spec["server_pid"])
    rss_down = rss.lap()
    rss.stop()
    measure.require(
        got == spec["rows"], f"{spec['client']} downloaded {got} of {spec['rows']} rows"
    )
    return {
        "up": up.to_json(),
        "down": down.to_json(),
        "rss_up": rss_up,
        "rss_down": rss_down,
        "setup": rss.setup,
    }


def ranges(count: int, n: int) -> list[tuple[int, int]]:
    out, start = [], 0
    for share in shares(count, n):
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
    print(json.dumps((run_ours if spec["client"] == "ours" else run_pyodps)(spec)))


# -- the parent: emulator, cases, table ----------------------------------------------------


def run_case(emu: Any, client: str, path: str, writers: int, n_rows: int, round_: int) -> dict:
    """One client's upload and download of one case, in a fresh child process."""
    from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

    table = f"bench_{client}_{path}_{writers}_{round_}"
    emu.catalog.create_table(emu.project, table, TableSchema(parse_columns(SCHEMA)))
    spec = {
        "client": client,
        "path": path,
        "writers": writers,
        "rows": n_rows,
        "table": table,
        "ak": emu.access_id,
        "sk": emu.secret_access_key,
        "project": emu.project,
        "endpoint": emu.endpoint,
        "tunnel_endpoint": emu.tunnel_endpoint,
        "server_pid": emu.pid,
    }
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    measure.require(out.returncode == 0, f"{client} {path}:{writers} failed:\n{out.stderr[-3000:]}")
    emu.catalog.drop_table(emu.project, table, if_exists=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for direction in ("up", "down"):
        result[direction] = measure.Sample(**result[direction])
    return result


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
    parser.add_argument("--min-arrow-ratio", type=float, help="target: Arrow up/down ratios")
    parser.add_argument("--min-record-ratio", type=float, help="target: record up/down ratios")
    parser.add_argument("--max-rss-mb", type=float, help="target: our client's peak RSS")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    measure.common_args(parser, "--gb 0.005 --cases arrow:1,record:1")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.quick:
        args.gb = 0.005
        if args.cases == parser.get_default("cases"):
            args.cases = "arrow:1,record:1"

    per_row = wire_bytes_per_row()
    n_rows = int(args.gb * 1e9 / per_row)
    size_mb = n_rows * per_row / measure.MB
    clients = args.clients.split(",")
    print(f"{args.gb} GB per case: {n_rows} rows of {per_row:.1f} record-wire bytes")
    print(measure.method(args.repeat))
    ceiling = [measure.loopback_ceiling(int(size_mb * measure.MB)) for _ in range(args.repeat)]
    print(measure.ceiling_line(int(size_mb * measure.MB), ceiling), flush=True)
    results: dict[tuple[str, int], dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp, measure.child_emulator(tmp) as emu:
        for case in args.cases.split(","):
            path, writers = case.split(":")
            results[(path, int(writers))] = runs = measure.alternate(
                clients,
                args.repeat,
                lambda client, k, path=path, writers=writers: run_case(
                    emu, client, path, int(writers), n_rows, k
                ),
            )
            for client in clients:
                up, down = (
                    measure.spread(measure.rates(size_mb, (x[d] for x in runs[client])), ".1f")
                    for d in ("up", "down")
                )
                print(
                    f"  {client:6} {path:6} x{writers}: up {up} MB/s, down {down} MB/s",
                    flush=True,
                )
    report(results, size_mb, args.repeat)
    check_targets(results, args)


def ratios(runs: dict[str, list[dict]], direction: str) -> list[float] | None:
    """Ours / pyodps throughput per round (pyodps wall / ours wall), None without both."""
    if "ours" not in runs or "pyodps" not in runs:
        return None
    theirs, ours = (measure.walls(r[direction] for r in runs[c]) for c in ("pyodps", "ours"))
    return measure.paired_ratios(theirs, ours)


def report(results: dict, size_mb: float, repeat: int) -> None:
    for direction, title in (("up", "upload"), ("down", "download")):
        print(
            f"\n{title}, {size_mb:.0f} MB per case ({measure.LOOPBACK}); "
            f"median (min–max) of {repeat} rounds, clients alternated\n"
        )
        print(
            "| path | writers | client | work | MB/s | ratio ours/pyodps | wall s "
            "| client CPU s | server CPU s | peak RSS MB | RSS before MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for (path, writers), runs in sorted(results.items()):
            ratio = ratios(runs, direction)
            for client, r in sorted(runs.items()):
                samples = [x[direction] for x in r]
                shown = measure.spread(ratio, ".2f", "x") if client == "ours" and ratio else ""
                print(
                    f"| {path} | {writers} | {client} | {WORK[(path, direction)]} "
                    f"| {measure.spread(measure.rates(size_mb, samples), '.1f')} | {shown} "
                    f"| {measure.spread(measure.walls(samples), '.2f')} "
                    f"| {measure.spread(s.cpu for s in samples)} "
                    f"| {measure.spread(s.server_cpu for s in samples)} "
                    f"| {measure.spread((x['rss_' + direction] / measure.MB for x in r), '.0f')} "
                    f"| {measure.spread((x['setup'] / measure.MB for x in r), '.0f')} |"
                )
    print(
        f"\nRSS target: < 2 x {BUFFER_SIZE / measure.MB:.0f} MB buffer + 150 MB = "
        f"{(2 * BUFFER_SIZE + 150e6) / measure.MB:.0f} MB per client process"
    )


def check_targets(results: dict, args: argparse.Namespace) -> None:
    """Verdicts on the targets given on the command line (median ratios, highest RSS)."""
    targets = measure.Targets()
    minimum = {"arrow": args.min_arrow_ratio, "record": args.min_record_ratio}
    for (path, writers), runs in sorted(results.items()):
        for direction in ("up", "down"):
            ratio = ratios(runs, direction)
            if minimum[path] is not None and ratio:
                label = f"{path} x{writers} {direction} median ratio ({measure.LOOPBACK})"
                targets.at_least(label, measure.median(ratio), minimum[path])
            if args.max_rss_mb is not None and "ours" in runs:
                peak = max(x[f"rss_{direction}"] for x in runs["ours"]) / measure.MB
                label = f"ours {path} x{writers} {direction} highest peak RSS MB"
                targets.at_most(label, peak, args.max_rss_mb)
    targets.finish()


if __name__ == "__main__":
    main()
