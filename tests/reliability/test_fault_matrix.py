"""Fault matrix: every session kind × every injected fault ends exact or with a clear error.

A cell is "exact" when the client finishes and the data equals the source (row count and an
order-independent checksum; for volumes, the file's bytes), "error" when it raises a
``TunnelError`` and the table (or volume partition) is unchanged, "unknown" when the
service carried out a request the client gave up on and cannot safely repeat: the
``TunnelError`` says the data may have been stored, and it was, exactly once. The expected
outcome of every cell is asserted; the matrix is printed at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import pyarrow as pa
import pytest
from polling import wait_until

from airflow_provider_odps_tunnel.tunnel import InstanceTunnel, VolumeTunnel, errors
from airflow_provider_odps_tunnel.tunnel.options import options

from .conftest import fingerprint, show, table_fingerprint

SCHEMA = "id bigint, name string, v double"
N = 300
SOURCE = [[i, f"name-{i}-é", i * 0.5] for i in range(N)]
SEED = [[10_000 + i, f"seed-{i}", -1.0] for i in range(7)]
VOLUME = "vol_fault_matrix"
FILE = "dir/f.bin"
FILE_DATA = bytes(range(256)) * 40 + "é\n".encode()  # 10 KiB
# "slow": the answer comes later than the client's read timeout. Short values keep the
# suite fast; the budget of 5 attempts (options.retry_times = 4) x READ_TIMEOUT outlasts
# DELAY, so a retry that queues behind the delayed request still gets through.
READ_TIMEOUT = 0.4
DELAY = 1.0

KINDS = [
    "block",
    "stream",
    "upsert",
    "download_records",
    "download_arrow",
    "preview",
    "instance_download",
    "volume_upload",
    "volume_download",
]
FAULTS = {
    "reset": {"kind": "reset_after_bytes", "bytes": 200},
    "500": {"kind": "status", "status": 500},
    "502": {"kind": "status", "status": 502},
    "503": {"kind": "status", "status": 503},
    "429": {"kind": "throttle", "seconds": 0.05},
    "slow": {"kind": "delay", "seconds": DELAY},
    "crc": {"kind": "corrupt_crc"},
    "expired": {"kind": "expire_session"},
}
UPLOADS = ("block", "stream", "upsert")
# The data request each kind's fault is armed on: (method, fault session kind).
TARGET = {
    "block": ("PUT", "upload"),
    "stream": ("PUT", "stream"),
    "upsert": ("PUT", "upsert"),
    "download_records": ("GET", "download"),
    "download_arrow": ("GET", "download"),
    "preview": ("GET", "preview"),
    "instance_download": ("GET", "instance"),
    "volume_upload": ("POST", "volume"),  # the file write
    "volume_download": ("GET", "volume"),
}
# Every cell's required outcome. An expired session cannot be used any more: the client
# must say so. Preview has no session, so "expired" cannot fire there (exact). A corrupted
# block, stream or upsert PUT is answered `CorruptedDataStream` (400), which reaches the
# caller as with pyodps (rewriting the block is the retry; pyodps 0.13.2's upsert flush
# retries no 4xx either).
EXPECTED = {
    (kind, fault): ("error" if fault == "expired" and kind != "preview" else "exact")
    for kind in KINDS
    for fault in FAULTS
}
EXPECTED["block", "crc"] = EXPECTED["stream", "crc"] = EXPECTED["upsert", "crc"] = "error"
# "slow" (kind `delay`, DELAY s against a READ_TIMEOUT s read timeout), per cell:
# - block: the block PUT waits before it is handled, and the commit waits *after* it has
#   published the rows (`point="commit:published"`): the commit lands although the client
#   gave up on it. Re-sending a block id replaces the block, and a commit retried on a
#   committed session is answered as done: exact, rows stored once.
# - upsert: the same two faults; upserts are keyed by primary key and the commit is
#   idempotent: exact.
# - stream: every PUT is a commit, so the fault is the batch that lands and is answered
#   late. The client sends the batch again with the same retry trace id (and the next
#   retry index), and the emulator answers a trace it already applied as a replay without
#   storing it again: exact, rows stored once (see "drop_answer" in
#   tests/client/test_stream_fidelity.py for the same with the answer cut).
# - downloads, preview, instance download: the data GET waits; reading is idempotent, the
#   reader asks again from its cursor: exact.
# - volume_upload: the file write waits before it is handled, and so does the commit PUT,
#   which is then still carried out after the client gave up. Writing a file name again
#   replaces the file, and a commit retried on a committed session is answered as done:
#   exact, file stored once.
# - volume_download: the data GET waits; the reader resumes at its byte: exact.
# Cells whose request was carried out by the server although the client gave up, and which
# cannot be repeated safely: the client raises a TunnelError saying the data may have been
# stored, and the table must hold it exactly once. None is left: the stream batch, the last
# such cell, is re-sent under its retry trace id.
MAY_HAVE_LANDED: set[tuple[str, str]] = set()
# A corrupted volume file write is answered `CorruptedDataStream` (400), as a block PUT is.
EXPECTED["volume_upload", "crc"] = "error"
# Known defects (docs/reliability.md): strict xfail, so a fix turns them into failures that
# ask for this table to be updated.
DEFECTS: dict[tuple[str, str], str] = {}
CELLS = [
    pytest.param(
        kind,
        fault,
        id=f"{kind}-{fault}",
        marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=DEFECTS[kind, fault]),
    )
    if (kind, fault) in DEFECTS
    else pytest.param(kind, fault, id=f"{kind}-{fault}")
    for kind in KINDS
    for fault in FAULTS
]
RESULTS: dict[tuple[str, str], str] = {}
FIRED: dict[tuple[str, str], int] = {}  # faults injected per cell
_partitions = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request):
    yield
    width = max(len(k) for k in KINDS)
    lines = [
        "",
        "fault matrix (exact | error = TunnelError, data unchanged | unknown = TunnelError "
        "saying the batch may have been stored; it was, once | raw = other "
        "exception; ! = differs from expected)",
    ]
    lines.append(" " * width + " | " + " | ".join(f"{f:>7}" for f in FAULTS))
    for kind in KINDS:
        cells = []
        for fault in FAULTS:
            got = RESULTS.get((kind, fault), "-")
            mark = "" if got in ("-", EXPECTED[(kind, fault)]) else "!"
            cells.append(f"{got + mark:>7}")
        lines.append(f"{kind:<{width}} | " + " | ".join(cells))
    survived = sum(n for cell, n in FIRED.items() if RESULTS.get(cell) == "exact")
    lines.append(
        f"faults injected: {sum(FIRED.values())} in {len(FIRED)} cells; "
        f"survived with exact data: {survived}; "
        f"clear errors, data unchanged: {sum(v == 'error' for v in RESULTS.values())} cells; "
        f"clear errors, outcome unknown: {sum(v == 'unknown' for v in RESULTS.values())} cells"
    )
    show(request, lines)


@pytest.fixture(scope="module")
def volume(emulator) -> str:
    emulator.catalog.create_volume(emulator.project, VOLUME, if_not_exists=True)
    return VOLUME


def _seed(tunnel, table: str, rows: list[list]) -> None:
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        for row in rows:
            writer.write(row)
    session.commit([0])


def _volume_files(emulator, partition: str) -> dict[str, str]:
    """Every committed file of a volume partition: name -> SHA-256 of its bytes."""
    root = emulator.catalog.volume_dir(emulator.project, VOLUME) / "files" / partition
    if not root.is_dir():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _upload_file(vt, partition: str, arm=None) -> None:
    session = vt.create_upload_session(VOLUME, partition)
    if arm is not None:
        arm()
    with session.open(FILE) as writer:
        writer.write(FILE_DATA)
    session.commit([FILE])


class Cell:
    """Arms one cell's fault(s) and waits, with a bound, until delayed requests are done."""

    def __init__(self, emulator, faults, monkeypatch, kind: str, fault: str):
        self.emulator, self.faults, self.monkeypatch = emulator, faults, monkeypatch
        self.kind, self.fault = kind, fault
        log = emulator.request_log_path
        self._log_start = log.stat().st_size if log.exists() else 0

    def arm(self) -> None:
        spec = dict(FAULTS[self.fault])
        method, session_kind = TARGET[self.kind]
        if spec["kind"] in ("reset_after_bytes", "corrupt_crc"):
            spec["direction"] = "request" if method in ("PUT", "POST") else "response"
        if self.fault == "slow":
            self.monkeypatch.setattr(options, "read_timeout", READ_TIMEOUT)
            if self.kind in ("block", "upsert", "stream"):
                # The commit publishes the rows, then answers after the read timeout.
                self.faults.add(kind="delay", point="commit:published", seconds=DELAY)
            if self.kind == "volume_upload":
                self.faults.add(method="PUT", session_kind="volume", **spec)  # the commit
            if self.kind == "stream":
                return
        self.faults.add(method=method, session_kind=session_kind, **spec)

    def settle(self) -> None:
        """Wait (bounded poll) until every request a delay fault held has been handled, so
        that no late write can change the data after it was checked. Such a request took at
        least DELAY by the server's clock; its request-log line is written when it ends."""
        delays = [e for e in self.faults.injected if e["kind"] == "delay"]
        held = sum(e["method"] != "-" for e in delays)  # before the request was handled
        held_inside = len(delays) - held  # at a commit instant, inside a request
        if not delays:
            return

        def settled() -> bool:
            with open(self.emulator.request_log_path, "rb") as fh:
                fh.seek(self._log_start)
                lines = [json.loads(line) for line in fh if line.strip()]
            done = sum(line.get("fault") == "delay" for line in lines)
            done_inside = sum(
                line.get("fault") is None and line.get("ms", 0) >= DELAY * 1000 for line in lines
            )
            return done >= held and done_inside >= held_inside

        wait_until(
            settled,
            timeout=10 * DELAY,
            interval=0.02,
            message="every request a delay fault held to finish",
        )


