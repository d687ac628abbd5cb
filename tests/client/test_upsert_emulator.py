"""Our upsert client against the emulator's slot moves (HTTP 308, fault ``move_slot``) and
asynchronous commits (``upsert_commit_delay``): what tests/client/test_scripted_server.py
checks on a scripted server, here against the emulator's real session state."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.emulator.cli import build_parser
from airflow_provider_odps_tunnel.emulator.server import option_args
from airflow_provider_odps_tunnel.emulator.state import EmulatorConfig
from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    TableSchema,
    TableTunnel,
    errors,
)
from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.transport import retry

from .conftest import VirtualClock

COLUMNS = "k bigint, name string, v double"
N_KEYS = 40
# Records the writes of write_rows() send: 40 upserts, 20 replacements, 8 deletes.
N_RECORDS = N_KEYS + N_KEYS // 2 + N_KEYS // 5


def write_rows(session: Any, **stream_options: Any) -> dict[int, list]:
    """Upsert keys 0..39, replace the even ones, delete multiples of 5; the expected rows."""
    with session.open_upsert_stream(**stream_options) as stream:
        for k in range(N_KEYS):
            stream.upsert(session.new_record([k, f"v{k}", k * 1.0]))
        stream.flush()
        for k in range(0, N_KEYS, 2):
            stream.upsert([k, f"w{k}", -1.0])
        for k in range(0, N_KEYS, 5):
            stream.delete([k, None, None])
    return {
        k: ([k, f"w{k}", -1.0] if k % 2 == 0 else [k, f"v{k}", k * 1.0])
        for k in range(N_KEYS)
        if k % 5
    }


def table_rows(emu: Emulator, table: str) -> list[list]:
    data = emu.catalog.read_table(emu.project, table)
    return sorted((list(r.values()) for r in data.to_pylist()), key=lambda r: r[0])


def applied_records(emu: Emulator, session_id: str) -> int:
    """Records of every bucket PUT the emulator accepted into the session (from its file)."""
    session = json.loads((emu.data_dir / "sessions" / f"{session_id}.json").read_text())
    return sum(p["rows"] for p in session["pending"])


def log_lines(emu: Emulator, session_id: str, check: Callable[[list[dict]], bool]) -> list[dict]:
    """The request-log lines of a session, once ``check`` holds for them (lines are written
    just after each answer, so the last ones may lag a moment; bounded poll)."""

    def mine() -> list[dict]:
        lines = [json.loads(x) for x in emu.request_log_path.read_text().splitlines()]
        return [x for x in lines if x.get("session") == session_id]

    def checked() -> list[dict] | None:
        lines = mine()
        return lines if lines and check(lines) else None

    # On timeout the lines as they are: the caller's asserts then show what is missing.
    with contextlib.suppress(TimeoutError):
        return wait_until(
            checked,
            timeout=10,
            interval=0.01,
            message=f"the request log of session {session_id}",
        )
    return mine()


def put_statuses(lines: list[dict]) -> list[int]:
    return [x["status"] for x in lines if x["method"] == "PUT"]


@pytest.fixture
def pk_table(emulator_table) -> str:
    return emulator_table(COLUMNS, primary_key=["k"], buckets=6)


# ------------------------------------------------------------------ slot moves (HTTP 308)


def test_slot_moves_are_followed_and_each_body_applied_once(tunnel, emulator, pk_table, faults):
    session = tunnel.create_upsert_session(pk_table, slot_num=3)
    home = f"{emulator.host}:{emulator.port}"
    assert {slot.server for slot in session.buckets.values()} == {home}
    faults.add(method="PUT", session_kind="upsert", kind="move_slot", times=4)
    expected = write_rows(session)
    session.commit()

    assert session.status == session.Status.Committed
    assert table_rows(emulator, pk_table) == [expected[k] for k in sorted(expected)]
    assert faults.counts == {"move_slot": 4}
    # Exactly once: the 308'd bodies were not applied, their resends were.
    assert applied_records(emulator, session.id) == N_RECORDS
    lines = log_lines(emulator, session.id, lambda ls: put_statuses(ls).count(308) >= 4)
    statuses = put_statuses(lines)
    assert statuses.count(308) >= 4 and set(statuses) == {200, 308}
    assert [x["fault"] for x in lines if x.get("fault")] == ["move_slot"] * 4
    # The session now lists the moved slots on their new servers, a slot's buckets together.
    again = tunnel.create_upsert_session(pk_table, upsert_id=session.id)
    slots: dict[str, set[str]] = {}
    for slot in again.buckets.values():
        slots.setdefault(slot.slot, set()).add(slot.server)
    assert all(len(servers) == 1 for servers in slots.values())
    moved = {s for servers in slots.values() for s in servers} - {home}
    assert moved and all(s.startswith("127.0.0.") and s != home for s in moved)


def test_slot_move_to_a_named_server(tunnel, emulator, pk_table, faults):
    session = tunnel.create_upsert_session(pk_table)
    faults.add(session_kind="upsert", kind="move_slot", server="10.1.2.3:9000")
    with session.open_upsert_stream() as stream:
        stream.upsert([7, "seven", 7.0])
    assert {(s.slot, s.server) for s in session.buckets.values()} == {("0", "10.1.2.3:9000")}
    session.commit()
    assert table_rows(emulator, pk_table) == [[7, "seven", 7.0]]
    lines = log_lines(emulator, session.id, lambda ls: len(put_statuses(ls)) >= 2)
    assert put_statuses(lines) == [308, 200]
    assert applied_records(emulator, session.id) == 1


def test_slot_move_without_a_routed_server_makes_the_client_reload(
    tunnel, emulator, pk_table, faults
):
    session = tunnel.create_upsert_session(pk_table)
    faults.add(session_kind="upsert", kind="move_slot", announce=False)
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "one", 1.0])
    session.commit()
    assert table_rows(emulator, pk_table) == [[1, "one", 1.0]]
    (server,) = {slot.server for slot in session.buckets.values()}
    assert server != f"{emulator.host}:{emulator.port}"
    lines = log_lines(emulator, session.id, lambda ls: len(put_statuses(ls)) >= 2)
    sequence = [(x["method"], x["status"]) for x in lines]
    put_308 = sequence.index(("PUT", 308))
    assert sequence[put_308 + 1 : put_308 + 3] == [("GET", 200), ("PUT", 200)]


def test_a_stale_route_is_redirected_not_applied(tunnel, emulator, pk_table, faults):
    session = tunnel.create_upsert_session(pk_table)
    stale = tunnel.create_upsert_session(pk_table, upsert_id=session.id)  # routes before move
    faults.add(session_kind="upsert", kind="move_slot")
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "one", 1.0])
    moved = session.buckets[0].server
    with stale.open_upsert_stream() as stream:  # still names the old server: 308, then resent
        stream.upsert([2, "two", 2.0])
        stream.delete([1, None, None])
    assert {(s.slot, s.server) for s in stale.buckets.values()} == {("0", moved)}
    session.commit()
    assert table_rows(emulator, pk_table) == [[2, "two", 2.0]]
    assert faults.counts == {"move_slot": 1}
    assert applied_records(emulator, session.id) == 3
    lines = log_lines(emulator, session.id, lambda ls: put_statuses(ls).count(200) >= 3)
    puts = [x for x in lines if x["method"] == "PUT"]
    assert [x["status"] for x in puts[:2]] == [308, 200] and puts[0]["fault"] == "move_slot"
    # Keys 1 and 2 (two buckets, sent in parallel): the first stale PUT is redirected and
    # updates the whole slot's route, so the other may already use the new server.
    later = [x["status"] for x in puts[2:]]
    assert later.count(200) == 2 and later.count(308) in (1, 2)
    assert all(bool(x.get("stale_route")) == (x["status"] == 308) for x in puts[2:])


def test_a_bucket_that_keeps_moving_fails_clearly_and_applies_nothing(
    tunnel, emulator, pk_table, faults, monkeypatch, virtual_clock
):
    monkeypatch.setattr(options, "throttle_retry_times", 2)
    session = tunnel.create_upsert_session(pk_table)
    faults.add(session_kind="upsert", kind="move_slot", times=0)
    stream = session.open_upsert_stream()
    stream.upsert([3, "three", 3.0])
    with pytest.raises(errors.TunnelError, match="keeps moving") as info:
        stream.close()
    assert info.value.session_id == session.id and info.value.block_id is not None
    assert faults.counts["move_slot"] == 3  # the first PUT and 2 retries
    base = options.tunnel_retry_base_delay  # the tunnel's 308 waits double (pyodps 0.13.2)
    assert virtual_clock.sleeps == [base, 2 * base]
    assert applied_records(emulator, session.id) == 0


def test_move_slot_is_only_for_upsert_puts(faults):
    with pytest.raises(ValueError, match="upsert bucket PUTs"):
        faults.add(session_kind="stream", kind="move_slot")
    with pytest.raises(ValueError, match="upsert bucket PUTs"):
        faults.add(method="POST", session_kind="upsert", kind="move_slot")


def test_move_slot_does_not_touch_other_requests(tunnel, emulator, emulator_table, faults):
    """Armed but unmatched (another table), the fault leaves upserts alone."""
    table = emulator_table(COLUMNS, primary_key=["k"], buckets=2)
    faults.add(session_kind="upsert", kind="move_slot", resource="tables/no_such_table")
    session = tunnel.create_upsert_session(table)
    expected = write_rows(session)
    session.commit()
    assert table_rows(emulator, table) == [expected[k] for k in sorted(expected)]
    assert faults.counts == {}


# ------------------------------------------------------------------ asynchronous commit

DELAY = 10.0


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory) -> Iterator[Emulator]:
    """An emulator whose upsert commits report ``committing`` for DELAY clock seconds."""
    emu = Emulator(
        tmp_path_factory.mktemp("slow-upsert"),
        project="slow_upsert_project",
        upsert_commit_delay=DELAY,
    )
    with emu:
        yield emu


class VirtualTime(VirtualClock):
    """The client's clock (``retry.clock``): sleeping advances it and the emulator's clock."""

    def __init__(self, emu: Emulator):
        super().__init__()
        self.emu = emu

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.emu.clock.advance(seconds)


@pytest.fixture
def virtual_time(slow_emulator, monkeypatch) -> VirtualTime:
    fake = VirtualTime(slow_emulator)
    monkeypatch.setattr(retry, "clock", fake)
    return fake


@pytest.fixture
def slow_tunnel(slow_emulator) -> TableTunnel:
    emu = slow_emulator
    return TableTunnel(ODPS(emu.access_id, emu.secret_access_key, emu.project, emu.endpoint))


@pytest.fixture
def slow_table(slow_emulator, request) -> Iterator[str]:
    emu = slow_emulator
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    emu.catalog.create_table(
        emu.project, name, TableSchema(parse_columns(COLUMNS)), primary_key=["k"], buckets=4
    )
    yield name
    emu.catalog.drop_table(emu.project, name, if_exists=True)


def test_commit_is_polled_until_committed(slow_emulator, slow_tunnel, slow_table, virtual_time):
    session = slow_tunnel.create_upsert_session(slow_table, slot_num=2)
    expected = write_rows(session)
    session.commit(async_=True)
    assert session.status == session.Status.Committing
    session.reload()
    assert session.status == session.Status.Committing
    late = session.open_upsert_stream()
    late.upsert([99, "late", 0.0])
    with pytest.raises(errors.StatusConflict):  # a committing session takes no more data
        late.close()

    session.commit()
    assert session.status == session.Status.Committed
    assert virtual_time.sleeps == [1.0, 2.0, 4.0, 8.0]  # committed once 10 s had passed
    assert table_rows(slow_emulator, slow_table) == [expected[k] for k in sorted(expected)]
    session.commit()  # a repeated commit changes nothing
    assert table_rows(slow_emulator, slow_table) == [expected[k] for k in sorted(expected)]
    lines = log_lines(slow_emulator, session.id, lambda ls: len(ls) >= 2)
    assert all(x.get("error") in (None, "StatusConflict") for x in lines)


def test_commit_timeout_names_the_session(slow_emulator, slow_tunnel, slow_table, virtual_time):
    session = slow_tunnel.create_upsert_session(slow_table, commit_timeout=DELAY / 2)
    expected = write_rows(session)
    with pytest.raises(errors.CommitTimeout) as info:
        session.commit()
    assert info.value.session_id == session.id
    assert session.id in str(info.value) and "COMMITTING" in str(info.value)
    assert sum(virtual_time.sleeps) < DELAY
    # The commit itself was not lost: once its time has passed the session is committed.
    slow_emulator.clock.advance(DELAY)
    session.reload()
    assert session.status == session.Status.Committed
    assert table_rows(slow_emulator, slow_table) == [expected[k] for k in sorted(expected)]


def test_commit_timeout_on_an_unreachable_server_keeps_the_cause(
    tunnel, emulator, pk_table, faults
):
    """A commit that cannot reach the service says so, rather than "still NORMAL"."""
    session = tunnel.create_upsert_session(pk_table, commit_timeout=0.5)
    write_rows(session)
    faults.add(kind="status", status=503, method="POST", session_kind="upsert", times=0)
    with pytest.raises(errors.CommitTimeout) as info:
        session.commit()
    assert "unreachable" in str(info.value) and session.id in str(info.value)
    assert isinstance(info.value.__cause__, errors.InternalServerError)
    assert table_rows(emulator, pk_table) == []  # nothing committed


def test_committing_session_never_turns_expired(slow_emulator, slow_tunnel, slow_table):
    session = slow_tunnel.create_upsert_session(slow_table, lifecycle=1)
    with session.open_upsert_stream() as stream:
        stream.upsert([5, "five", 5.0])
    session.commit(async_=True)
    slow_emulator.clock.advance(2 * 3600)
    session.reload()
    assert session.status == session.Status.Committed
    assert table_rows(slow_emulator, slow_table) == [[5, "five", 5.0]]


def test_default_emulator_commits_at_once(tunnel, emulator, pk_table):
    session = tunnel.create_upsert_session(pk_table)
    write_rows(session)
    session.commit(async_=True)
    assert session.status == session.Status.Committed


def test_commit_delay_is_a_serve_option(tmp_path):
    config = EmulatorConfig(data_dir=tmp_path, upsert_commit_delay=2.5)
    args = option_args(config)
    assert args[args.index("--upsert-commit-delay") + 1] == "2.5"
    parsed = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), *args])
    assert parsed.upsert_commit_delay == 2.5
    assert build_parser().parse_args(["serve", "--data-dir", "x"]).upsert_commit_delay == 0.0
