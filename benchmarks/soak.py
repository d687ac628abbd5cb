"""Soak: a long seeded series of ``kill -9`` crashes, then a load phase.

Run on purpose, not as a test::

    .venv/bin/python benchmarks/soak.py [--crashes 50] [--seed N] [--max-kills 3] [--repeat 3]

``--quick`` is ``--crashes 2 --load-seconds 2 --writers 4 --readers 2``.

Baselines: each scenario job runs once without a crash per round, ``--repeat`` rounds, the
job order alternating from round to round; printed as median (min–max) of the transfer time
and requests, and of the whole clean run's wall, client CPU (this process: drivers and
checks, with their threads) and server CPU (the emulator child process) seconds. The
medians set the kill instants of the crash phase.

Crash phase: the scenarios of ``tests/reliability/crash_scenarios.py`` (upload with explicit
blocks, buffered upload, overwriting upload, upload creating its partition, upsert, and
three of them at once; a driver that reattaches by id or a client that rides through the
restart) with random kill instants, until ``--crashes`` kills have landed during a
transfer. After every kill every table must hold all or none of each commit, and
every transfer must end with its source exactly once; the first violation stops the run
(exit status 1) with the seed to replay it (with the same ``--seed`` and ``--repeat``).
Prints: crashes injected, commits verified all-or-nothing, transfers completed exactly
once; wall, client CPU and server CPU seconds (every emulator process, restarts included).
It is one seeded series, not repeated: its outcome is the counts.

Load phase: ``tests/reliability/load_scenario.py``'s ``run_load(...)`` against the same
emulator, ``--repeat`` rounds of ``--load-seconds`` each (``--load-seconds 0`` skips it),
printed as median (min–max) per figure; after each round every table of the crash phase is
verified again. The checks of ``tests/reliability`` are ``assert`` statements, so this
refuses to run under ``python -O``.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import _measure as measure

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the scenario modules live in the test package "reliability"

from reliability.crash_scenarios import JOBS, CrashHarness, random_case  # noqa: E402
from reliability.load_scenario import run_load  # noqa: E402


def baselines(harness: CrashHarness, repeat: int) -> None:
    """Clean runs of every job, alternating the job order; the medians become the
    harness's baselines."""

    def clean(job: str, _round: int) -> tuple[measure.Sample, tuple[float, int]]:
        sample, _ = measure.timed(lambda: harness.clean_run(job), harness.emu.pid)
        return sample, harness.baseline[job]

    runs = measure.alternate(list(JOBS), repeat, clean)
    for job in JOBS:
        samples = [s for s, _ in runs[job]]
        seconds = [b[0] for _, b in runs[job]]
        requests = [b[1] for _, b in runs[job]]
        harness.baseline[job] = (measure.median(seconds), round(measure.median(requests)))
        print(
            f"baseline {job}: transfer {measure.spread((s * 1000 for s in seconds), '.0f')} ms, "
            f"{measure.spread(requests, '.0f')} requests; "
            f"whole clean run {measure.cpu_figures(samples)}"
        )


def crash_phase(harness: CrashHarness, crashes: int, max_kills: int, verbose: bool) -> None:
    """Random cases until ``crashes`` kills have landed during a transfer."""
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

LOAD_FIGURES = (  # (label, result key or function of the result, format)
    ("requests/s", "requests_per_s", ".1f"),
    ("requests", "requests", ".0f"),
    ("commits", "commits", ".0f"),
    ("rows written", "rows_written", ".0f"),
    ("rows read", "rows_read", ".0f"),
    ("snapshots verified", "snapshots", ".0f"),
    ("most in flight", "max_in_flight", ".0f"),
    ("5xx answers", "server_errors", ".0f"),
    ("server peak RSS MB", lambda r: r["rss_peak"] / measure.MB, ".0f"),
)


