"""Upsert sessions as pyodps 0.13.2 sees them, and the emulator behaviours they need.

Every emulator behaviour here is driven by the unchanged pyodps client and by ours:
the legacy hasher (bucket ownership checked with the session's hasher), partial updates
(``__value_cols``), the idle expiry that only keep-alive reloads prevent (on the emulator's
clock), 308 answers carrying a ``Code``, and replays of a PUT whose answer was lost
(recognised by its retry trace id). The emulator of this module runs with
``upsert_hasher="legacy"``, ``upsert_partial_update=True`` and ``upsert_idle_timeout``;
the session-wide default emulator has them off.
"""

from __future__ import annotations

import gc
import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from odps import ODPS as PyODPS
from odps import errors as py_errors
from odps import options as py_options
from odps.tunnel import TableTunnel as PyTableTunnel
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.emulator.cli import build_parser
from airflow_provider_odps_tunnel.emulator.server import option_args
from airflow_provider_odps_tunnel.emulator.state import EmulatorConfig
from airflow_provider_odps_tunnel.tunnel import ODPS, TableSchema, TableTunnel, errors
from airflow_provider_odps_tunnel.tunnel.codec.hasher import RowHasher
from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.sessions import upsert as upsert_module

from .test_upsert_emulator import applied_records, log_lines, put_statuses, table_rows

COLUMNS = "k bigint, name string, v double"
IDLE = 100.0  # seconds of the emulator's clock a session may stay untouched
HIDDEN = ["__version", "__app_version", "__operation", "__key_cols", "__value_cols"]


@pytest.fixture(scope="module")
def fid_emulator(tmp_path_factory) -> Iterator[Emulator]:
    emu = Emulator(
        tmp_path_factory.mktemp("upsert-fidelity"),
        project="upsert_fidelity",
        upsert_hasher="legacy",
        upsert_partial_update=True,
        upsert_idle_timeout=IDLE,
    )
    with emu:
        yield emu


@pytest.fixture
def fid_table(fid_emulator, request) -> Iterator[str]:
    emu = fid_emulator
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    emu.catalog.create_table(
        emu.project, name, TableSchema(parse_columns(COLUMNS)), primary_key=["k"], buckets=4
    )
    yield name
    emu.catalog.drop_table(emu.project, name, if_exists=True)


@pytest.fixture
def fid_faults(fid_emulator) -> Iterator[Any]:
    yield fid_emulator.faults
    fid_emulator.faults.clear()


def py_tunnel_for(emu: Emulator) -> PyTableTunnel:
    entry = PyODPS(
        emu.access_id,
        emu.secret_access_key,
        emu.project,
        endpoint=emu.endpoint,
        tunnel_endpoint=emu.tunnel_endpoint,
    )
    return PyTableTunnel(entry)


@pytest.fixture
def ours(fid_emulator) -> TableTunnel:
    emu = fid_emulator
    return TableTunnel(ODPS(emu.access_id, emu.secret_access_key, emu.project, emu.endpoint))


@pytest.fixture
def theirs(fid_emulator) -> PyTableTunnel:
    return py_tunnel_for(fid_emulator)


