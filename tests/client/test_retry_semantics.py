"""The tunnel's retry rules, as pyodps 0.13.2's ``TunnelRetryHandler`` applies them
(``odps/tunnel/retry.py``; protocol §8.3): 308 and 429 until the deadline, 5xx and 408 at
most 7 times, waits 1, 2, 4, ... 64 s, other 4xx never, failures without an answer by
``retry_times``/``retry_delay``/``retry_max_delay``; and the ``odps-tunnel-retry-trace-id`` /
``odps-tunnel-retry-index`` headers of every attempt.

Every wait runs on the virtual clock (``virtual_clock``), with pyodps' default delays put
back (``pyodps_delays``): nothing really sleeps. The emulator scenarios run pyodps
unchanged (its waits recorded instead of slept) and our client against the same faults.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid

import pytest
from odps import ODPS as PyODPS
from odps.tunnel import TableTunnel as PyTableTunnel
from odps.tunnel import retry as py_retry
from polling import wait_until

from airflow_provider_odps_tunnel.tunnel import errors
from airflow_provider_odps_tunnel.tunnel.codec import signing
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.transport import retry
from airflow_provider_odps_tunnel.tunnel.transport.rest import Credentials, RestClient
from airflow_provider_odps_tunnel.tunnel.transport.retry import (
    RETRY_INDEX_HEADER,
    RETRY_TRACE_ID_HEADER,
    RetryTrace,
)

from .fake_server import Answer, FakeServer

PYODPS_WAITS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
SCHEMA = "id bigint, name string"


@pytest.fixture
def pyodps_delays(monkeypatch: pytest.MonkeyPatch, virtual_clock) -> None:
    """The tunnel's default waits (1 s doubling to 64 s, no deadline), on the virtual clock."""
    defaults = type(options)()
    for name in (
        "tunnel_retry_base_delay",
        "tunnel_retry_max_delay",
        "tunnel_retry_deadline",
        "throttle_retry_times",
        "server_error_retry_times",
    ):
        monkeypatch.setattr(options, name, getattr(defaults, name))


@pytest.fixture
def server():
    with FakeServer() as srv:
        yield srv


def rest(server: FakeServer, tunnel: bool = True) -> RestClient:
    return RestClient(Credentials("AK", "SK"), server.endpoint, "proj", tunnel=tunnel)


def error(status: int, code: str = "", **headers: str) -> Answer:
    body = json.dumps({"Code": code, "Message": "injected"}).encode() if code else b""
    return Answer(status, body, dict(headers))


def traces(server: FakeServer) -> list[tuple[str, str]]:
    return [(s.headers[RETRY_TRACE_ID_HEADER], s.headers[RETRY_INDEX_HEADER]) for s in server.seen]


# -- the waits of each kind of answer ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(429, "FlowExceeded"), (308, "SlotReassigned"), (429, "")]
)
def test_308_and_429_wait_1_2_4_up_to_64_s_with_no_count_limit(
    server, virtual_clock, pyodps_delays, status, code
):
    server.answers += [error(status, code)] * 10 + [Answer(200, b"ok")]
    assert rest(server).request("PUT", "/t", data=b"x").content == b"ok"
    assert virtual_clock.sleeps == PYODPS_WAITS + [64.0] * 3
    assert len(server.seen) == 11


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_give_up_after_seven_retries(server, virtual_clock, pyodps_delays, status):
    server.answers += [error(status)] * 9
    with pytest.raises(errors.ServerError) as info:
        rest(server).request("GET", "/t")
    assert info.value.status == status
    assert virtual_clock.sleeps == PYODPS_WAITS  # 127 s in all
    assert len(server.seen) == 8