def load_phase(
    harness: CrashHarness, seconds: float, writers: int, readers: int, seed: int, repeat: int
) -> list[str]:
    """``repeat`` rounds of the load of ``tests/reliability/load_scenario.py`` against the
    same emulator, the crash phase's tables checked again after each; the problems found."""
    if seconds <= 0:
        print("load phase: skipped (--load-seconds 0)")
        return []
    problems: list[str] = []
    results, samples = [], []
    for k in range(repeat):
        sample, result = measure.timed(
            lambda: run_load(harness.emu, seconds, writers=writers, readers=readers, seed=seed),
            harness.emu.pid,
        )
        results.append(result)
        samples.append(sample)
        problems += [f"load round {k + 1}: {p}" for p in result["problems"]]
        changed = [t for t, expected in harness.done if harness.disk_fingerprint(t) != expected]
        problems += [f"load round {k + 1} changed crash-phase table {t}" for t in changed]
        print(
            f"  load round {k + 1}: {result['requests_per_s']} req/s, "
            f"{len(result['problems'])} problems, crash-phase tables intact "
            f"{len(harness.done) - len(changed)} of {len(harness.done)}",
            flush=True,
        )
    print(
        f"load phase: {writers} writers + {readers} readers, {repeat} rounds of {seconds:g} s; "
        f"median (min–max) per round:"
    )
    for label, key, spec in LOAD_FIGURES:
        values = [key(r) if callable(key) else r[key] for r in results]
        print(f"  {label}: {measure.spread(values, spec)}")
    print(f"  {measure.cpu_figures(samples)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crashes", type=int, default=50, help="kills during a transfer")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--max-kills", type=int, default=3, help="kills per transfer, at most")
    parser.add_argument(
        "--data-dir", default=None, help="default: a temporary directory, removed on success"
    )
    parser.add_argument("--load-seconds", type=float, default=20.0, help="per load round")
    parser.add_argument("--writers", type=int, default=32, help="block writers of the load")
    parser.add_argument("--readers", type=int, default=8, help="readers of the load")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    measure.common_args(parser, "--crashes 2 --load-seconds 2 --writers 4 --readers 2")
    args = parser.parse_args(argv)
    if sys.flags.optimize:
        raise SystemExit("soak.py needs the assert checks of tests/reliability: run without -O")
    if args.quick:
        args.crashes, args.load_seconds, args.writers, args.readers = 2, 2.0, 4, 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    if not args.verbose:  # the client's retry warnings are the point of the exercise
        logging.getLogger("airflow_provider_odps_tunnel").setLevel(logging.ERROR)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="odps-soak-")
    print(f"soak: seed {seed}, data directory {data_dir}", flush=True)
    print(
        measure.method(args.repeat, "server CPU = every emulator child process, restarts included")
    )
    harness = CrashHarness(data_dir, seed, say=print if args.verbose else None)
    with harness:
        baselines(harness, args.repeat)
        server_cpu = measure.ServerCpu(lambda: harness.emu.pid if harness.emu.running else None)
        client_cpu, started = measure.self_cpu(), time.monotonic()
        try:
            crash_phase(harness, args.crashes, args.max_kills, args.verbose)
        except Exception as exc:
            traceback.print_exc()
            raise SystemExit(f"soak FAILED in the crash phase (seed {seed}): {exc!r}") from exc
        finally:
            print("\n".join(harness.stats.lines()), flush=True)
            print(
                f"  crash phase (one seeded series, not repeated): wall "
                f"{time.monotonic() - started:.1f} s, "
                f"client CPU {measure.self_cpu() - client_cpu:.1f} s, "
                f"server CPU {server_cpu.seconds():.1f} s",
                flush=True,
            )
        problems = load_phase(
            harness, args.load_seconds, args.writers, args.readers, seed, args.repeat
        )
    if problems:
        print("\n".join(problems[:20]))
        raise SystemExit(f"soak FAILED: {len(problems)} problems in the load phase (seed {seed})")
    print(f"soak passed (seed {seed})")
    if args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
