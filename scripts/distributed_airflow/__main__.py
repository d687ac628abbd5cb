"""``make demo-distributed``: the load chain on a distributed Airflow, measured.

Starts the emulator with a per-connection upload cap, PostgreSQL, Redis and Airflow with
Celery workers (see ``cluster``), all in one throw-away directory, and runs the DAG
``odps_distributed_load`` over the same source several times:

1. with 1, then 2, then 3 workers: throughput, and the machine's CPU use meanwhile;
2. a worker SIGKILLed while its writers are mid-block (the tasks retry on the others);
3. the scheduler restarted mid-run.

Every run is checked: the commit published each planned block once and the partition
holds exactly the source rows (count, distinct ids, checksum). It prints a table, then the
peak memory of each worker. Everything is stopped at the end, on failure and on Ctrl-C.

    PYTHONPATH=scripts python -m distributed_airflow [--size-mb 256] [--writers 16]
        [--cap-mb 8] [--workers 3] [--concurrency 4] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_odps_tunnel.emulator import Emulator

from .cluster import AirflowCluster
from .scenario import (
    RunReport,
    Source,
    attempts_by_worker,
    check_run,
    create_tables,
    deferred_to_triggerer,
    emulator_env,
    kill_worker_mid_block,
    trigger_run,
    wait_cluster_ready,
    wait_for_run,
    write_account_changes,
    write_source,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the one polling helper, shared with the tests
from polling import wait_until  # noqa: E402

DAGS = Path(__file__).resolve().parent / "dags"
MB = 1_000_000


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    workers: int
    report: RunReport
    cpu: float
    note: str = ""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="source MB to load per run")
    parser.add_argument("--writers", type=int, default=16, help="mapped writer tasks")
    parser.add_argument("--cap-mb", type=float, default=8, help="MB/s per block stream")
    parser.add_argument("--workers", type=int, default=3, help="Celery workers, at most")
    parser.add_argument("--concurrency", type=int, default=4, help="task slots per worker")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args()


class Demo:
    """The runs of the demo, on one cluster and one emulator."""

    def __init__(self, args: argparse.Namespace, cluster: AirflowCluster, emu: Any):
        self.args = args
        self.cluster = cluster
        self.emu = emu
        self.day = datetime.date(2024, 8, 1)
        self.rows: list[Row] = []
        self.source: Source | None = None
        self.accounts = ""

    def prepare(self, shared: Path) -> None:
        create_tables(self.emu, "events", "accounts")
        blocks = 2 * self.args.writers  # two blocks per writer
        print(f"Writing {self.args.size_mb} MB of Parquet source in {blocks} files ...")
        self.source = write_source(shared / "events", self.args.size_mb * MB, files=blocks)
        self.accounts = write_account_changes(shared / "accounts")

    def conf(self) -> dict[str, Any]:
        return {
            "source": self.source.uri,
            "table": "events",
            "block_size": 1,  # one block per source file
            "max_writers": self.args.writers,
            "upsert_table": "accounts",
            "upsert_source": self.accounts,
        }

    def run(self, scenario: str, disrupt: Any = None) -> Row:
        """One DAG run (``disrupt(run_id)`` is called once it started); its checked row."""
        self.day += datetime.timedelta(days=1)
        workers = len(self.cluster.live_workers())
        print(f"\n== {scenario} (live workers: {workers}), partition ds={self.day}")
        psutil.cpu_percent()
        run_id = trigger_run(self.cluster, self.conf(), self.day)
        note = disrupt(run_id) if disrupt else ""
        state = wait_for_run(self.cluster, run_id, timeout=3600, wait=wait_until)
        cpu = psutil.cpu_percent()
        report = check_run(self.cluster, self.emu, run_id, state, "events", self.day, self.source)
        if not deferred_to_triggerer(self.cluster, run_id, "partition_loaded"):
            note += "; sensor did not defer"
        row = Row(scenario, workers, report, cpu, note.strip("; "))
        self.rows.append(row)
        print(f"   {state}: {report.nbytes / MB:.0f} MB in {report.seconds:.1f} s; {row.note}")
        return row

    def kill_a_worker(self, run_id: str) -> str:
        victim, writers, streams = kill_worker_mid_block(
            self.cluster, self.emu, run_id, "events", wait_until
        )
        print(f"   SIGKILL {victim.name}: {writers} writers, {streams} block bodies in flight")
        return f"SIGKILL {victim.name} with {writers} writers mid-block"

    def restart_scheduler(self, run_id: str) -> str:
        def writing() -> bool:
            rows = self.cluster.query(
                "SELECT 1 FROM task_instance WHERE run_id = %s AND task_id = 'write_blocks' "
                "AND state = 'running'",
                run_id,
            )
            return bool(rows)

        wait_until(writing, timeout=600, interval=0.2, message="writers to run")
        self.cluster.restart_scheduler()
        print("   scheduler restarted")
        return "scheduler restarted while writers ran"


def print_table(demo: Demo, args: argparse.Namespace) -> None:
    cap = f"{args.cap_mb:g} MB/s per connection"
    print(f"\nLoad chain: {args.size_mb} MB, {args.writers} mapped writers, {cap}")
    head = ("scenario", "workers", "MB", "run s", "write s", "MB/s", "cap MB/s", "CPU %", "rows")
    head += ("blocks", "commits")
    print("| " + " | ".join(head) + " | exactly once | notes |")
    print("|" + "---|" * (len(head) + 2))
    for row in demo.rows:
        r = row.report
        blocks = f"{len(r.written_blocks)}/{len(r.planned_blocks)}"
        rows = f"{r.rows}"
        once = "yes" if r.exactly_once else "NO"
        retried = sum(1 for t in r.writer_tries.values() if t > 1)
        note = row.note + (f"; {retried} writers retried" if retried else "")
        upsert = r.other_tasks.get("upsert_accounts", ("?", 0))[0]
        sensor = r.other_tasks.get("partition_loaded", ("?", 0))[0]
        note += f"; upsert {upsert}, deferred sensor {sensor}"
        cells = (row.scenario, row.workers, f"{r.nbytes / MB:.0f}", f"{r.seconds:.0f}")
        streams = min(args.writers, row.workers * args.concurrency)
        cells += (f"{r.write_seconds:.1f}", f"{r.throughput:.1f}", f"{streams * args.cap_mb:g}")
        cells += (f"{row.cpu:.0f}", rows, blocks, r.successful_commits)
        print("| " + " | ".join(map(str, cells)) + f" | {once} | {note.strip('; ')} |")
    print(
        "\nMB/s: block bytes over the write phase (first writer start to last writer end);"
        " cap MB/s: what the per-connection cap allows with min(writers, workers x slots)"
        " streams; CPU %: the whole machine during the run (near 100: CPU-bound)."
    )
    print("\nPeak RSS per Celery worker (the worker and its task processes)")
    print("| worker | peak RSS of all its processes | peak RSS of one task process |")
    print("|---|---|---|")
    for w in demo.cluster.workers:
        print(f"| {w.name} | {w.peak_rss / 2**20:.0f} MiB | {w.peak_task_rss / 2**20:.0f} MiB |")


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the demo as Ctrl-C does: through the clean-up in ``main``."""
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="odps-distributed-"))
    print(f"Working directory {work}")
    emu = Emulator(
        work / "emulator",
        subprocess=True,
        upload_bandwidth=int(args.cap_mb * MB),
        stream_limit=1000,  # never reached; makes the emulator count streams in flight
    )
    cluster: AirflowCluster | None = None
    ok = False
    try:
        emu.start()
        cluster = AirflowCluster(
            work / "cluster", DAGS, env=emulator_env(emu), concurrency=args.concurrency
        )
        demo = Demo(args, cluster, emu)
        demo.prepare(work / "shared")
        started = time.monotonic()
        print("Starting PostgreSQL, Redis, airflow db migrate ...")
        cluster.start_services()
        cluster.start_airflow()
        cluster.add_worker()
        cluster.start_sampling()
        wait_cluster_ready(cluster, wait_until)
        print(f"Airflow ready after {time.monotonic() - started:.0f} s")
        for n in range(1, args.workers + 1):
            while len(cluster.live_workers()) < n:
                cluster.add_worker()
            wait_cluster_ready(cluster, wait_until)
            demo.run(f"throughput, {n} worker{'s' if n > 1 else ''}")
        demo.run("worker SIGKILL mid-block", demo.kill_a_worker)
        cluster.add_worker()  # replace the dead worker
        wait_cluster_ready(cluster, wait_until)
        demo.run("scheduler restart", demo.restart_scheduler)
        print_table(demo, args)
        for run in demo.rows[-2:]:
            print(f"\n{run.scenario}: {attempts_by_worker(cluster, run.report.run_id)}")
        ok = all(row.report.exactly_once for row in demo.rows)
    except KeyboardInterrupt:
        print("\nInterrupted: stopping everything.")
    finally:
        if cluster is not None:
            cluster.stop()
        emu.stop()
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("All runs loaded every row exactly once." if ok else "Some runs FAILED (see above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