class ManualTicks:
    """Stands in for ``upsert.keepalive_wait``: a keep-alive thread reloads only when the
    test calls :meth:`tick`, which returns once that reload is done."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ticks = 0
        self.waits = 0
        self.intervals: list[float] = []

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        with self._cond:
            self.waits += 1
            self.intervals.append(seconds)
            self._cond.notify_all()
            while not stop.is_set():
                if self._ticks:
                    self._ticks -= 1
                    return False
                self._cond.wait(0.02)
            return True

    def tick(self, last: bool = False) -> None:
        """Let one reload happen; unless it is the ``last`` (the thread then ends instead
        of waiting again), return once the thread waits again."""
        with self._cond:
            target = self.waits + 1
            self._ticks += 1
            self._cond.notify_all()
            if not last and not self._cond.wait_for(lambda: self.waits >= target, timeout=10):
                raise TimeoutError("the keep-alive thread did not reload")


@pytest.fixture
def ticks(monkeypatch) -> ManualTicks:
    manual = ManualTicks()
    monkeypatch.setattr(upsert_module, "keepalive_wait", manual.wait)
    return manual


def gets_of(lines: list[dict]) -> list[dict]:
    return [x for x in lines if x["method"] == "GET"]


def session_lines(emu: Emulator, session_id: str) -> list[dict]:
    lines = [json.loads(x) for x in emu.request_log_path.read_text().splitlines()]
    return [x for x in lines if x.get("session") == session_id]


def py_write(session: Any, rows: list[list], deletes: tuple = ()) -> None:
    stream = session.open_upsert_stream()
    for row in rows:
        stream.upsert(session.new_record(row))
    for key in deletes:
        stream.delete(session.new_record([key, None, None]))
    stream.close()


# ------------------------------------------------------------------------- API parity


def test_sessions_look_alike_in_both_clients(ours, theirs, fid_table, fid_emulator):
    py_session = theirs.create_upsert_session(fid_table, slot_num=2)
    session = ours.create_upsert_session(fid_table, upsert_id=py_session.id)
    try:
        assert [c.name for c in session.schema.columns] == [
            c.name for c in py_session.schema.columns
        ]
        assert [c.name for c in session.schema.columns][3:] == HIDDEN
        assert [c.name for c in session.data_schema.columns] == ["k", "name", "v"]
        assert session.hash_keys == py_session.hash_keys == ["k"]
        assert session.hasher == py_session.hasher == "legacy"
        assert session.support_partial_update is py_session.support_partial_update is True
        assert session.UPSERT_VALUE_COLS_KEY == py_session.UPSERT_VALUE_COLS_KEY
        assert len(session.slots) == len(py_session.slots) == 2
        theirs_routes = {b: (s.slot, s.server) for b, s in py_session.get_buckets().items()}
        assert {b: (s.slot, s.server) for b, s in session.get_buckets().items()} == theirs_routes
        assert session.new_record([1, "a", 1.0]).values == [
            1,
            "a",
            1.0,
            None,
            None,
            None,
            None,
            None,
        ]
        assert list(py_session.new_record([1, "a", 1.0]).values) == [
            1,
            "a",
            1.0,
            None,
            None,
            None,
            None,
            None,
        ]
        stream = session.open_upsert_stream()
        assert stream.status == stream.Status.NORMAL
        stream.close()
        assert stream.status == stream.Status.CLOSED
        with pytest.raises(errors.TunnelError, match="closed"):
            stream.upsert([1, "a", 1.0])
        # A slot moved by hand moves every bucket it serves, as pyodps's update_buckets.
        slot = session.buckets[0]
        session.update_buckets(0, "10.0.0.9:8000")
        assert [b for b, s in session.buckets.items() if s.server == "10.0.0.9:8000"] == [
            b for b, s in session.buckets.items() if s.slot == slot.slot
        ]
    finally:
        py_session.close()
        session.close()


# ---------------------------------------------------------------------- legacy hasher


def test_legacy_hasher_sessions_take_legacy_buckets_from_both_clients(
    ours, theirs, fid_table, fid_emulator
):
    py_session = theirs.create_upsert_session(fid_table)
    assert py_session.hasher == "legacy"
    py_write(py_session, [[k, f"p{k}", float(k)] for k in range(20)])
    py_session.commit()
    session = ours.create_upsert_session(fid_table)
    with session.open_upsert_stream() as stream:
        for k in range(10, 30):
            stream.upsert([k, f"o{k}", -float(k)])
    session.commit()
    expected = [[k, f"p{k}", float(k)] for k in range(10)]
    expected += [[k, f"o{k}", -float(k)] for k in range(10, 30)]
    assert table_rows(fid_emulator, fid_table) == expected


def test_a_client_hashing_with_the_wrong_hasher_is_refused(ours, fid_table, fid_emulator):
    """The emulator checks ownership with the session's (legacy) hasher: rows bucketed with
    the default hasher are refused, and nothing is applied."""
    default, legacy = RowHasher(["bigint"], 4, "default"), RowHasher(["bigint"], 4, "legacy")
    key = next(k for k in range(100) if default.bucket([k]) != legacy.bucket([k]))
    session = ours.create_upsert_session(fid_table)
    session.hasher = "default"  # as a client that ignores the session's hasher
    stream = session.open_upsert_stream()
    stream.upsert([key, "x", 0.0])
    with pytest.raises(errors.TunnelError, match="hasher legacy"):
        stream.close()
    assert applied_records(fid_emulator, session.id) == 0
    session.abort()


# -------------------------------------------------------------------- partial updates


def test_partial_updates_set_only_their_columns(ours, theirs, fid_table, fid_emulator):
    session = ours.create_upsert_session(fid_table)
    with session.open_upsert_stream() as stream:
        for k in range(4):
            stream.upsert([k, f"n{k}", float(k)])
        stream.upsert([1, "renamed", None], valid_columns=["name"])
        stream.upsert([2, None, 20.0], valid_columns=["v"])
        stream.upsert([9, "new", 99.0], valid_columns=["name"])  # a new key: v stays null
        stream.delete([3, None, None])
    session.commit()
    expected = [[0, "n0", 0.0], [1, "renamed", 1.0], [2, "n2", 20.0], [9, "new", None]]
    assert table_rows(fid_emulator, fid_table) == expected
    # pyodps reads what our partial updates made.
    py_session = theirs.create_download_session(fid_table)
    with py_session.open_record_reader(0, py_session.count) as reader:
        assert sorted(list(r.values) for r in reader) == expected


def test_pyodps_upserts_whole_rows_on_a_partial_update_session(theirs, fid_table, fid_emulator):
    """pyodps sees ``support_partial_update`` but always sends an empty ``__value_cols``
    (its ``upsert`` takes no column list, and its private path fails on the schema), so
    its upserts replace whole rows there too."""
    py_session = theirs.create_upsert_session(fid_table)
    assert py_session.support_partial_update is True
    py_write(py_session, [[1, "a", 1.0], [2, "b", 2.0]])
    py_session.commit()
    again = theirs.create_upsert_session(fid_table)
    py_write(again, [[1, "z", None]])
    stream = again.open_upsert_stream()
    with pytest.raises(TypeError):  # pyodps 0.13.2: ``for idx, col in self._schema.columns``
        stream._write(again.new_record([2, "y", None]), stream.Operation.UPSERT, ["name"])
    again.commit()
    assert table_rows(fid_emulator, fid_table) == [[1, "z", None], [2, "b", 2.0]]


def test_partial_updates_are_refused_where_not_enabled(tunnel, emulator, emulator_table):
    """On the default emulator (no ``upsert_partial_update``) our client refuses a partial
    update itself; one sent anyway is refused by the emulator with nothing applied."""
    table = emulator_table(COLUMNS, primary_key=["k"], buckets=2)
    session = tunnel.create_upsert_session(table)
    assert session.support_partial_update is False
    stream = session.open_upsert_stream()
    with pytest.raises(errors.TunnelError, match="partial update"):
        stream.upsert([1, "a", None], valid_columns=["name"])
    session.support_partial_update = True  # as a client that does not check
    stream.upsert([1, "a", None], valid_columns=["name"])
    with pytest.raises(errors.TunnelError, match="enable_partial_update"):
        stream.close()
    assert applied_records(emulator, session.id) == 0
    session.abort()


# --------------------------------------------------------------- keep-alive and idle expiry


def test_our_keepalive_reloads_keep_a_session_from_idle_expiry(
    ours, fid_table, fid_emulator, ticks
):
    session = ours.create_upsert_session(fid_table)
    wait_until(lambda: ticks.waits >= 1, timeout=10, message="the keep-alive thread")
    assert ticks.intervals == [options.upsert_keepalive_interval] == [30.0]
    for _ in range(3):  # 2.7 idle periods in all, never one without a request
        fid_emulator.clock.advance(IDLE * 0.9)
        ticks.tick()
        assert session.status == session.Status.Normal
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "kept", 1.0])
    session.commit()
    assert table_rows(fid_emulator, fid_table) == [[1, "kept", 1.0]]
    keepalive = session._keepalive
    assert keepalive is None  # stopped by the commit
    lines = log_lines(fid_emulator, session.id, lambda ls: len(gets_of(ls)) >= 3)
    assert len(gets_of(lines)) >= 3


def test_our_session_without_keepalive_expires_when_idle(ours, fid_table, fid_emulator, ticks):
    session = ours.create_upsert_session(fid_table)
    session.close()  # stops the keep-alive, as pyodps's close does
    wait_until(
        lambda: not keepalive_threads(session.id), timeout=10, message="the keep-alive to end"
    )
    fid_emulator.clock.advance(IDLE + 1)
    session.reload()
    assert session.status == session.Status.Expired
    stream = session.open_upsert_stream()
    stream.upsert([1, "late", 1.0])
    with pytest.raises(errors.TunnelError, match="expired"):
        stream.close()


def keepalive_threads(session_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"upsert-keepalive-{session_id}"]


def test_keepalive_stops_when_a_reload_finds_the_session_done(ours, fid_table, ticks):
    session = ours.create_upsert_session(fid_table)
    wait_until(lambda: ticks.waits >= 1, timeout=10, message="the keep-alive thread")
    (thread,) = keepalive_threads(session.id)
    other = ours.create_upsert_session(fid_table, upsert_id=session.id)
    other.commit()  # committed through another handle: this one does not know yet
    wait_until(lambda: keepalive_threads(session.id) == [thread], timeout=10, message="one")
    ticks.tick(last=True)
    thread.join(10)
    assert not thread.is_alive() and session.status == session.Status.Committed


def test_a_failed_keepalive_reload_is_tried_again_at_the_next_tick(
    ours, fid_table, fid_faults, ticks
):
    session = ours.create_upsert_session(fid_table)
    wait_until(lambda: ticks.waits >= 1, timeout=10, message="the keep-alive thread")
    # every attempt of one reload fails: the first try and its 7 retries
    fid_faults.add(method="GET", session_kind="upsert", kind="status", status=503, times=8)
    ticks.tick()  # the failed reload is logged; the thread waits for the next tick
    assert fid_faults.counts == {"status": 8} and keepalive_threads(session.id)
    ticks.tick()
    assert session.status == session.Status.Normal
    session.abort()


def test_keepalive_ends_with_a_dropped_session(ours, fid_table, ticks):
    session = ours.create_upsert_session(fid_table)
    wait_until(lambda: ticks.waits >= 1, timeout=10, message="the keep-alive thread")
    (thread,) = keepalive_threads(session.id)
    del session
    gc.collect()
    ticks.tick(last=True)
    thread.join(10)
    assert not thread.is_alive()


def test_keepalive_can_be_turned_off(ours, fid_table, monkeypatch, ticks):
    monkeypatch.setattr(options, "upsert_keepalive_interval", 0)
    session = ours.create_upsert_session(fid_table)
    assert session._keepalive is None and ticks.waits == 0
    session.abort()


@pytest.fixture
def py_keepalive() -> Iterator[None]:
    """pyodps's keep-alive every second (its option takes whole seconds)."""
    before = py_options.tunnel.upsert_keepalive_interval
    py_options.tunnel.upsert_keepalive_interval = 1
    yield
    py_options.tunnel.upsert_keepalive_interval = before