@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_a_5xx_is_retried_for_every_method(server, virtual_clock, pyodps_delays, method):
    """pyodps retries a 5xx of a commit (POST) or a block PUT as of a GET."""
    server.answers += [error(503), error(500, "InternalServerError"), Answer(200, b"ok")]
    assert rest(server).request(method, "/t", data=b"body").content == b"ok"
    assert virtual_clock.sleeps == [1.0, 2.0]
    assert [s.body for s in server.seen] == [b"body"] * 3


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "InvalidArgument", errors.InvalidArgument),
        (404, "NoSuchUpload", errors.NoSuchUpload),
        (409, "StatusConflict", errors.StatusConflict),
        (403, "NoPermission", errors.NoPermission),
        (412, "SchemaModified", errors.SchemaModified),
        (400, "FlowExceeded", errors.FlowExceeded),  # the status decides, as in pyodps
    ],
)
def test_other_4xx_are_never_retried(server, virtual_clock, pyodps_delays, status, code, cls):
    server.answers += [error(status, code), Answer(200, b"ok")]
    with pytest.raises(cls):
        rest(server).request("GET", "/t")
    assert len(server.seen) == 1 and virtual_clock.sleeps == []


def test_each_kind_counts_its_own_retries(server, virtual_clock, pyodps_delays):
    """A 5xx after two 429s is that kind's first retry: it waits 1 s and keeps all 7."""
    server.answers += [error(429), error(429)] + [error(503)] * 7 + [Answer(200)]
    rest(server).request("GET", "/t")
    assert virtual_clock.sleeps == [1.0, 2.0] + PYODPS_WAITS


def test_retry_after_is_the_least_wait(server, virtual_clock, pyodps_delays):
    server.answers += [
        error(429, "FlowExceeded", **{"Retry-After": "10"}),
        error(429, "FlowExceeded", **{"Retry-After": "1"}),
        error(503, **{"Retry-After": "7"}),
        Answer(200),
    ]
    rest(server).request("GET", "/t")
    assert virtual_clock.sleeps == [10.0, 2.0, 7.0]


def test_the_deadline_stops_308_and_429(server, virtual_clock, pyodps_delays, monkeypatch):
    monkeypatch.setattr(options, "tunnel_retry_deadline", 20.0)
    server.answers += [error(429, "FlowExceeded"), error(308)] * 10
    with pytest.raises(errors.FlowExceeded):
        rest(server).request("GET", "/t")
    # 1 + 2 + 4 + 8 = 15 s; a wait of 16 s more would end past the 20 s deadline
    assert virtual_clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert len(server.seen) == 5


def test_a_count_limit_on_308_and_429_can_be_set(server, virtual_clock, pyodps_delays, monkeypatch):
    monkeypatch.setattr(options, "throttle_retry_times", 2)
    server.answers += [error(429, "FlowExceeded")] * 5
    with pytest.raises(errors.FlowExceeded):
        rest(server).request("GET", "/t")
    assert virtual_clock.sleeps == [1.0, 2.0]


def test_the_waits_are_options(server, virtual_clock, monkeypatch):
    monkeypatch.setattr(options, "tunnel_retry_base_delay", 0.5)
    monkeypatch.setattr(options, "tunnel_retry_max_delay", 3.0)
    monkeypatch.setattr(options, "server_error_retry_times", 4)
    monkeypatch.setattr(options, "tunnel_retry_deadline", None)
    server.answers += [error(503)] * 6
    with pytest.raises(errors.ServiceUnavailable):
        rest(server).request("GET", "/t")
    assert virtual_clock.sleeps == [0.5, 1.0, 2.0, 3.0]


# -- failures without an answer ------------------------------------------------------------


def test_a_broken_connection_is_retried_retry_times_from_retry_delay(
    server, virtual_clock, pyodps_delays, monkeypatch
):
    monkeypatch.setattr(options, "retry_times", 3)
    monkeypatch.setattr(options, "retry_delay", 0.25)
    monkeypatch.setattr(options, "retry_max_delay", 0.75)
    server.answers += [Answer(reset=True)] * 5
    with pytest.raises(errors.TunnelConnectionError):
        rest(server).request("GET", "/t")
    assert virtual_clock.sleeps == [0.25, 0.5, 0.75]
    assert len(server.seen) == 4


def test_a_broken_connection_of_a_post_is_not_resent_unless_declared_safe(
    server, virtual_clock, pyodps_delays
):
    server.answers += [Answer(reset=True), Answer(200)]
    with pytest.raises(errors.TunnelConnectionError):
        rest(server).request("POST", "/t")
    assert len(server.seen) == 1
    server.answers[:] = [Answer(reset=True), Answer(200)]
    rest(server).request("POST", "/t", retry_post=True)
    assert len(server.seen) == 3


