"""Concurrent block writers and readers against one emulator, with every outcome checked.

:func:`run_load` is shared by the fast test (``test_load.py``) and the soak script
(``benchmarks/soak.py``). For ``seconds`` it runs ``writers`` threads, each repeating a
cycle: create a block upload session on one of a few targets (tables and partitions, one
of them created by the first commit that lands), write 1-3 blocks of known rows under
explicit block ids (record and Arrow writers in turn, a third of the blocks compressed),
commit. One cycle in :data:`ABANDON_EVERY` is written but never committed. Meanwhile
``readers`` threads download the targets over and over (record and Arrow readers, whole or
in two compressed row ranges) and check every snapshot as they read it.

Every row carries ``(writer, cycle, seq, n)``: the commit it belongs to, its place in the
commit and the commit's row count; its other values follow from those, so a reader can tell
a torn, duplicated, corrupted or phantom row. Checked:

* each snapshot holds whole commits only (``seq`` runs over exactly ``0..n-1``), rows with
  exactly the expected values, and no rows of an abandoned or unknown commit;
* snapshots are linearizable with commits: a commit that returned before a download session
  was requested is in it, and one requested after the session existed is not; a writer's
  commits to a target appear as a prefix of the ones that succeeded;
* at the end every target holds exactly the rows of the commits that returned success (row
  count and order-independent checksum, :func:`~.conftest.fingerprint`), read both from the
  emulator's catalog on disk and through the client;
* the request log shows no 5xx and no 4xx but the expected ones (``NoSuchPartition`` while a
  partition that commits create has none yet);
* no thread is left hanging: every thread must end within ``grace`` seconds of the stop.

The server's RSS is sampled from ``/proc`` every :data:`RSS_POLL` seconds (peak = VmHWM).
Anything wrong is listed in ``result["problems"]`` (empty when everything held); the rest of
the result are figures. The check state grows with snapshots × commits, so a long soak
should call :func:`run_load` in rounds (each round makes fresh tables). The emulator keeps
a session until it has been expired for a ``session_lifetime``: for its memory to level
off within a soak, give it a short lifetime (longer than a cycle or a read, e.g. 60 s).
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns
from airflow_provider_odps_tunnel.tunnel.errors import NoSuchPartition

from .conftest import fingerprint

__all__ = [
    "run_load",
    "format_figures",
    "make_row",
    "server_memory",
    "check_snapshot",
    "check_linearizable",
    "LoadState",
    "Commit",
    "SnapshotSeen",
    "Target",
]

COLUMNS = "writer bigint, cycle bigint, seq bigint, n bigint, payload string, v double"
ARROW_SCHEMA = pa.schema(
    [
        ("writer", pa.int64()),
        ("cycle", pa.int64()),
        ("seq", pa.int64()),
        ("n", pa.int64()),
        ("payload", pa.string()),
        ("v", pa.float64()),
    ]
)
ABANDON_EVERY = 16  # one cycle in this many is written but never committed
MAX_BLOCK_ROWS = 24
RSS_POLL = 0.1
_round = itertools.count()


def make_row(writer: int, cycle: int, seq: int, n: int) -> tuple:
    """The one row a commit ``(writer, cycle)`` of ``n`` rows has at position ``seq``."""
    pad = "xyzé"[seq % 4] * (seq % 13)
    return (
        writer,
        cycle,
        seq,
        n,
        f"w{writer}/c{cycle}/s{seq}:{pad}",
        (writer * 7 + cycle * 3 + seq) * 0.25,
    )


@dataclass(frozen=True)
class Target:
    table: str
    partition: str | None  # "pt=..." or None
    create_partition: bool  # the partition comes into existence with its first commit

    @property
    def label(self) -> str:
        return self.table + (f"/{self.partition}" if self.partition else "")

    def suffix(self) -> tuple:
        """The partition value read_table appends to each row."""
        return (self.partition.split("=", 1)[1],) if self.partition else ()


@dataclass
class Commit:
    writer: int
    cycle: int
    target: Target
    n: int
    started: float
    ended: float | None = None  # set when commit() returned success
    error: str | None = None  # set when commit() raised


@dataclass
class SnapshotSeen:
    target: Target
    asked: float  # before the download session was requested
    created: float  # after it was created
    commits: frozenset  # (writer, cycle) keys seen; empty when the partition was absent
    absent: bool = False


@dataclass
class LoadState:
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    commits: dict[tuple[int, int], Commit] = field(default_factory=dict)
    abandoned: set[tuple[int, int]] = field(default_factory=set)
    snapshots: list[SnapshotSeen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 200:
                self.problems.append(text)

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)


# ---------------------------------------------------------------------------------- memory
def server_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes, from ``/proc/<pid>/status``."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, at USER_HZ=100


class _RssMonitor(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(name="load-rss", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), server_memory(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return
            self._halt.wait(RSS_POLL)

    def finish(self) -> None:
        self._halt.set()
        self.join(5)


# ---------------------------------------------------------------------------------- writers
@contextmanager
def _tunnel(emulator) -> Iterator[TableTunnel]:
    """A tunnel on an entry object (and connection pool) of its own, closed afterwards."""
    odps = ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )
    try:
        yield TableTunnel(odps)
    finally:
        odps.close()


def _writer(emulator, wid: int, targets: list[Target], shared: LoadState, seed: int) -> None:
    with _tunnel(emulator) as tunnel:
        _write_cycles(tunnel, wid, targets, shared, seed)


def _write_cycles(tunnel, wid: int, targets: list[Target], shared: LoadState, seed: int) -> None:
    rng = random.Random(seed * 1_000_003 + wid)
    for cycle in itertools.count():
        if shared.stop.is_set():
            return
        target = rng.choice(targets)
        key = (wid, cycle)
        try:
            session = tunnel.create_upload_session(
                target.table,
                partition_spec=target.partition,
                create_partition=target.create_partition,
            )
            n_blocks = rng.randint(1, 3)
            sizes = [rng.randint(1, MAX_BLOCK_ROWS) for _ in range(n_blocks)]
            n = sum(sizes)
            block_ids = sorted(rng.sample(range(20000), n_blocks))
            seq = 0
            for i, (block, size) in enumerate(zip(block_ids, sizes, strict=True)):
                rows = [make_row(wid, cycle, s, n) for s in range(seq, seq + size)]
                seq += size
                compress = (cycle + i) % 3 == 2  # a third of the blocks compressed
                if (cycle + i) % 2:
                    with session.open_arrow_writer(block, compress=compress) as writer:
                        columns = list(zip(*rows, strict=True))
                        writer.write(pa.RecordBatch.from_arrays(columns, schema=ARROW_SCHEMA))
                else:
                    with session.open_record_writer(block, compress=compress) as writer:
                        for row in rows:
                            writer.write(list(row))
            shared.add(blocks=n_blocks, sessions_created=1)
            if (wid + cycle) % ABANDON_EVERY == ABANDON_EVERY - 1:  # staggered over writers
                with shared.lock:
                    shared.abandoned.add(key)
                shared.add(abandoned=1, rows_abandoned=n)
                continue
            record = Commit(wid, cycle, target, n, started=time.monotonic())
            with shared.lock:
                shared.commits[key] = record
            try:
                session.commit(block_ids)
            except Exception as exc:  # noqa: BLE001 - recorded: the commit's fate is unknown
                record.error = f"{type(exc).__name__}: {exc}"
                shared.problem(f"writer {wid} cycle {cycle}: commit failed: {record.error}")
                continue
            record.ended = time.monotonic()
            shared.add(commits=1, rows_written=n, **{f"commits_of_{wid}": 1})
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            shared.problem(f"writer {wid} cycle {cycle}: {type(exc).__name__}: {exc}")
            shared.add(writer_errors=1)
            if shared.counts["writer_errors"] > 50:
                return


# ---------------------------------------------------------------------------------- readers
def _read_rows(session, mode: int) -> list[tuple]:
    """All rows of a download session: record reader, Arrow reader, or two compressed row
    ranges."""
    count = session.count
    if mode == 0:
        with session.open_record_reader(0, count, append_partitions=False) as reader:
            return [tuple(r.values) for r in reader]
    if mode == 1:
        with session.open_arrow_reader(0, count) as reader:
            batches = list(reader)
        return [tuple(r.values()) for b in batches for r in b.to_pylist()]
    half = count // 2
    rows: list[tuple] = []
    for start, size in ((0, half), (half, count - half)):
        with session.open_record_reader(
            start, size, compress=True, append_partitions=False
        ) as reader:
            rows.extend(tuple(r.values) for r in reader)
    return rows


def check_snapshot(rows: list[tuple], label: str) -> tuple[set, list[str]]:
    """The commits a snapshot's rows form, and what is wrong with them (torn, duplicated or
    altered rows)."""
    problems: list[str] = []
    seqs: dict[tuple[int, int], list[int]] = {}
    sizes: dict[tuple[int, int], int] = {}
    for row in rows:
        if len(row) != 6:
            problems.append(f"{label}: row of {len(row)} values: {row!r}")
            continue
        w, c, s, n = row[:4]
        if row != make_row(w, c, s, n):
            problems.append(f"{label}: altered row {row!r}")
            continue
        seqs.setdefault((w, c), []).append(s)
        if sizes.setdefault((w, c), n) != n:
            problems.append(f"{label}: commit {(w, c)} rows disagree on its size")
    for key, got in seqs.items():
        if sorted(got) != list(range(sizes[key])):
            problems.append(
                f"{label}: commit {key} is not whole: {len(got)} rows of {sizes[key]}"
                f" ({len(set(got))} distinct)"
            )
    return set(seqs), problems


def _reader(emulator, rid: int, targets: list[Target], shared: LoadState) -> None:
    with _tunnel(emulator) as tunnel:
        _read_snapshots(tunnel, rid, targets, shared)


def _read_snapshots(tunnel, rid: int, targets: list[Target], shared: LoadState) -> None:
    for i in itertools.count():
        if shared.stop.is_set():
            return
        target = targets[(rid + i) % len(targets)]
        label = f"reader {rid} #{i} {target.label}"
        try:
            asked = time.monotonic()
            try:
                session = tunnel.create_download_session(
                    target.table, partition_spec=target.partition
                )
            except NoSuchPartition:
                created = time.monotonic()
                with shared.lock:
                    shared.snapshots.append(SnapshotSeen(target, asked, created, frozenset(), True))
                shared.add(absent_partition=1)
                continue
            created = time.monotonic()
            rows = _read_rows(session, i % 3)
            if len(rows) != session.count:
                shared.problem(f"{label}: read {len(rows)} rows, session says {session.count}")
            seen, problems = check_snapshot(rows, label)
            for text in problems[:5]:
                shared.problem(text)
            with shared.lock:
                shared.snapshots.append(SnapshotSeen(target, asked, created, frozenset(seen)))
            shared.add(snapshots=1, rows_read=len(rows))
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            shared.problem(f"{label}: {type(exc).__name__}: {exc}")
            shared.add(reader_errors=1)
            if shared.counts["reader_errors"] > 50:
                return


# ---------------------------------------------------------------------------------- checks
def check_linearizable(shared: LoadState) -> int:
    """Snapshots against commit times; returns how many snapshots were checked."""
    by_target: dict[Target, list[Commit]] = {}
    for commit in shared.commits.values():
        by_target.setdefault(commit.target, []).append(commit)
    for snap in shared.snapshots:
        commits = by_target.get(snap.target, [])
        where = f"snapshot of {snap.target.label} at {snap.asked:.3f}"
        for key in snap.commits:
            if key in shared.abandoned:
                shared.problem(f"{where}: rows of the never-committed session {key}")
            elif key not in shared.commits:
                shared.problem(f"{where}: rows of unknown commit {key}")
            elif shared.commits[key].target != snap.target:
                shared.problem(f"{where}: rows of {key}, committed to another target")
            elif shared.commits[key].started > snap.created:
                shared.problem(f"{where}: {key} is in a snapshot taken before its commit")
        newest: dict[int, int] = {}
        for w, c in snap.commits:
            newest[w] = max(newest.get(w, -1), c)
        for commit in commits:
            key = (commit.writer, commit.cycle)
            if commit.ended is None or key in snap.commits:
                continue
            if commit.ended < snap.asked:
                shared.problem(f"{where}: lost {key}, committed before the session was asked")
            elif commit.cycle < newest.get(commit.writer, -1):
                shared.problem(
                    f"{where}: has a later commit of writer {commit.writer} but not {key}"
                )
    return len(shared.snapshots)


def _expected_rows(shared: LoadState, target: Target) -> list[tuple]:
    rows = []
    for commit in shared.commits.values():
        if commit.target == target and commit.ended is not None:
            rows.extend(
                make_row(commit.writer, commit.cycle, s, commit.n) + target.suffix()
                for s in range(commit.n)
            )
    return rows


def _final_check(emulator, targets: list[Target], shared: LoadState) -> dict[str, Any]:
    """Each target's final contents, on disk and through the client, against the source."""
    catalog = emulator.catalog
    totals = {"rows": 0}
    with _tunnel(emulator) as tunnel:
        for target in targets:
            expected = _expected_rows(shared, target)
            totals["rows"] += len(expected)
            want = fingerprint(expected)
            info = catalog.get_table(emulator.project, target.table)
            if not catalog.partition_exists(info, catalog.normalize_spec(info, target.partition)):
                if expected:
                    shared.problem(f"final {target.label}: no partition, {len(expected)} rows lost")
                continue
            data = catalog.read_table(emulator.project, target.table, target.partition)
            on_disk = fingerprint(tuple(r.values()) for r in data.to_pylist())
            if on_disk != want:
                shared.problem(
                    f"final {target.label} on disk: {on_disk[0]} rows, expected {want[0]} "
                    f"(checksums {'equal' if on_disk[1] == want[1] else 'differ'})"
                )
            session = tunnel.create_download_session(target.table, partition_spec=target.partition)
            read = fingerprint(row + target.suffix() for row in _read_rows(session, 0))
            if read != want:
                shared.problem(
                    f"final {target.label} read back: {read[0]} rows, expected {want[0]}"
                )
    return totals