def test_pyodps_keepalive_keeps_its_session_from_idle_expiry(
    theirs, fid_table, fid_emulator, py_keepalive
):
    py_session = theirs.create_upsert_session(fid_table)

    def reloads() -> int:
        return sum(x["method"] == "GET" for x in session_lines(fid_emulator, py_session.id))

    # 1.35 idle periods in all, each step followed by a keep-alive reload (a step under
    # half a period, so a reload line logged late cannot leave a whole period untouched)
    for _ in range(3):
        seen = reloads()
        fid_emulator.clock.advance(IDLE * 0.45)
        wait_until(lambda s=seen: reloads() > s, timeout=10, message="a pyodps keep-alive")
    # Stop the keep-alive before writing: pyodps's reload re-parses the session schema in
    # place, and a tick that lands while its stream builds a bucket writer breaks that
    # writer (IndexError in SchemaSnapshot), after which pyodps re-sends the bucket as an
    # empty body with record_count=0. Our client replaces its schema instead. The timer
    # being armed is the one whose reload may be under way: join it after stopping.
    ticking = py_session._keepalive_scheduler
    py_session.close()
    ticking.join(10)
    assert not ticking.is_alive()
    py_write(py_session, [[5, "alive", 5.0]])
    py_session.commit()
    assert table_rows(fid_emulator, fid_table) == [[5, "alive", 5.0]]