def test_a_refused_connection_is_retried_for_any_method(virtual_clock, monkeypatch):
    monkeypatch.setattr(options, "retry_times", 2)
    with FakeServer() as srv:
        endpoint = srv.endpoint  # closed on exit: nothing listens there any more
    client = RestClient(Credentials("AK", "SK"), endpoint, "proj")
    with pytest.raises(errors.TunnelConnectionError):
        client.request("POST", "/t")
    assert virtual_clock.sleeps == [options.retry_delay, 2 * options.retry_delay]


def test_a_one_shot_body_already_sent_is_not_sent_again(server, virtual_clock, pyodps_delays):
    server.answers += [error(503), Answer(200)]
    with pytest.raises(errors.ServiceUnavailable):
        rest(server).request("PUT", "/t", data=iter([b"ab", b"cd"]))
    assert len(server.seen) == 1 and virtual_clock.sleeps == []


def test_retry_false_sends_once(server, virtual_clock, pyodps_delays):
    server.answers += [error(503), Answer(200)]
    with pytest.raises(errors.ServiceUnavailable):
        rest(server).request("PUT", "/t", data=b"x", retry=False)
    assert len(server.seen) == 1


# -- the retry trace headers ---------------------------------------------------------------


def test_every_attempt_carries_the_trace_id_and_its_index(server, virtual_clock, pyodps_delays):
    server.answers += [error(429), error(503), Answer(reset=True), Answer(200)]
    rest(server).request("GET", "/t")
    seen = traces(server)
    assert [index for _, index in seen] == ["0", "1", "2", "3"]
    assert len({trace for trace, _ in seen}) == 1
    assert uuid.UUID(seen[0][0]).version == 4


def test_each_logical_request_has_a_fresh_trace(server):
    server.answers += [Answer(200), Answer(200)]
    client = rest(server)
    client.request("GET", "/a")
    client.request("GET", "/b")
    (first, index1), (second, index2) = traces(server)
    assert first != second and index1 == index2 == "0"


def test_a_shared_trace_goes_on_across_calls(server, virtual_clock, pyodps_delays):
    """A session re-sending a write itself passes one trace to each call: the indexes go on."""
    server.answers += [error(503), Answer(200), error(308), Answer(200)]
    trace = RetryTrace()
    client = rest(server)
    with pytest.raises(errors.ServiceUnavailable):
        client.request("PUT", "/t", data=b"x", retry=False, trace=trace)
    client.request("PUT", "/t", data=b"x", trace=trace)
    client.request("PUT", "/t", data=b"x", trace=trace)
    assert traces(server) == [(trace.trace_id, str(i)) for i in range(4)]


def test_a_session_loop_with_the_tunnel_policy_keeps_one_trace(
    server, virtual_clock, pyodps_delays
):
    """How stream and upsert sessions re-send: ``request_policy(...).call`` around
    ``request(retry=False, trace=...)``, reloading between attempts."""
    server.answers += [error(502), error(429), Answer(200, b"done")]
    trace = RetryTrace()
    client = rest(server)
    reloads: list[float] = []
    resp = retry.request_policy(idempotent=True).call(
        lambda attempt: client.request("PUT", "/t", data=b"x", retry=False, trace=trace),
        what="batch",
        before_retry=lambda: reloads.append(virtual_clock.now),
    )
    assert resp.content == b"done" and reloads == [1.0, 2.0]
    assert traces(server) == [(trace.trace_id, str(i)) for i in range(3)]


def test_the_trace_headers_are_not_signed(server):
    server.answers.append(Answer(200))
    rest(server).request("GET", "/t")
    seen = server.seen[0]
    signed = {k: v for k, v in seen.headers.items() if k in ("date", "x-odps-user-agent")}
    canonical = signing.canonical_string("GET", "/t", seen.query, signed)
    assert canonical == signing.canonical_string("GET", "/t", seen.query, seen.headers)
    assert seen.headers["authorization"] == signing.authorization("AK", "SK", canonical)