def _request_figures(path, offset: int) -> dict[str, Any]:
    """Statuses of the requests logged from ``offset`` on, and the most that were being
    served at one time (a line holds the request's start time and its duration)."""
    statuses: Counter = Counter()
    errors: Counter = Counter()
    edges: list[tuple[float, int]] = []
    with open(path, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            entry = json.loads(line)
            statuses[str(entry.get("status"))] += 1
            if entry.get("error"):
                errors[f"{entry.get('status')} {entry['error']}"] += 1
            start = float(entry["time"])
            edges += [(start, 1), (start + float(entry.get("ms", 0)) / 1000, -1)]
    in_flight = most = 0
    for _, step in sorted(edges):
        in_flight += step
        most = max(most, in_flight)
    return {"statuses": dict(statuses), "errors": dict(errors), "max_in_flight": most}


# ---------------------------------------------------------------------------------- entry
def _make_targets(emulator, name: str) -> list[Target]:
    catalog = emulator.catalog
    flat = TableSchema(parse_columns(COLUMNS))
    parted = TableSchema(parse_columns(COLUMNS), parse_columns("pt string"))
    catalog.create_table(emulator.project, f"{name}_a", flat)
    catalog.create_table(emulator.project, f"{name}_b", flat)
    catalog.create_table(emulator.project, f"{name}_p", parted)
    catalog.create_partition(emulator.project, f"{name}_p", "pt=p0")
    return [
        Target(f"{name}_a", None, False),
        Target(f"{name}_b", None, False),
        Target(f"{name}_p", "pt=p0", False),
        Target(f"{name}_p", "pt=p1", True),  # created by the first commit that lands
    ]


def _stacks(threads: list[threading.Thread]) -> str:
    frames = sys._current_frames()
    out = []
    for thread in threads:
        frame = frames.get(thread.ident)
        if frame is not None:
            out.append(f"--- {thread.name}\n" + "".join(traceback.format_stack(frame)[-6:]))
    return "\n".join(out)


def run_load(
    emulator,
    seconds: float,
    writers: int = 32,
    readers: int = 8,
    seed: int = 0,
    grace: float = 90.0,
    name: str | None = None,
    rate_limited: bool = False,
) -> dict[str, Any]:
    """Run the load on a started ``emulator`` for ``seconds``, check it, return figures.

    ``name`` prefixes the tables made for this round (default: a fresh name).
    ``rate_limited`` says the emulator has rate limits on purpose: its 429 answers (which
    the client waits out) are then expected. The emulator must keep its request log on.
    The result's ``problems`` lists everything that went wrong (empty when all checks held).
    """
    name = name or f"load_{seed}_{next(_round)}_{int(time.time() * 1000) % 10**8}"
    targets = _make_targets(emulator, name)
    shared = LoadState()
    log_path = emulator.request_log_path
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    pid = emulator.pid
    rss_before = server_memory(pid)["VmRSS"]
    cpu_before = _cpu_seconds(pid)
    monitor = _RssMonitor(pid)
    monitor.start()
    threads = [
        threading.Thread(
            target=_writer, args=(emulator, w, targets, shared, seed), name=f"load-writer-{w}"
        )
        for w in range(writers)
    ] + [
        threading.Thread(
            target=_reader, args=(emulator, r, targets, shared), name=f"load-reader-{r}"
        )
        for r in range(readers)
    ]
    for thread in threads:
        thread.daemon = True
    started = time.monotonic()
    for thread in threads:
        thread.start()
    shared.stop.wait(seconds)
    shared.stop.set()
    deadline = time.monotonic() + grace
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    hung = [t for t in threads if t.is_alive()]
    if hung:
        shared.problem(
            f"{len(hung)} threads still running {grace:g} s after the stop:\n" + _stacks(hung)
        )
    monitor.finish()
    memory = server_memory(pid)
    cpu = _cpu_seconds(pid) - cpu_before
    checked = check_linearizable(shared)
    totals = _final_check(emulator, targets, shared)
    if not log_path.exists():
        raise ValueError("run_load needs the emulator's request log (request_log=True)")
    requests_seen = _request_figures(log_path, log_offset)
    statuses = requests_seen["statuses"]
    n_requests = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
    expected_4xx = shared.counts["absent_partition"]
    throttled = statuses.get("429", 0)
    client_errors = sum(n for s, n in statuses.items() if s.isdigit() and 400 <= int(s) < 500)
    if rate_limited:
        client_errors -= throttled
    if server_errors:
        shared.problem(f"{server_errors} 5xx answers: {requests_seen['errors']}")
    if client_errors != expected_4xx:
        shared.problem(
            f"{client_errors} 4xx answers, {expected_4xx} expected (absent partition): "
            f"{requests_seen['errors']}"
        )
    dropped = statuses.get("connection dropped", 0)
    if dropped:
        shared.problem(f"{dropped} requests ended without an answer")
    rss = [r for _, r in monitor.samples] or [memory["VmRSS"]]
    third = max(1, len(rss) // 3)
    counts = shared.counts
    return {
        "seconds": round(elapsed, 2),
        "writers": writers,
        "readers": readers,
        "tables": name,
        "requests": n_requests,
        "requests_per_s": round(n_requests / elapsed, 1),
        "statuses": statuses,
        "errors": requests_seen["errors"],
        "server_errors": server_errors,
        "throttled": throttled,
        "sessions_created": counts["sessions_created"],
        "commits": counts["commits"],
        "commits_failed": sum(c.error is not None for c in shared.commits.values()),
        "commits_per_writer_min": min(counts[f"commits_of_{w}"] for w in range(writers)),
        "max_in_flight": requests_seen["max_in_flight"],
        "abandoned": counts["abandoned"],
        "blocks": counts["blocks"],
        "rows_written": counts["rows_written"],
        "rows_final": totals["rows"],
        "snapshots": counts["snapshots"],
        "snapshots_checked": checked,
        "absent_partition_reads": counts["absent_partition"],
        "rows_read": counts["rows_read"],
        "server_cpu_s": round(cpu, 1),
        "rss_before": rss_before,
        "rss_peak": max(memory.get("VmHWM", 0), max(rss)),
        "rss_end": memory["VmRSS"],
        "rss_first_third_max": max(rss[:third]),
        "rss_last_third_max": max(rss[-third:]),
        "rss_samples": len(rss),
        # (seconds since the start, MiB) at about 20 points: the shape of the memory curve.
        "rss_curve": [
            (round(t - started, 1), round(r / (1 << 20)))
            for t, r in monitor.samples[:: max(1, len(monitor.samples) // 20)]
        ],
        "hung_threads": len(hung),
        "problems": list(shared.problems),
    }


def format_figures(result: dict[str, Any]) -> list[str]:
    """The result as lines to print."""
    mb = 1 << 20
    return [
        f"load: {result['writers']} writers + {result['readers']} readers for "
        f"{result['seconds']} s (tables {result['tables']}_*)",
        f"  requests served {result['requests']} ({result['requests_per_s']} req/s), "
        f"statuses {result['statuses']}, 5xx {result['server_errors']}, at most "
        f"{result['max_in_flight']} in flight at once",
        f"  upload sessions {result['sessions_created']}, blocks {result['blocks']}, "
        f"commits {result['commits']} (failed {result['commits_failed']}), "
        f"abandoned {result['abandoned']}; fewest commits of one writer "
        f"{result['commits_per_writer_min']}",
        f"  rows written {result['rows_written']}, in the tables at the end "
        f"{result['rows_final']}, read {result['rows_read']}",
        f"  snapshots read and verified {result['snapshots']} (+{result['absent_partition_reads']}"
        f" of a partition not yet created), linearizability-checked {result['snapshots_checked']}",
        f"  server RSS before {result['rss_before'] / mb:.0f} MiB, peak "
        f"{result['rss_peak'] / mb:.0f} MiB, end {result['rss_end'] / mb:.0f} MiB (max first third "
        f"{result['rss_first_third_max'] / mb:.0f}, last third "
        f"{result['rss_last_third_max'] / mb:.0f}); server CPU {result['server_cpu_s']} s",
        f"  problems: {len(result['problems'])}",
        *(f"    {p}" for p in result["problems"][:20]),
    ]