def test_pyodps_session_without_keepalive_expires_when_idle(theirs, fid_table, fid_emulator):
    py_session = theirs.create_upsert_session(fid_table)
    py_session.close()  # pyodps: stops the keep-alive
    fid_emulator.clock.advance(IDLE + 1)
    py_session.reload()
    assert py_session.status == py_session.Status.Expired
    stream = py_session.open_upsert_stream()
    stream.upsert(py_session.new_record([1, "late", 1.0]))
    with pytest.raises(py_errors.ODPSError, match="expired"):
        stream.close()


# --------------------------------------------------------------------- 308 with a Code


def test_pyodps_parses_a_308_answer_but_takes_it_for_success(
    theirs, fid_table, fid_emulator, fid_faults
):
    """pyodps's error parser reads the 308 body (``Code``, message, request id, the routed
    server header); its REST layer, however, treats every status below 400 as success
    (``requests``' ``Response.ok``), so the moved bucket is silently not applied."""
    py_session = theirs.create_upsert_session(fid_table)
    fid_faults.add(session_kind="upsert", kind="move_slot", server="10.9.8.7:4000", times=2)
    resp = py_session._client.put(
        py_session._get_resource(),
        data=b"",
        params={"upsertid": py_session.id, "bucketid": "0", "slotid": "0", "record_count": "0"},
        headers={"odps-tunnel-routed-server": py_session.buckets[0].server},
    )
    assert resp.status_code == 308 and resp.ok
    error = py_errors.parse_response(resp)
    assert error.code == "SlotReassigned" and error.status_code == 308
    assert error.request_id and "10.9.8.7:4000" in str(error)
    assert error.response_headers["odps-tunnel-routed-server"] == "10.9.8.7:4000"

    py_write(py_session, [[1, "lost", 1.0]])
    py_session.commit()
    assert table_rows(fid_emulator, fid_table) == []  # the 308'd body was never re-sent
    lines = log_lines(fid_emulator, py_session.id, lambda ls: len(put_statuses(ls)) >= 2)
    assert put_statuses(lines) == [308, 308]