def _run(tunnel, odps, table: str, partition: str, kind: str, cell: Cell):
    """Runs one transfer with the fault armed; returns the rows or bytes read, or None."""
    if kind == "block":
        session = tunnel.create_upload_session(table)
        cell.arm()
        with session.open_record_writer(0) as writer:
            for row in SOURCE:
                writer.write(row)
        session.commit([0])
        return None
    if kind == "stream":
        session = tunnel.create_stream_upload_session(table)
        cell.arm()
        with session.open_record_writer() as writer:
            for row in SOURCE:
                writer.write(row)
        return None
    if kind == "upsert":
        session = tunnel.create_upsert_session(table)
        cell.arm()
        with session.open_upsert_stream() as stream:
            for row in SOURCE:
                stream.upsert(row)
        session.commit()
        return None
    if kind == "preview":
        cell.arm()
        result = tunnel.open_preview_reader(table, read_all=True)
        return [list(r.values()) for r in result.to_pylist()]
    if kind == "instance_download":
        instance = odps.execute_sql(f"SELECT id, name, v FROM {table}")
        session = InstanceTunnel(odps).create_download_session(instance)
        assert session.count == N
        cell.arm()
        with session.open_record_reader(0, session.count) as reader:
            return [list(r.values) for r in reader]
    if kind == "volume_upload":
        vt = VolumeTunnel(odps)
        _upload_file(vt, partition, cell.arm)
        return vt.create_download_session(VOLUME, partition, FILE).open().read()
    if kind == "volume_download":
        vt = VolumeTunnel(odps)
        session = vt.create_download_session(VOLUME, partition, FILE)
        cell.arm()
        return session.open().read()
    session = tunnel.create_download_session(table)
    cell.arm()
    if kind == "download_arrow":
        with session.open_arrow_reader(0, session.count) as reader:
            return [list(r.values()) for r in pa.Table.from_batches(list(reader)).to_pylist()]
    with session.open_record_reader(0, session.count) as reader:
        return [list(r.values) for r in reader]


