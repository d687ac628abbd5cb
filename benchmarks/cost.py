"""What a transfer costs: client CPU, emulator CPU, wall time and peak memory, ours beside pyodps.

Run on purpose: ``python benchmarks/cost.py [--rows 1000000] [--record-rows 200000]
[--repeat 3]``; ``--quick`` is 20,000 and 5,000 rows. A child-process emulator serves a
temporary directory on loopback. Each round runs every client (``pyodps``, ``ours``) in a
fresh child process, the order alternating from round to round; the child runs the phases
below one after another, each timed on its own. Every figure is the median (min–max) over
the rounds.

Schema: the typical one, ``bigint, double, string of 20, boolean, datetime,
decimal(18,4)``. Data is generated before timing (Records too: pyodps's and ours are built
untimed, as a caller's Records would be).

Phases, and the work of each (the same on both sides unless the row says so):

* ``arrow up``: ``--rows`` rows as ``RecordBatch`` objects of 32,768 rows, into 4 blocks
  (one ``open_arrow_writer(block_id=k)`` after another, a quarter of the rows each), then
  commit.
* ``arrow down``: the whole table with one ``open_arrow_reader(0, count)``, iterated batch
  by batch.
* ``record up, Records`` / ``record up, tuples``: ``--record-rows`` rows written one at a
  time into one ``open_record_writer(0)``, then commit: the same 32,768 prepared rows again
  and again, so the data held before timing stays small. pyodps writes Records only; ours
  runs both input kinds.
* ``record down, Records``: the record table with one ``open_record_reader(0, count)``,
  iterated as Records (each record's values are touched once, ``record.values``).
* ``record down, tuples`` (ours only, reported): the same read with ``iter_tuples()``.

Measured per phase: wall seconds; client CPU seconds (``time.process_time()`` of the
child, its threads included); emulator CPU seconds (``/proc/<pid>/stat`` of the emulator
process, before and after the phase: the work it did for that phase); peak RSS of the
client and of the emulator (sampled every 20 ms). The ratios pyodps ÷ ours are paired per
round. ``--check`` exits non-zero when a target of issue 13 is not met.

The client's memory bound (2 × the writers' 20 MB buffer + 150 MB, from issue 5) is for a
process holding the interpreter, pyarrow and the client, and what a transfer costs; the
prepared data of this script (tens of MB of rows and Records, the same for both clients)
is not part of it. It is checked as the RSS once the modules are imported plus the
highest growth of any phase over the RSS at the start of the phases
(``client_transfer_rss`` in the report).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from typing import Any

import _measure as measure
import pyarrow as pa

NAMES = ["a", "b", "c", "d", "e", "f"]
TYPES = ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"]
SCHEMA = ", ".join(f"{n} {t}" for n, t in zip(NAMES, TYPES, strict=True))
BATCH_ROWS = 32768
ARROW_BLOCKS = 4
CLIENTS = ("pyodps", "ours")
# (phase, who runs it, the work, when the sides differ)
PHASES = [
    ("arrow up", CLIENTS, "RecordBatches, 4 blocks"),
    ("arrow down", CLIENTS, "one reader, RecordBatches"),
    ("record up, Records", CLIENTS, "Records built untimed"),
    ("record up, tuples", ("ours",), "ours only: tuples (pyodps takes Records only)"),
    ("record down, Records", CLIENTS, "Records, .values of each"),
    ("record down, tuples", ("ours",), "ours only: iter_tuples()"),
]
# Targets of issue 13: (phase, minimum client CPU ratio pyodps ÷ ours, emulator CPU
# ceiling in seconds per this many rows, or None).
CPU_TARGETS = {
    "arrow up": (8.0, (0.10, 1_000_000)),
    "arrow down": (10.0, (0.08, 1_000_000)),
    "record up, Records": (5.0, (0.20, 200_000)),
    "record up, tuples": (5.0, (0.20, 200_000)),
    "record down, Records": (3.0, None),
}
WALL_TARGETS = {"arrow up": 3.0, "arrow down": 3.0}
CLIENT_RSS_MB = 2 * 20 + 150  # 2 x the writers' 20 MB buffer + 150 MB
EMULATOR_RSS_MB = 300


def sample_rows(rows: int) -> list[tuple]:
    base = dt.datetime(2024, 1, 1)
    return [
        (i, i * 0.25, f"value-{i:014d}", i % 2 == 0, base + dt.timedelta(seconds=i), Decimal(i) / 8)
        for i in range(rows)
    ]


def sample_batch(rows: int = BATCH_ROWS) -> pa.RecordBatch:
    columns = list(zip(*sample_rows(rows), strict=True))
    types = [
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
        pa.timestamp("ms"),
        pa.decimal128(18, 4),
    ]
    return pa.RecordBatch.from_arrays(
        [pa.array(col, t) for col, t in zip(columns, types, strict=True)], names=NAMES
    )


def batches(n_rows: int, batch: pa.RecordBatch) -> Any:
    while n_rows > 0:
        take = min(n_rows, batch.num_rows)
        yield batch if take == batch.num_rows else batch.slice(0, take)
        n_rows -= take


def cycle(n_rows: int, rows: list) -> Any:
    """``rows`` again and again, ``n_rows`` in all."""
    for k in range(n_rows):
        yield rows[k % len(rows)]


def quarters(total: int, n: int = ARROW_BLOCKS) -> list[int]:
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


# -- one client's phases, in a child process -----------------------------------------------


class Phases:
    """Runs and measures the phases of one client in this process."""

    def __init__(self, spec: dict[str, Any], imports_rss: int):
        self.spec = spec
        self.imports_rss = imports_rss
        self.results: dict[str, dict[str, Any]] = {}
        self.client_rss = measure.RssSampler()
        self.server_rss = measure.RssSampler(spec["server_pid"])

    def run(self, phase: str, fn: Any, rows: int) -> None:
        self.client_rss.lap()
        self.server_rss.lap()
        sample, got = measure.timed(fn, self.spec["server_pid"])
        measure.require(got == rows, f"{self.spec['client']} {phase}: {got} rows, not {rows}")
        self.results[phase] = {
            **sample.to_json(),
            "client_rss": self.client_rss.lap(),
            "server_rss": self.server_rss.lap(),
        }

    def finish(self) -> dict[str, Any]:
        self.client_rss.stop()
        self.server_rss.stop()
        return {
            "phases": self.results,
            "client_setup_rss": self.client_rss.setup,
            "client_imports_rss": self.imports_rss,
        }


def arrow_up(tunnel: Any, spec: dict[str, Any], batch: pa.RecordBatch) -> int:
    """The Arrow upload phase, the same code for both clients: 4 blocks, then commit."""
    session = tunnel.create_upload_session(spec["tables"]["arrow"])
    for k, share in enumerate(quarters(spec["rows"])):
        with session.open_arrow_writer(k) as writer:
            for part in batches(share, batch):
                writer.write(part)
    session.commit(list(range(ARROW_BLOCKS)))
    return spec["rows"]


def arrow_down(tunnel: Any, spec: dict[str, Any]) -> int:
    """The Arrow download phase: the whole table through one reader."""
    session = tunnel.create_download_session(spec["tables"]["arrow"])
    with session.open_arrow_reader(0, session.count) as reader:
        return sum(part.num_rows for part in reader)


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_odps_tunnel.tunnel import ODPS, Record, TableTunnel

    imports_rss = measure.pid_rss()
    tunnel = TableTunnel(
        ODPS(spec["ak"], spec["sk"], spec["project"], tunnel_endpoint=spec["tunnel_endpoint"])
    )
    rows, record_rows = spec["rows"], spec["record_rows"]
    batch = sample_batch()
    tuples = sample_rows(min(record_rows, BATCH_ROWS))
    schema = tunnel.create_upload_session(spec["tables"]["record_records"]).schema
    records = [Record(schema=schema, values=row) for row in tuples]
    phases = Phases(spec, imports_rss)

    def record_up(table: str, data: list) -> Any:
        def upload() -> int:
            session = tunnel.create_upload_session(table)
            with session.open_record_writer(0) as writer:
                for row in cycle(record_rows, data):
                    writer.write(row)
            session.commit([0])
            return record_rows

        return upload

    def record_down_records() -> int:
        session = tunnel.create_download_session(spec["tables"]["record_records"])
        n = 0
        with session.open_record_reader(0, session.count) as reader:
            for record in reader:
                record.values  # noqa: B018 - touched, as a caller would
                n += 1
        return n

    def record_down_tuples() -> int:
        session = tunnel.create_download_session(spec["tables"]["record_records"])
        with session.open_record_reader(0, session.count) as reader:
            return sum(1 for _ in reader.iter_tuples())

    phases.run("arrow up", lambda: arrow_up(tunnel, spec, batch), rows)
    phases.run("arrow down", lambda: arrow_down(tunnel, spec), rows)
    phases.run(
        "record up, Records", record_up(spec["tables"]["record_records"], records), record_rows
    )
    phases.run("record up, tuples", record_up(spec["tables"]["record_tuples"], tuples), record_rows)
    phases.run("record down, Records", record_down_records, record_rows)
    phases.run("record down, tuples", record_down_tuples, record_rows)
    return phases.finish()


def run_pyodps(spec: dict[str, Any]) -> dict[str, Any]:
    from odps import ODPS as PyODPS
    from odps.models import Record
    from odps.tunnel import TableTunnel as PyTableTunnel

    imports_rss = measure.pid_rss()
    odps = PyODPS(
        spec["ak"],
        spec["sk"],
        spec["project"],
        endpoint=spec["endpoint"],
        tunnel_endpoint=spec["tunnel_endpoint"],
    )
    tunnel = PyTableTunnel(odps)
    rows, record_rows = spec["rows"], spec["record_rows"]
    batch = sample_batch()
    schema = tunnel.create_upload_session(spec["tables"]["record_records"]).schema
    records = [
        Record(schema=schema, values=row) for row in sample_rows(min(record_rows, BATCH_ROWS))
    ]
    phases = Phases(spec, imports_rss)

    def record_up() -> int:
        session = tunnel.create_upload_session(spec["tables"]["record_records"])
        with session.open_record_writer(0) as writer:
            for record in cycle(record_rows, records):
                writer.write(record)
        session.commit([0])
        return record_rows

    def record_down_records() -> int:
        session = tunnel.create_download_session(spec["tables"]["record_records"])
        n = 0
        with session.open_record_reader(0, session.count) as reader:
            for record in reader:
                record.values  # noqa: B018 - touched, as a caller would
                n += 1
        return n

    phases.run("arrow up", lambda: arrow_up(tunnel, spec, batch), rows)
    phases.run("arrow down", lambda: arrow_down(tunnel, spec), rows)
    phases.run("record up, Records", record_up, record_rows)
    phases.run("record down, Records", record_down_records, record_rows)
    return phases.finish()


def child(spec_json: str) -> None:
    spec = json.loads(spec_json)
    print(json.dumps((run_ours if spec["client"] == "ours" else run_pyodps)(spec)))


# -- the parent ------------------------------------------------------------------------------


def run_client(emu: Any, client: str, round_: int, args: argparse.Namespace) -> dict[str, Any]:
    """One client's phases in a fresh child process, on tables of its own."""
    from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

    tables = {
        kind: f"cost_{client}_{kind}_{round_}"
        for kind in ("arrow", "record_records", "record_tuples")
    }
    for table in tables.values():
        emu.catalog.create_table(emu.project, table, TableSchema(parse_columns(SCHEMA)))
    spec = {
        "client": client,
        "rows": args.rows,
        "record_rows": args.record_rows,
        "tables": tables,
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
    measure.require(out.returncode == 0, f"{client} round {round_} failed:\n{out.stderr[-3000:]}")
    for table in tables.values():
        emu.catalog.drop_table(emu.project, table, if_exists=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  round {round_ + 1}: {client} done", flush=True)
    return result


def figures(runs: list[dict[str, Any]], phase: str, key: str) -> list[float]:
    return [r["phases"][phase][key] for r in runs]


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.rows} Arrow rows, {args.record_rows} record rows of the typical schema; "
        f"{measure.LOOPBACK}; median (min–max) of {args.repeat} rounds, clients alternated\n"
    )
    print(
        "| phase | client | work | wall s | client CPU s | emulator CPU s "
        "| CPU pyodps÷ours | wall pyodps÷ours | client peak RSS MB | emulator peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for phase, who, work in PHASES:
        for client in (c for c in who if c in results):
            runs = results[client]
            cpu_ratio = wall_ratio = ""
            if client == "ours" and "pyodps" in results:
                theirs = "record up, Records" if phase.startswith("record up") else phase
                if theirs in results["pyodps"][0]["phases"]:
                    cpu_ratio = measure.spread(ratio(results, phase, "cpu"), ".1f", "×")
                    wall_ratio = measure.spread(ratio(results, phase, "wall"), ".1f", "×")
            print(
                f"| {phase} | {client} | {work} "
                f"| {measure.spread(figures(runs, phase, 'wall'), '.3f')} "
                f"| {measure.spread(figures(runs, phase, 'cpu'), '.3f')} "
                f"| {measure.spread(figures(runs, phase, 'server_cpu'), '.3f')} "
                f"| {cpu_ratio} | {wall_ratio} "
                f"| {measure.spread((v / measure.MB for v in figures(runs, phase, 'client_rss')), '.0f')} "
                f"| {measure.spread((v / measure.MB for v in figures(runs, phase, 'server_rss')), '.0f')} |"
            )
    print()
    for client, runs in results.items():
        imports = measure.spread((r["client_imports_rss"] / measure.MB for r in runs), ".0f")
        setup = measure.spread((r["client_setup_rss"] / measure.MB for r in runs), ".0f")
        total = measure.spread((transfer_rss(r) for r in runs), ".0f")
        print(
            f"{client}: RSS after imports {imports} MB, with the prepared data {setup} MB; "
            f"client_transfer_rss (imports + highest phase growth) {total} MB"
        )


def transfer_rss(run: dict[str, Any]) -> float:
    """MB: the RSS after the imports plus the highest growth of a phase over the RSS the
    phases started from (the script's prepared data left out)."""
    growth = max(p["client_rss"] for p in run["phases"].values()) - run["client_setup_rss"]
    return (run["client_imports_rss"] + max(growth, 0)) / measure.MB


def ratio(results: dict[str, list[dict[str, Any]]], phase: str, key: str) -> list[float]:
    """pyodps ÷ ours per round; pyodps's record upload takes Records in both comparisons."""
    theirs = "record up, Records" if phase.startswith("record up") else phase
    return measure.paired_ratios(
        figures(results["pyodps"], theirs, key), figures(results["ours"], phase, key)
    )


def check(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    measure.require(set(CLIENTS) <= set(results), "--check needs both clients")
    targets = measure.Targets()
    for phase, (cpu_ratio, server) in CPU_TARGETS.items():
        targets.at_least(
            f"{phase}: client CPU pyodps÷ours (median)",
            measure.median(ratio(results, phase, "cpu")),
            cpu_ratio,
        )
        if server is not None:
            seconds, per = server
            scaled = (
                seconds * args.rows / per
                if phase.startswith("arrow")
                else seconds * args.record_rows / per
            )
            targets.at_most(
                f"{phase}: emulator CPU s (median; {seconds} s per {per} rows)",
                measure.median(figures(results["ours"], phase, "server_cpu")),
                scaled,
            )
    for phase, wall in WALL_TARGETS.items():
        targets.at_least(
            f"{phase}: wall pyodps÷ours (median)",
            measure.median(ratio(results, phase, "wall")),
            wall,
        )
    peak = max(transfer_rss(r) for r in results["ours"])
    targets.at_most("ours: highest client_transfer_rss MB", peak, CLIENT_RSS_MB)
    peak = max(max(figures(results["ours"], p, "server_rss")) for p, *_ in PHASES) / measure.MB
    targets.at_most("emulator: highest peak RSS MB", peak, EMULATOR_RSS_MB)
    targets.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Arrow rows")
    parser.add_argument("--record-rows", type=int, default=200_000, help="record rows")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="clients to run")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    measure.common_args(parser, "--rows 20000 --record-rows 5000")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.quick:
        args.rows, args.record_rows = 20_000, 5_000
    clients = args.clients.split(",")
    print(measure.method(args.repeat), flush=True)
    with tempfile.TemporaryDirectory() as tmp, measure.child_emulator(tmp) as emu:
        results = measure.alternate(clients, args.repeat, lambda c, k: run_client(emu, c, k, args))
    report(results, args)
    if args.check:
        check(results, args)


if __name__ == "__main__":
    main()
