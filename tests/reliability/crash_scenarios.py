"""Crash scenarios: ``kill -9`` the emulator at chosen or random instants of a transfer.

Used by ``test_crashes.py`` (fast mode, a few fixed and seeded cases) and by
``benchmarks/soak.py`` (a long seeded series). Our own client drives every transfer against
a child-process emulator (:class:`Emulator` with ``subprocess=True``); at the instant a
:class:`Trigger` picks, the emulator is SIGKILLed and started again on the same data
directory and port.

Jobs (each on a fresh table seeded by one committed upload, so "none" differs from "empty"):

``upload``           block upload session: blocks written under explicit ids (record and
                     Arrow writers, alternately), then one commit
``upload-buffered``  the same rows through one buffered record writer (blocks cut by size
                     and sent in the background), then a commit of the blocks written
``upload-overwrite`` ``upload`` whose commit replaces the seeded rows (``overwrite``)
``upload-partition`` ``upload`` into a partition that only its commit creates
                     (``create_partition``; "none" is then: no such partition)
``upsert``           upsert session on a primary-key table: upserts and deletes of existing
                     and new keys (buckets flushed many times), then the upsert commit
``concurrent``       two upload sessions appending to one table and an upsert session on
                     another, driven at once, so that every kill hits all three (after a
                     kill, each commit must be all or none on its own: every combination
                     of their commits is a valid state, anything else is not)

Modes:

``reattach``  the driver dies with the server (its client retries only briefly): the crash
              ends it with a :class:`TunnelError`. A new driver (a new client, as a new
              process would be) reattaches to the session by id, writes what the server
              does not hold (the blocks missing from its block list; for an upsert, the
              operations replayed in order, which is idempotent per key) and commits again
              (a commit that already happened is recognised, not repeated).
``ride``      the server is restarted at once and the client's own retries (connection
              refused while it restarts, re-sent block bodies, commit verified by reload)
              carry the same driver call through to the end.

Triggers (where the kill lands):

``request``  the n-th matching request is held by a ``delay`` fault, then the kill (mid
             block PUT, before a commit is handled, ...)
``point``    a commit is held at ``commit:staged`` (new manifest durable, not published) or
             ``commit:published`` (published, session not yet marked committed)
``log``      the k-th request of the transfer has been answered (request log), plus a
             random jitter of a few milliseconds
``time``     a random delay after the transfer (or its resumption) starts

In ``ride`` mode, after a kill the test lets the client meet the dead server, then closes a
gate in front of the client's requests while it restarts the server and arms the next
trigger (a retry must not slip past an unarmed trigger); the gate only delays requests.

After every kill, before anything resumes, the table is read from the data directory (the
state the crash left) and, in ``reattach`` mode, also through the restarted server with our
client's download session: each must be all or none of the transfer's commit, and every
table of earlier cases must still hold exactly its result. At the end the table must hold
the source exactly once (row count and order-independent checksum of every value, see
``conftest.fingerprint``); for an upsert, the expected key -> row map.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, TunnelError
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns
from airflow_provider_odps_tunnel.tunnel.errors import NoSuchPartition
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.sessions.table_base import SessionStatus

from .conftest import fingerprint

__all__ = [
    "JOBS",
    "MODES",
    "Case",
    "CrashHarness",
    "CrashStats",
    "Trigger",
    "random_case",
]

SCHEMA = "id bigint, name string, v double, ok boolean"
ARROW_SCHEMA = pa.schema(
    [("id", pa.int64()), ("name", pa.string()), ("v", pa.float64()), ("ok", pa.bool_())]
)
JOBS = ("upload", "upload-buffered", "upload-overwrite", "upload-partition", "upsert")
MODES = ("reattach", "ride")
POINTS = ("commit:staged", "commit:published")
# Retry settings per mode: the reattaching driver gives up within milliseconds of the
# crash; the riding one retries for about ten seconds (a restart takes about half a second).
RETRIES = {
    "reattach": {"retry_times": 2, "retry_delay": 0.001, "retry_max_delay": 0.005},
    "ride": {"retry_times": 60, "retry_delay": 0.02, "retry_max_delay": 0.2},
}
_WAIT = 30.0  # bound of every wait (trigger to fire, driver to end)
_POLL = 0.002
_COMMITTED = (SessionStatus.Closed, SessionStatus.Committed)


@contextmanager
def retry_options(mode: str) -> Iterator[None]:
    """The client's retry settings of ``mode`` (restored afterwards)."""
    saved = {name: getattr(options, name) for name in RETRIES[mode]}
    for name, value in RETRIES[mode].items():
        setattr(options, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(options, name, value)


def _row(key: int, tag: str, i: int) -> list[Any]:
    return [key, f"{tag}-{key}-é{'x' * (i % 7)}", key * 0.25 + i, (key + i) % 3 == 0]


# ---------------------------------------------------------------------------------- jobs
class Job:
    """One transfer into a fresh table; ``drive`` starts or resumes it with a client."""

    kind = ""

    def __init__(
        self,
        harness: CrashHarness,
        rng: random.Random,
        size: int,
        table: str | None = None,
        key_base: int = 10_000,
    ):
        self.harness = harness
        self.rng = rng
        self.size = size
        # A given table is shared with the job that created and seeded it.
        self.shared = table is not None
        self.table = table or harness.new_table_name(self.kind)
        self.key_base = key_base
        self.session_id: str | None = None
        self.phase = "idle"
        self.resumed = 0
        self.before: tuple[int, str] = (0, "")
        self.after: tuple[int, str] = (0, "")
        self.landed: list[str] = []  # the phase each kill landed in
        self.crash_states: list[str] = []  # "none" or "all", after each kill

    def seed_rows(self) -> list[list[Any]]:
        return [_row(k, "seed", 0) for k in range(self.size // 4 + 3)]

    def prepare(self) -> None:
        """Create and seed the table; fix the before and after fingerprints."""
        raise NotImplementedError

    def drive(self, tunnel: TableTunnel, mode: str) -> None:
        raise NotImplementedError

    def _seed(self, tunnel: TableTunnel, rows: list[list[Any]], partition: str | None = None):
        session = tunnel.create_upload_session(
            self.table, partition_spec=partition, create_partition=partition is not None
        )
        with session.open_record_writer(0) as writer:
            for row in rows:
                writer.write(row)
        session.commit([0])

    def served_fingerprint(self) -> tuple[int, str]:
        """The table's rows as the server answers a download (our client)."""
        return fingerprint(self.harness.served_rows(self.table))


class UploadJob(Job):
    """Blocks under explicit ids, then one commit; resumes by writing missing blocks.

    ``overwrite``: the commit replaces the table's rows. ``partitioned``: the table has a
    partition column ``pt``, the seed is in ``pt=base`` and the upload goes to ``pt=new``,
    a partition that only its commit creates (``create_partition``)."""

    kind = "upload"
    blocks = 6
    overwrite = False
    partitioned = False
    SEED_PARTITION, NEW_PARTITION = "base", "new"

    def prepare(self) -> None:
        seed = self.seed_rows()
        self.partition = f"pt={self.NEW_PARTITION}" if self.partitioned else None
        if not self.shared:
            columns = parse_columns(SCHEMA)
            schema = (
                TableSchema(columns, parse_columns("pt string"))
                if self.partitioned
                else TableSchema(columns)
            )
            self.harness.emu.catalog.create_table(self.harness.emu.project, self.table, schema)
            seed_partition = f"pt={self.SEED_PARTITION}" if self.partitioned else None
            self._seed(self.harness.tunnel(), seed, seed_partition)
        per_block = max(1, self.size // self.blocks)
        self.source = [
            [_row(self.key_base + b * per_block + i, "up", b) for i in range(per_block)]
            for b in range(self.blocks)
        ]
        stored_seed = self._stored(seed, self.SEED_PARTITION)
        added = self._stored(self.rows(), self.NEW_PARTITION)
        self.before = fingerprint(stored_seed)
        self.after = fingerprint(added if self.overwrite else stored_seed + added)

    def _stored(self, rows: list[list[Any]], partition: str) -> list[list[Any]]:
        """Rows as the table reads back (the partition value appended, as text)."""
        return [[*r, partition] for r in rows] if self.partitioned else rows

    def served_fingerprint(self) -> tuple[int, str]:
        if not self.partitioned:
            return super().served_fingerprint()
        rows = []  # records of a partition carry its values, as the table reads back
        for value in (self.SEED_PARTITION, self.NEW_PARTITION):
            rows += self.harness.served_rows(self.table, f"pt={value}")
        return fingerprint(rows)

    def rows(self) -> list[list[Any]]:
        """The rows this job adds."""
        return [r for block in self.source for r in block]

    def _session(self, tunnel: TableTunnel) -> Any:
        if self.session_id is None:
            self.phase = "session"
            session = tunnel.create_upload_session(
                self.table,
                partition_spec=self.partition,
                overwrite=self.overwrite,
                create_partition=self.partitioned,
            )
            self.session_id = session.id
            return session
        self.phase = "reattach"
        session = tunnel.create_upload_session(
            self.table, partition_spec=self.partition, upload_id=self.session_id
        )
        assert session.id == self.session_id
        self.resumed += 1
        return session

    def _write_block(self, session: Any, block: int) -> None:
        rows = self.source[block]
        if block % 2:
            batch = pa.RecordBatch.from_pylist(
                [dict(zip(ARROW_SCHEMA.names, r, strict=True)) for r in rows], schema=ARROW_SCHEMA
            )
            with session.open_arrow_writer(block) as writer:
                writer.write(batch)
        else:
            with session.open_record_writer(block) as writer:
                for row in rows:
                    writer.write(row)

    def drive(self, tunnel: TableTunnel, mode: str) -> None:
        session = self._session(tunnel)
        everything = list(range(self.blocks))
        if session.status not in _COMMITTED:
            held = set(session.blocks)
            self.phase = "blocks"
            for block in everything:
                if block not in held:
                    self._write_block(session, block)
        self.phase = "commit"
        session.commit(everything)  # returns quietly if the crash came after the commit
        self.phase = "done"


class BufferedUploadJob(UploadJob):
    """One buffered writer (blocks cut by size, sent in the background), then a commit.

    The writer is deterministic: the same rows and ``buffer_size`` give the same blocks
    under the same ids, so a resumption rewrites them all (a block id is idempotent) and
    commits exactly the blocks written."""

    kind = "upload-buffered"
    buffer_size = 4096

    def drive(self, tunnel: TableTunnel, mode: str) -> None:
        session = self._session(tunnel)
        if session.status in _COMMITTED:
            self.phase = "commit"
            session.commit(session.blocks)
            self.phase = "done"
            return
        self.phase = "blocks"
        with session.open_record_writer(buffer_size=self.buffer_size, initial_block_id=0) as w:
            for block in self.source:
                for row in block:
                    w.write(row)
        written = w.get_blocks_written()
        assert len(written) > 1, "the buffered writer should cut several blocks"
        self.phase = "commit"
        session.commit(written)
        self.phase = "done"


class OverwriteUploadJob(UploadJob):
    """An upload whose commit replaces the seeded rows (``overwrite``)."""

    kind = "upload-overwrite"
    overwrite = True


class PartitionUploadJob(UploadJob):
    """An upload into a partition its commit creates (``create_partition``)."""

    kind = "upload-partition"
    partitioned = True


class UpsertJob(Job):
    """Upserts and deletes (several bucket flushes), then the upsert commit.

    A resumption reattaches by id and, unless the session committed, replays every
    operation in order: applying a key's operations again after a prefix of them ends in
    the same final row, so the result is the expected map whatever the server held."""

    kind = "upsert"
    slot_buffer_size = 2048

    def prepare(self) -> None:
        self.harness.emu.catalog.create_table(
            self.harness.emu.project,
            self.table,
            TableSchema(parse_columns(SCHEMA)),
            primary_key=["id"],
            buckets=4,
        )
        seed = self.seed_rows()
        self._seed(self.harness.tunnel(), seed)
        state = {r[0]: r for r in seed}
        keys = len(seed) * 2
        self.ops: list[tuple[str, list[Any]]] = []
        for i in range(self.size):
            key = self.rng.randrange(keys)
            if self.rng.random() < 0.25:
                self.ops.append(("D", _row(key, "del", i)))
                state.pop(key, None)
            else:
                row = _row(key, "ups", i)
                self.ops.append(("U", row))
                state[key] = row
        self.before = fingerprint(seed)
        self.after = fingerprint(state.values())

    def drive(self, tunnel: TableTunnel, mode: str) -> None:
        # A reattaching driver must give up on a dead server rather than poll for the
        # commit's two minutes; the emulator answers a commit at once.
        timeout = 0.5 if mode == "reattach" else 120
        if self.session_id is None:
            self.phase = "session"
            session = tunnel.create_upsert_session(self.table, commit_timeout=timeout)
            self.session_id = session.id
        else:
            self.phase = "reattach"
            session = tunnel.create_upsert_session(
                self.table, upsert_id=self.session_id, commit_timeout=timeout
            )
            assert session.id == self.session_id
            self.resumed += 1
            if session.status == SessionStatus.Committed:
                self.phase = "done"
                return
        self.phase = "upserts"
        with session.open_upsert_stream(slot_buffer_size=self.slot_buffer_size) as stream:
            for op, row in self.ops:
                (stream.upsert if op == "U" else stream.delete)(row)
        self.phase = "upsert-commit"
        session.commit()
        self.phase = "done"


JOB_CLASSES: dict[str, type[Job]] = {
    "upload": UploadJob,
    "upload-buffered": BufferedUploadJob,
    "upload-overwrite": OverwriteUploadJob,
    "upload-partition": PartitionUploadJob,
    "upsert": UpsertJob,
}


# ---------------------------------------------------------------------------------- triggers
@dataclass
class Trigger:
    """When to kill: see the module docstring. ``fault`` holds the request filter and
    ``nth`` of a ``request`` trigger; ``count`` the answered requests of a ``log`` one."""

    kind: str
    point: str | None = None
    fault: dict[str, Any] | None = None
    count: int = 0
    seconds: float = 0.0
    label: str = ""

    @classmethod
    def request(cls, label: str, nth: int = 1, **fault: Any) -> Trigger:
        return cls("request", fault={**fault, "nth": nth}, label=label)

    @classmethod
    def at_point(cls, point: str) -> Trigger:
        return cls("point", point=point, label=point)

    def describe(self) -> str:
        if self.kind == "request":
            return f"request:{self.label}#{self.fault['nth']}"
        if self.kind == "point":
            return f"point:{self.point}"
        if self.kind == "log":
            return f"log:{self.count}+{self.seconds * 1000:.1f}ms"
        return f"time:{self.seconds * 1000:.0f}ms"


# Request filters of the phases, for ``request`` triggers.
BLOCK_PUT = {"method": "PUT", "session_kind": "upload"}
UPLOAD_COMMIT = {"method": "POST", "session_kind": "upload", "resource": "uploadid="}
BUCKET_PUT = {"method": "PUT", "session_kind": "upsert"}
UPSERT_COMMIT = {"method": "POST", "session_kind": "upsert", "resource": "upsertid="}


@dataclass
class Case:
    """A job, a mode and the kills to inject (one per trigger, in order)."""

    job: str
    mode: str
    triggers: list[Trigger]
    size: int = 600

    def describe(self) -> str:
        return f"{self.job}/{self.mode}: " + ", ".join(t.describe() for t in self.triggers)


# ---------------------------------------------------------------------------------- figures
@dataclass
class CrashStats:
    """What a series of cases did; :meth:`lines` prints it."""

    seed: int | None = None
    crashes: int = 0
    mid_transfer: int = 0
    by_phase: Counter = field(default_factory=Counter)
    by_trigger: Counter = field(default_factory=Counter)
    by_mode: Counter = field(default_factory=Counter)
    checks: int = 0  # commits verified all-or-nothing after a crash (this case's table)
    states: Counter = field(default_factory=Counter)  # "none" / "all" seen after a crash
    other_tables_checked: int = 0
    sessions_resumed: int = 0
    failed_attempts: int = 0  # requests of riding clients that failed (and were retried)
    driver_errors: Counter = field(default_factory=Counter)
    transfers: int = 0
    exactly_once: int = 0
    restart_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def lines(self) -> list[str]:
        wall = time.monotonic() - self.started
        return [
            f"crash series (seed {self.seed}): {self.crashes} kill -9 injected, "
            f"{self.mid_transfer} during a transfer, "
            f"{self.crashes - self.mid_transfer} after it had completed",
            "  landed in: " + _counts(self.by_phase),
            "  triggers: " + _counts(self.by_trigger),
            "  modes: " + _counts(self.by_mode),
            f"  commits verified all-or-nothing after a crash: {self.checks} "
            f"({_counts(self.states)}); earlier tables re-verified: "
            f"{self.other_tables_checked}",
            f"  sessions resumed by id: {self.sessions_resumed}; driver errors at the crash: "
            + (_counts(self.driver_errors) or "none"),
            f"  failed request attempts the riding clients retried through: {self.failed_attempts}",
            f"  transfers completed exactly once: {self.exactly_once} of {self.transfers}",
            f"  wall time {wall:.1f} s (restarts {self.restart_seconds:.1f} s)",
        ]


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


# ---------------------------------------------------------------------------------- driver
class Driver(threading.Thread):
    """Runs ``job.drive`` in a thread; ``error`` is what it raised."""

    def __init__(self, job: Job, tunnel: TableTunnel, mode: str):
        super().__init__(name=f"crash-driver-{job.table}", daemon=True)
        self.job, self.tunnel, self.mode = job, tunnel, mode
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.job.drive(self.tunnel, self.mode)
        except BaseException as exc:  # noqa: BLE001 - reported to the harness
            self.error = exc


# ---------------------------------------------------------------------------------- harness
class Group:
    """The jobs writing one table, and the table states a crash may leave: a fingerprint
    for each combination of their commits, all or none each."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.table = jobs[0].table
        if len(jobs) == 1:
            job = jobs[0]
            self.outcomes = {job.before: ("none",), job.after: ("all",)}
        else:  # uploads appending to one table: every subset of their commits
            seed = jobs[0].seed_rows()
            self.outcomes = {}
            for mask in itertools.product(("none", "all"), repeat=len(jobs)):
                rows = seed + [
                    r for job, m in zip(jobs, mask, strict=True) if m == "all" for r in job.rows()
                ]
                self.outcomes[fingerprint(rows)] = mask
        self.final = next(fp for fp, mask in self.outcomes.items() if set(mask) == {"all"})
        self.initial = next(fp for fp, mask in self.outcomes.items() if set(mask) == {"none"})

    def state(self, got: tuple[int, str], where: str) -> tuple[str, ...]:
        if got not in self.outcomes:
            raise AssertionError(
                f"{self.table} ({where}) holds {got[0]} rows matching no combination of its "
                f"{len(self.jobs)} commit(s), each all or none (none: {self.initial[0]} rows, "
                f"all: {self.final[0]} rows): a half or duplicated commit"
            )
        return self.outcomes[got]


class CrashHarness:
    """A child-process emulator and the machinery to crash it under drivers."""

    def __init__(self, data_dir: str | Path, seed: int, say: Callable[[str], None] | None = None):
        self.emu = Emulator(data_dir, subprocess=True)
        self.rng = random.Random(seed)
        self.stats = CrashStats(seed=seed)
        self.say = say or (lambda line: None)
        # Tables of completed transfers and what they hold: they must never change again.
        self.done: list[tuple[str, tuple[int, str]]] = []
        self.baseline: dict[str, tuple[float, int]] = {}  # job -> (seconds, requests)
        self._names = 0

    def __enter__(self) -> CrashHarness:
        self.emu.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.emu.running:
            self.emu.stop()

    def new_table_name(self, kind: str) -> str:
        self._names += 1
        return f"crash_{kind.replace('-', '_')}_{self._names}"

    def tunnel(self, gate: threading.Event | None = None) -> TableTunnel:
        """A fresh client (what a new driver process would build).

        With ``gate``, every attempt of a request first waits (bounded) until the gate is
        open: the harness closes it while it restarts the server and arms the next
        trigger, so that a retry cannot slip in before the trigger is armed. Failed
        attempts are counted (``stats.failed_attempts``)."""
        emu = self.emu
        entry = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
        tunnel = TableTunnel(entry)
        if gate is not None:
            rest = tunnel.tunnel_rest
            send_once = rest._send_once

            def gated(*args: Any, **kwargs: Any) -> Any:
                if not gate.wait(_WAIT):
                    raise AssertionError("the harness never reopened the gate")
                try:
                    return send_once(*args, **kwargs)
                except TunnelError:
                    self.stats.failed_attempts += 1
                    raise

            rest._send_once = gated  # type: ignore[method-assign]
        return tunnel

    # -- reading back
    def disk_fingerprint(self, table: str) -> tuple[int, str]:
        data = self.emu.catalog.read_table(self.emu.project, table)
        return fingerprint(tuple(r.values()) for r in data.to_pylist())

    def served_rows(self, table: str, partition: str | None = None) -> list[list[Any]]:
        """Rows downloaded with our client (a partition that does not exist: none)."""
        try:
            session = self.tunnel().create_download_session(table, partition_spec=partition)
        except NoSuchPartition:
            return []
        if not session.count:
            return []
        with session.open_record_reader(0, session.count) as reader:
            return [list(r.values) for r in reader]

    def _check_others(self) -> None:
        for table, expected in self.done:
            got = self.disk_fingerprint(table)
            assert got == expected, f"{table}, committed earlier, changed after a crash"
            self.stats.other_tables_checked += 1

    # -- the kill
    def _log_size(self) -> int:
        path = self.emu.request_log_path
        return path.stat().st_size if path.exists() else 0

    def _requests_logged(self, since: int) -> int:
        """Requests answered since the request log had ``since`` bytes."""
        with open(self.emu.request_log_path, "rb") as fh:
            fh.seek(since)
            return fh.read().count(b"\n")

    def _arm(self, trigger: Trigger) -> Callable[[], bool]:
        """Arm ``trigger``; returns the predicate telling that it is time to kill."""
        if trigger.kind in ("point", "request"):
            if trigger.kind == "point":
                self.emu.faults.add(kind="delay", point=trigger.point, seconds=_WAIT * 2)
            else:
                self.emu.faults.add(kind="delay", seconds=_WAIT * 2, **trigger.fault)
            faults = self.emu.faults
            return lambda: bool(faults.injected)
        if trigger.kind == "log":
            start = self._log_size()
            return lambda: self._requests_logged(start) >= trigger.count
        at = time.monotonic() + trigger.seconds
        return lambda: time.monotonic() >= at

    def _fire(
        self, trigger: Trigger, ready: Callable[[], bool], drivers: list[Driver], jobs: list[Job]
    ) -> None:
        """Wait for the trigger (bounded), SIGKILL the emulator; note where it landed (for
        each of ``jobs``: "after" when it has no driver running)."""

        def alive() -> bool:
            return any(d.is_alive() for d in drivers)

        # Until the trigger fires, or every driver has ended without firing it.
        wait_until(
            lambda: ready() or not alive(),
            timeout=_WAIT,
            interval=_POLL,
            message=trigger.describe(),
        )
        fired = bool(ready())
        if fired and trigger.kind == "log" and trigger.seconds:
            time.sleep(trigger.seconds)
        phases = [d.job.phase if d.is_alive() else "after" for d in drivers]
        self.emu.kill()
        running = {id(d.job): phase for d, phase in zip(drivers, phases, strict=True)}
        for job in jobs:
            job.landed.append(running.get(id(job), "after"))
        if not any(p != "after" for p in phases):
            landed = "after"
        elif len(drivers) > 1:
            landed = "concurrent"
        else:
            landed = phases[0]
        self.stats.crashes += 1
        self.stats.by_trigger[trigger.kind] += 1
        self.stats.by_phase[landed] += 1
        if landed != "after":
            self.stats.mid_transfer += 1

    def _restart(self) -> None:
        started = time.monotonic()
        self.emu.start()
        self.stats.restart_seconds += time.monotonic() - started

    def _after_crash(self, groups: list[Group], served: bool) -> None:
        """The checks made after a kill, before anything resumes: every table of the
        running transfers holds all or none of each of their commits, on disk and (with
        ``served``) through the restarted server; every earlier table is unchanged."""
        states = [
            g.state(self.disk_fingerprint(g.table), "on disk after the crash") for g in groups
        ]
        if served:
            self._restart()
            for group, state in zip(groups, states, strict=True):
                served_state = group.state(
                    group.jobs[0].served_fingerprint(), "served after the restart"
                )
                assert served_state == state, "the restarted server serves another state"
        for group, state in zip(groups, states, strict=True):
            for job, one in zip(group.jobs, state, strict=True):
                job.crash_states.append(one)
                self.stats.checks += 1
                self.stats.states[one] += 1
        self._check_others()

    # -- cases
    def clean_run(self, job_kind: str, size: int = 600) -> Job:
        """A transfer without a crash; records its duration and request count."""
        job = JOB_CLASSES[job_kind](self, self.rng, size)
        job.prepare()
        before = self._log_size()
        started = time.monotonic()
        with retry_options("reattach"):
            job.drive(self.tunnel(), "reattach")
        self.baseline[job_kind] = (time.monotonic() - started, self._requests_logged(before))
        self._finish([Group([job])])
        return job

    def run_case(self, case: Case) -> Job:
        """Run one case: every trigger kills once; then verify exactly once. Returns the
        job (for ``concurrent``, the first upload)."""
        if case.job == "concurrent":
            return self.run_concurrent(case.mode, case.triggers, size=case.size)[0].jobs[0]
        job = JOB_CLASSES[case.job](self, self.rng, case.size)
        job.prepare()
        self._run([Group([job])], case.mode, case.triggers)
        self.say(f"  {case.describe()} -> exactly once ({job.resumed} resumptions)")
        return job

    def run_concurrent(
        self, mode: str, triggers: list[Trigger], uploads: int = 2, size: int = 600
    ) -> list[Group]:
        """``uploads`` upload sessions appending to one table and an upsert session on
        another, all at once; each kill hits them all."""
        lead = UploadJob(self, self.rng, size)
        shared = [
            UploadJob(self, self.rng, size, table=lead.table, key_base=10_000 + 100_000 * i)
            for i in range(1, uploads)
        ]
        upsert = UpsertJob(self, self.rng, size)
        for job in [lead, *shared, upsert]:
            job.prepare()
        groups = [Group([lead, *shared]), Group([upsert])]
        self._run(groups, mode, triggers)
        self.say(
            f"  concurrent/{mode}: {', '.join(t.describe() for t in triggers)} -> exactly once"
        )
        return groups

    def _run(self, groups: list[Group], mode: str, triggers: list[Trigger]) -> None:
        jobs = [job for group in groups for job in group.jobs]
        self.stats.by_mode[mode] += len(triggers)
        with retry_options(mode):
            if mode == "ride":
                self._ride(groups, jobs, triggers)
            else:
                self._reattach(groups, jobs, triggers)
        self.stats.sessions_resumed += sum(job.resumed for job in jobs)
        self._finish(groups)

    def _drive(self, jobs: list[Job], mode: str, gate: threading.Event | None = None) -> list:
        drivers = [Driver(job, self.tunnel(gate), mode) for job in jobs if job.phase != "done"]
        for driver in drivers:
            driver.start()
        return drivers

    def _reattach(self, groups: list[Group], jobs: list[Job], triggers: list[Trigger]) -> None:
        for trigger in triggers:
            ready = self._arm(trigger)
            drivers = self._drive(jobs, "reattach")
            self._fire(trigger, ready, drivers, jobs)
            for driver in drivers:
                driver.join(_WAIT)
                assert not driver.is_alive(), f"a driver hung after the crash ({driver.job.phase})"
                if driver.error is not None:
                    assert isinstance(driver.error, TunnelError), (
                        f"the crash reached the driver as {type(driver.error).__name__}: "
                        f"{driver.error} (not a TunnelError)"
                    )
                    self.stats.driver_errors[type(driver.error).__name__] += 1
            self._after_crash(groups, served=True)
        for driver in self._drive(jobs, "reattach"):
            driver.join(_WAIT * 2)
            assert not driver.is_alive(), f"a resumed driver hung ({driver.job.phase})"
            if driver.error is not None:
                raise AssertionError(
                    f"resuming {driver.job.table} failed: {driver.error!r}"
                ) from driver.error

    def _ride(self, groups: list[Group], jobs: list[Job], triggers: list[Trigger]) -> None:
        gate = threading.Event()
        gate.set()
        ready = self._arm(triggers[0])
        drivers = self._drive(jobs, "ride", gate)
        for i, trigger in enumerate(triggers):
            if i:
                ready = self._arm(trigger)
                gate.set()
            failed = self.stats.failed_attempts
            self._fire(trigger, ready, drivers, jobs)
            self._after_crash(groups, served=False)
            # Let the clients' retries meet the dead server (connection refused) first.
            with suppress(TimeoutError):  # at most 1 s: a client may not be retrying now
                wait_until(
                    lambda failed=failed: (
                        self.stats.failed_attempts != failed
                        or not any(d.is_alive() for d in drivers)
                    ),
                    timeout=1.0,
                    interval=_POLL,
                    message="a client to meet the dead server",
                )
            gate.clear()
            self._restart()
        gate.set()
        for driver in drivers:
            driver.join(_WAIT * 2)
            assert not driver.is_alive(), f"a client hung after the restart ({driver.job.phase})"
            if driver.error is not None:
                raise AssertionError(
                    f"the client did not ride through the restart: {driver.error!r}"
                ) from driver.error

    def _finish(self, groups: list[Group]) -> None:
        for group in groups:
            for job in group.jobs:
                assert job.phase == "done", (job.table, job.phase)
            got = self.disk_fingerprint(group.table)
            assert got == group.final, (
                f"{group.table}: {got[0]} rows, expected the source exactly once ({group.final[0]})"
            )
            assert group.jobs[0].served_fingerprint() == group.final
            self.stats.transfers += len(group.jobs)
            self.stats.exactly_once += len(group.jobs)
            self.done.append((group.table, group.final))


# ---------------------------------------------------------------------------------- random
def random_trigger(
    rng: random.Random, job: str, baseline: tuple[float, int] | None, first: bool
) -> Trigger:
    """A random kill instant for ``job``; ``first``: the transfer's first kill."""
    upsert = job == "upsert" or (job == "concurrent" and rng.random() < 0.5)
    choice = rng.choice(["request", "request", "point", "log", "time"])
    if choice == "point":
        return Trigger.at_point(rng.choice(POINTS))
    if choice == "request":
        if rng.random() < 0.5:
            return Trigger.request("commit", **(UPSERT_COMMIT if upsert else UPLOAD_COMMIT))
        put = BUCKET_PUT if upsert else BLOCK_PUT
        return Trigger.request("put", nth=rng.randint(1, 4), **put)
    seconds, requests = baseline or (0.3, 12)
    if choice == "log":
        return Trigger(
            "log",
            count=rng.randint(1, max(1, requests - 1 if first else 3)),
            seconds=rng.uniform(0, 0.005),
        )
    return Trigger("time", seconds=rng.uniform(0, seconds if first else seconds / 3))


def random_case(
    rng: random.Random,
    baselines: dict[str, tuple[float, int]],
    max_kills: int = 3,
    sizes: tuple[int, ...] = (300, 600, 1200),
) -> Case:
    """A random job, mode and size with one to ``max_kills`` random kills."""
    job = rng.choice([*JOBS, "concurrent"])
    mode = rng.choice(MODES)
    kills = rng.randint(1, max_kills)
    baseline = baselines.get(job) or baselines.get("upload")
    triggers = [random_trigger(rng, job, baseline, i == 0) for i in range(kills)]
    return Case(job, mode, triggers, size=rng.choice(sizes))