def test_the_service_endpoint_has_no_trace_and_its_own_rules(server, virtual_clock, monkeypatch):
    """pyodps' REST layer: no trace headers; a 5xx of a POST is not retried; a 5xx of a
    GET ``retry_times`` times."""
    monkeypatch.setattr(options, "retry_times", 2)
    service = rest(server, tunnel=False)
    server.answers += [error(503), Answer(200)]
    with pytest.raises(errors.ServiceUnavailable):
        service.request("POST", "/projects/p/instances")
    server.answers.clear()
    server.answers += [error(503)] * 4
    with pytest.raises(errors.ServiceUnavailable):
        service.request("GET", "/projects/p")
    assert len(server.seen) == 4
    assert all(RETRY_TRACE_ID_HEADER not in s.headers for s in server.seen)


def test_retry_trace_ids_and_indexes():
    first, second = RetryTrace(), RetryTrace()
    assert first.trace_id != second.trace_id and uuid.UUID(first.trace_id).version == 4
    assert [first.next_index() for _ in range(3)] == [0, 1, 2]
    assert second.next_index() == 0
    assert RetryTrace("given").next_headers() == {
        RETRY_TRACE_ID_HEADER: "given",
        RETRY_INDEX_HEADER: "0",
    }
    with pytest.raises(ValueError):
        RetryTrace("  ")


def test_retry_trace_indexes_are_unique_across_threads():
    trace = RetryTrace()
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [trace.next_index() for _ in range(500)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(4000))


# -- logging ---------------------------------------------------------------------------------


def test_each_retry_is_logged_with_cause_attempt_and_wait(
    server, virtual_clock, pyodps_delays, caplog
):
    caplog.set_level(logging.WARNING, logger=retry.__name__)
    server.answers += [error(429, "FlowExceeded"), error(503), Answer(200)]
    rest(server).request("GET", "/t")
    first, second = [r.getMessage() for r in caplog.records]
    trace = server.seen[0].headers[RETRY_TRACE_ID_HEADER]
    assert first.startswith(f"GET /t (retry trace {trace}) failed (FlowExceeded: injected")
    assert first.endswith("moved/throttled retry 1 (no limit) in 1.00 s")
    assert "ServiceUnavailable" in second and second.endswith("server error retry 1 of 7 in 1.00 s")


def test_the_log_names_the_deadline(server, virtual_clock, pyodps_delays, caplog, monkeypatch):
    monkeypatch.setattr(options, "tunnel_retry_deadline", 600.0)
    caplog.set_level(logging.WARNING, logger=retry.__name__)
    server.answers += [error(308), Answer(200)]
    rest(server).request("GET", "/t")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "SlotReassigned" in line and line.endswith("retry 1 until the 600 s deadline in 1.00 s")


# -- against the emulator, pyodps and ours on the same faults --------------------------------


@pytest.fixture
def py_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """pyodps' retry waits, recorded instead of slept."""
    waits: list[float] = []

    def record(policy: py_retry.RetryPolicy, attempt: int) -> None:
        waits.append(float(policy.get_retry_wait_time(attempt)))

    monkeypatch.setattr(py_retry.RetryPolicy, "wait_for_next_retry", record)
    return waits


@pytest.fixture
def py_tunnel(emulator) -> PyTableTunnel:
    odps = PyODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        endpoint=emulator.endpoint,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )
    return PyTableTunnel(odps)


def create_lines(emulator, table: str, flag: str, count: int) -> list[dict]:
    """The request-log lines of the session-create POSTs on ``table`` (``flag``: ``uploads``
    or ``downloads``), once ``count`` are there (lines are written after each answer)."""

    def lines() -> list[dict] | None:
        found = [
            x
            for x in map(json.loads, emulator.request_log_path.read_text().splitlines())
            if x["method"] == "POST" and x["path"].endswith(f"/tables/{table}")
            if flag in x["params"]
        ]
        return found if len(found) >= count else None

    return wait_until(lines, timeout=10, message=f"{count} create requests of {table} logged")