def test_our_client_follows_a_308_with_a_code(ours, fid_table, fid_emulator, fid_faults):
    session = ours.create_upsert_session(fid_table)
    fid_faults.add(session_kind="upsert", kind="move_slot", server="10.9.8.7:4000")
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "moved", 1.0])
    session.commit()
    assert table_rows(fid_emulator, fid_table) == [[1, "moved", 1.0]]
    lines = log_lines(fid_emulator, session.id, lambda ls: len(put_statuses(ls)) >= 2)
    puts = [x for x in lines if x["method"] == "PUT"]
    assert [x["status"] for x in puts] == [308, 200]
    # the re-send to the new server is the same logical write: same trace, next index
    assert puts[0]["retry_trace_id"] == puts[1]["retry_trace_id"]
    assert [x["retry_index"] for x in puts] == [0, 1]


# ---------------------------------------------------------- replays by retry trace id


def test_our_resend_of_a_lost_answer_is_a_replay(ours, fid_table, fid_emulator, fid_faults):
    session = ours.create_upsert_session(fid_table)
    fid_faults.add(session_kind="upsert", method="PUT", kind="drop_answer")
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "once", 1.0])
        stream.upsert([1, "twice", 2.0])  # same bucket, same body
    session.commit()
    assert table_rows(fid_emulator, fid_table) == [[1, "twice", 2.0]]
    assert applied_records(fid_emulator, session.id) == 2  # the body applied once
    assert fid_faults.counts == {"drop_answer": 1}
    lines = log_lines(
        fid_emulator,
        session.id,
        lambda ls: any(x.get("replay") for x in ls) and len(put_statuses(ls)) >= 2,
    )
    puts = [x for x in lines if x["method"] == "PUT"]
    (replay,) = [x for x in puts if x.get("replay")]
    assert replay["status"] == 200 and replay["replay"] == replay["retry_trace_id"]
    assert {x["retry_trace_id"] for x in puts} == {replay["retry_trace_id"]}
    assert [x["retry_index"] for x in puts] == [0, 1]


def test_pyodps_resend_of_a_lost_answer_is_a_replay(theirs, fid_table, fid_emulator, fid_faults):
    py_session = theirs.create_upsert_session(fid_table)
    fid_faults.add(session_kind="upsert", method="PUT", kind="drop_answer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        py_write(py_session, [[1, "once", 1.0], [2, "two", 2.0]])
    py_session.commit()
    assert table_rows(fid_emulator, fid_table) == [[1, "once", 1.0], [2, "two", 2.0]]
    assert applied_records(fid_emulator, py_session.id) == 2
    lines = log_lines(fid_emulator, py_session.id, lambda ls: any(x.get("replay") for x in ls))
    assert len([x for x in lines if x.get("replay")]) == 1


def test_a_new_trace_with_the_same_rows_is_applied_again(ours, fid_table, fid_emulator):
    """Only the trace id makes a replay: the same rows in a new write are a new write."""
    session = ours.create_upsert_session(fid_table)
    for _ in range(2):
        with session.open_upsert_stream() as stream:
            stream.upsert([1, "same", 1.0])
    session.commit()
    assert applied_records(fid_emulator, session.id) == 2
    assert not any(x.get("replay") for x in session_lines(fid_emulator, session.id))


# ------------------------------------------------------------------------ serve options


def test_upsert_switches_are_serve_options(tmp_path):
    config = EmulatorConfig(
        data_dir=tmp_path, upsert_hasher="legacy", upsert_partial_update=True, upsert_idle_timeout=9
    )
    args = option_args(config)
    parsed = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), *args])
    assert (parsed.upsert_hasher, parsed.upsert_partial_update, parsed.upsert_idle_timeout) == (
        "legacy",
        True,
        9.0,
    )
    default = build_parser().parse_args(["serve", "--data-dir", "x"])
    assert (default.upsert_hasher, default.upsert_partial_update, default.upsert_idle_timeout) == (
        "default",
        False,
        0.0,
    )