@pytest.mark.parametrize(("kind", "fault"), CELLS)
def test_cell(tunnel, odps, emulator, emulator_table, volume, faults, monkeypatch, kind, fault):
    partition = f"p{next(_partitions)}"
    if kind == "upsert":
        table = emulator_table(SCHEMA, primary_key=["id"], buckets=2)
    else:
        table = emulator_table(SCHEMA)
    _seed(tunnel, table, SEED if kind in UPLOADS else SOURCE)
    if kind == "volume_download":
        _upload_file(VolumeTunnel(odps), partition)

    def state():
        return table_fingerprint(emulator, table), _volume_files(emulator, partition)

    before = state()
    cell = Cell(emulator, faults, monkeypatch, kind, fault)
    try:
        got = _run(tunnel, odps, table, partition, kind, cell)
    except errors.TunnelError as exc:
        cell.settle()
        outcome = "error"
        assert str(exc), "the error must say what failed"
        if (kind, fault) in MAY_HAVE_LANDED:
            outcome = "unknown"
            assert "may have been" in str(exc), exc
            landed = (fingerprint(SEED + SOURCE), before[1])
            assert state() == landed, "the batch was not stored exactly once"
        else:
            assert state() == before, "a failed transfer changed the data"
    except Exception as exc:  # not a clear error: recorded in the matrix, then failed
        cell.settle()
        RESULTS[(kind, fault)] = "raw"
        FIRED[(kind, fault)] = sum(faults.counts.values())
        assert state() == before, "a failed transfer changed the data"
        raise AssertionError(f"{kind} × {fault}: {type(exc).__name__}: {exc}") from exc
    else:
        cell.settle()
        outcome = "exact"
        if kind in UPLOADS:
            assert state() == (fingerprint(SEED + SOURCE), before[1])
        elif kind == "volume_upload":
            assert got == FILE_DATA
            digest = hashlib.sha256(FILE_DATA).hexdigest()
            assert state() == (before[0], {FILE: digest})
        elif kind == "volume_download":
            assert got == FILE_DATA
            assert state() == before
        else:
            assert fingerprint(got) == fingerprint(SOURCE)
            assert state() == before
    fired = sum(faults.counts.values())
    FIRED[(kind, fault)] = fired
    RESULTS[(kind, fault)] = outcome if fired else "nofire"
    if not (kind == "preview" and fault == "expired"):
        assert fired >= 1, f"the {fault} fault never fired"
    assert outcome == EXPECTED[(kind, fault)]