def test_503_on_create_waits_like_pyodps_and_the_log_shows_one_trace(
    tunnel, py_tunnel, emulator, emulator_table, faults, virtual_clock, pyodps_delays, py_waits
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="upload", kind="status", status=503, times=3)
    py_session = py_tunnel.create_upload_session(table)
    faults.add(method="POST", session_kind="upload", kind="status", status=503, times=3)
    session = tunnel.create_upload_session(table)
    assert py_waits == virtual_clock.sleeps == [1.0, 2.0, 4.0]
    assert faults.counts["status"] == 6 and session.id != py_session.id
    lines = create_lines(emulator, table, "uploads", 8)
    py_lines, our_lines = lines[:4], lines[4:]
    for attempts in (py_lines, our_lines):
        assert [x["status"] for x in attempts] == [503, 503, 503, 200]
        assert [x["retry_index"] for x in attempts] == [0, 1, 2, 3]
        assert len({x["retry_trace_id"] for x in attempts}) == 1
    assert py_lines[0]["retry_trace_id"] != our_lines[0]["retry_trace_id"]


@pytest.mark.parametrize("status", [503, 408])
def test_a_5xx_or_408_that_persists_gives_up_after_7_retries_like_pyodps(
    tunnel,
    py_tunnel,
    emulator_table,
    faults,
    virtual_clock,
    pyodps_delays,
    py_waits,
    status,
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="upload", kind="status", status=status, times=0)
    with pytest.raises(Exception) as py_info:
        py_tunnel.create_upload_session(table)
    with pytest.raises(errors.ServerError) as info:
        tunnel.create_upload_session(table)
    assert py_info.value.status_code == info.value.status == status
    assert py_waits == virtual_clock.sleeps == PYODPS_WAITS
    assert faults.counts["status"] == 16  # 8 attempts each


def test_429_on_download_create_waits_like_pyodps(
    tunnel, py_tunnel, emulator_table, faults, virtual_clock, pyodps_delays, py_waits
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="download", kind="throttle", seconds=0, times=4)
    py_tunnel.create_download_session(table)
    faults.add(method="POST", session_kind="download", kind="throttle", seconds=0, times=4)
    tunnel.create_download_session(table)
    assert py_waits == virtual_clock.sleeps == [1.0, 2.0, 4.0, 8.0]


def test_a_400_is_raised_at_once_by_both(
    tunnel, py_tunnel, emulator_table, faults, virtual_clock, pyodps_delays, py_waits
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="upload", kind="status", status=400, times=0)
    with pytest.raises(Exception) as py_info:
        py_tunnel.create_upload_session(table)
    with pytest.raises(errors.InvalidArgument):
        tunnel.create_upload_session(table)
    assert py_info.value.status_code == 400
    assert py_waits == virtual_clock.sleeps == []
    assert faults.counts["status"] == 2


def test_ours_honour_retry_after_and_the_deadline_against_the_emulator(
    tunnel, emulator_table, faults, virtual_clock, pyodps_delays, monkeypatch
):
    """pyodps ignores Retry-After (it waits 1, 2, ...); we wait at least what is asked,
    and stop at the deadline."""
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="download", kind="throttle", seconds=5, times=2)
    tunnel.create_download_session(table)
    assert virtual_clock.sleeps == [5.0, 5.0]
    monkeypatch.setattr(options, "tunnel_retry_deadline", 30.0)
    faults.add(method="POST", session_kind="download", kind="throttle", seconds=5, times=0)
    with pytest.raises(errors.FlowExceeded):
        tunnel.create_download_session(table)
    assert virtual_clock.sleeps[2:] == [5.0, 5.0, 5.0, 8.0]  # 23 s; 16 s more crosses 30 s


def test_308_on_a_tunnel_request_is_retried_against_the_emulator(
    tunnel, emulator_table, faults, virtual_clock, pyodps_delays
):
    """pyodps takes a 308 for success (its REST layer raises from 400 on), so only ours."""
    table = emulator_table(SCHEMA)
    faults.add(
        method="POST", session_kind="upload", kind="status", status=308, code="SlotReassigned"
    )
    tunnel.create_upload_session(table)
    assert virtual_clock.sleeps == [1.0] and faults.counts["status"] == 1
