"""Soak: a long seeded series of ``kill -9`` crashes, then a load phase.

Run on purpose, not as a test::

    .venv/bin/python benchmarks/soak.py [--crashes 50] [--seed N] [--max-kills 3]

Crash phase: the scenarios of ``tests/reliability/crash_scenarios.py`` (upload with explicit
blocks, buffered upload, overwriting upload, upload creating its partition, upsert, and
three of them at once; a driver that reattaches by id or a client that rides through the
restart) with random kill instants, until ``--crashes`` kills have landed during a
transfer. After every kill every table must hold all or none of each commit, and
every transfer must end with its source exactly once; the first violation stops the run
with the seed to replay it. Prints: crashes injected, commits verified all-or-nothing,
transfers completed exactly once, wall time.

Load phase: ``tests/reliability/load_scenario.py``'s ``run_load(...)`` against the same
emulator (``--load-seconds 0`` skips it); afterwards every table of the crash phase is
verified again.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the scenario modules live in the test package "reliability"

from reliability.crash_scenarios import JOBS, CrashHarness, random_case  # noqa: E402
from reliability.load_scenario import format_figures, run_load  # noqa: E402


def crash_phase(harness: CrashHarness, crashes: int, max_kills: int, verbose: bool) -> None:
    """Random cases until ``crashes`` kills have landed during a transfer."""
    for job in JOBS:
        harness.clean_run(job)
        seconds, requests = harness.baseline[job]
        print(f"baseline {job}: {seconds * 1000:.0f} ms, {requests} requests")
    cases = 0
    while harness.stats.mid_transfer < crashes:
        cases += 1
        if cases > crashes * 4:
            raise RuntimeError("too few kills land during a transfer; check the triggers")
        case = random_case(harness.rng, harness.baseline, max_kills=max_kills)
        if verbose:
            print(f"case {cases}: {case.describe()}", flush=True)
        harness.run_case(case)
        if not verbose and cases % 10 == 0:
            print(
                f"  {cases} cases, {harness.stats.crashes} kills "
                f"({harness.stats.mid_transfer} during a transfer)",
                flush=True,
            )


# ------------------------------------------------------------------------------ load phase


def load_phase(
    harness: CrashHarness, seconds: float, writers: int, readers: int, seed: int
) -> bool:
    """The load of ``tests/reliability/load_scenario.py`` against the same emulator, then
    the crash phase's tables checked again; False if the load reported problems."""
    if seconds <= 0:
        print("load phase: skipped (--load-seconds 0)")
        return True
    started = time.monotonic()
    result = run_load(harness.emu, seconds, writers=writers, readers=readers, seed=seed)
    print(f"load phase ({time.monotonic() - started:.1f} s):")
    print("\n".join(format_figures(result)))
    for table, expected in harness.done:  # the load must not disturb the crash phase's tables
        assert harness.disk_fingerprint(table) == expected, table
    print(f"  crash-phase tables intact after the load: {len(harness.done)}")
    return not result["problems"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crashes", type=int, default=50, help="kills during a transfer")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--max-kills", type=int, default=3, help="kills per transfer, at most")
    parser.add_argument(
        "--data-dir", default=None, help="default: a temporary directory, removed on success"
    )
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--writers", type=int, default=32, help="block writers of the load")
    parser.add_argument("--readers", type=int, default=8, help="readers of the load")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    if not args.verbose:  # the client's retry warnings are the point of the exercise
        logging.getLogger("airflow_provider_odps_tunnel").setLevel(logging.ERROR)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="odps-soak-")
    print(f"soak: seed {seed}, data directory {data_dir}", flush=True)
    harness = CrashHarness(data_dir, seed, say=print if args.verbose else None)
    with harness:
        try:
            crash_phase(harness, args.crashes, args.max_kills, args.verbose)
        finally:
            print("\n".join(harness.stats.lines()), flush=True)
        loaded = load_phase(harness, args.load_seconds, args.writers, args.readers, seed)
    if not loaded:
        print(f"soak FAILED: the load phase reported problems (seed {seed})")
        return 1
    print(f"soak passed (seed {seed})")
    if args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
