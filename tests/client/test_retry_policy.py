"""The client's one retry mechanism (``transport/retry.py``): back-off, per-rule budgets,
Retry-After, deadlines, the caller's veto, polls, and the one clock every wait goes
through (here a virtual one: nothing really sleeps)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, errors
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.transport import retry
from airflow_provider_odps_tunnel.tunnel.transport.retry import (
    Backoff,
    RetryPolicy,
    RetryRule,
    poll,
    request_policy,
)

from .fake_server import Answer, FakeServer


class Flaky:
    """An action failing with the given exceptions, then answering "ok"."""

    def __init__(self, *failures: BaseException):
        self.failures = list(failures)
        self.attempts: list[int] = []

    def __call__(self, attempt: retry.Attempt) -> str:
        self.attempts.append(attempt.number)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def server_error(retry_after: float | None = None) -> errors.InternalServerError:
    exc = errors.InternalServerError("boom", status=500)
    exc.retry_after = retry_after
    return exc


def throttled(retry_after: float | None = None) -> errors.Throttled:
    exc = errors.FlowExceeded("slow down", status=429)
    exc.retry_after = retry_after
    return exc


def test_backoff_doubles_up_to_its_cap():
    assert [Backoff(0.1, 2.0, 0.5).wait(n) for n in range(1, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.5, 0.5]
    )
    assert Backoff(1.0).wait(5000) > 1e300  # no overflow without a cap


def test_backoff_from_options_reads_them_when_asked(monkeypatch):
    monkeypatch.setattr(options, "retry_delay", 0.5)
    monkeypatch.setattr(options, "retry_max_delay", 3.0)
    assert Backoff.from_options() == Backoff(0.5, 2.0, 3.0)


def test_each_rule_has_its_own_budget_and_waits(virtual_clock):
    policy = RetryPolicy(
        (
            RetryRule("throttled", lambda e: isinstance(e, errors.Throttled), 3, Backoff(1.0)),
            RetryRule("failure", lambda e: isinstance(e, errors.ServerError), 1, Backoff(0.1)),
        )
    )
    action = Flaky(throttled(), server_error(), throttled(), throttled())
    assert policy.call(action, what="x") == "ok"
    assert action.attempts == [1, 2, 3, 4, 5]
    # the throttles' waits double on their own count, untouched by the failure between
    assert virtual_clock.sleeps == [1.0, 0.1, 2.0, 4.0]
    with pytest.raises(errors.InternalServerError):
        policy.call(Flaky(server_error(), server_error()), what="x")


def test_an_exception_no_rule_takes_is_raised_at_once(virtual_clock):
    action = Flaky(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        RetryPolicy.single("failure", lambda e: isinstance(e, errors.TunnelError)).call(
            action, what="x"
        )
    assert action.attempts == [1] and virtual_clock.sleeps == []


def test_retry_after_is_a_lower_bound(virtual_clock):
    policy = RetryPolicy.single("failure", lambda e: True, retries=2, backoff=Backoff(1.0))
    policy.call(Flaky(server_error(retry_after=5.0), server_error(retry_after=0.5)), what="x")
    assert virtual_clock.sleeps == [5.0, 2.0]


def test_re_sends_made_at_once_ignore_retry_after(virtual_clock):
    """Block re-sends, upsert slot moves and preview re-requests retry at once, as they
    did before the retry module: a Retry-After on the failure does not make them wait."""
    policy = RetryPolicy.single(
        "resend", lambda e: True, retries=2, backoff=retry.NO_WAIT, retry_after=False
    )
    action = Flaky(server_error(retry_after=30.0), throttled(retry_after=30.0))
    assert policy.call(action, what="x") == "ok"
    assert action.attempts == [1, 2, 3] and virtual_clock.sleeps == []


def test_a_deadline_stops_retries_whose_wait_would_cross_it(virtual_clock):
    policy = RetryPolicy(
        (RetryRule("throttled", lambda e: True, None, Backoff(1.0, 2.0, 64.0)),), deadline=10.0
    )
    action = Flaky(*[throttled() for _ in range(10)])
    with pytest.raises(errors.Throttled):
        policy.call(action, what="x")
    assert virtual_clock.sleeps == [1.0, 2.0, 4.0]  # 7 s; another 8 s would end at 15 s
    assert action.attempts == [1, 2, 3, 4]


def test_the_callers_veto_is_asked_after_the_budget(virtual_clock):
    asked: list[BaseException] = []

    def allowed(exc: BaseException) -> bool:
        asked.append(exc)
        return True

    policy = RetryPolicy.single("failure", lambda e: True, retries=2, backoff=retry.NO_WAIT)
    with pytest.raises(errors.InternalServerError):
        policy.call(Flaky(*[server_error() for _ in range(3)]), what="x", allowed=allowed)
    assert len(asked) == 2  # not asked about the failure past the budget
    assert virtual_clock.sleeps == []  # retries "at once" do not sleep
    with pytest.raises(errors.InternalServerError):
        policy.call(Flaky(server_error()), what="x", allowed=lambda exc: False)


def test_before_retry_runs_after_the_wait_and_its_failure_is_not_retried(virtual_clock):
    seen: list[float] = []

    def reload() -> None:
        seen.append(virtual_clock.now)
        if len(seen) == 2:
            raise errors.NoSuchUpload("gone", status=404)

    policy = RetryPolicy.single("failure", lambda e: True, retries=5, backoff=Backoff(1.0))
    action = Flaky(server_error(), server_error(), server_error())
    with pytest.raises(errors.NoSuchUpload):
        policy.call(action, what="x", before_retry=reload)
    assert seen == [1.0, 3.0] and action.attempts == [1, 2]


def test_each_retry_logs_its_cause_and_wait(virtual_clock, caplog):
    caplog.set_level(logging.WARNING, logger=retry.__name__)
    RetryPolicy.single("failure", lambda e: True, retries=4, backoff=Backoff(0.25)).call(
        Flaky(server_error()), what="PUT /t"
    )
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("PUT /t failed (InternalServerError: boom")
    assert line.endswith("failure retry 1 of 4 in 0.25 s")


# -- polls -----------------------------------------------------------------------------------


def test_poll_waits_with_doubling_pauses_until_done(virtual_clock):
    answers = iter([False, False, False, True])
    poll(
        lambda: next(answers),
        backoff=Backoff(0.5, 2.0, 1.0),
        timeout=None,
        timeout_error=lambda: AssertionError("no timeout"),
        what="x",
    )
    assert virtual_clock.sleeps == [0.5, 1.0, 1.0]


def test_poll_cuts_the_last_pause_to_the_deadline_then_raises(virtual_clock):
    checks: list[float] = []

    def done() -> bool:
        checks.append(virtual_clock.now)
        return False

    with pytest.raises(errors.TunnelTimeoutError, match="still busy"):
        poll(
            done,
            backoff=Backoff(1.0),
            timeout=5.0,
            timeout_error=lambda: errors.TunnelTimeoutError("still busy"),
            what="x",
        )
    assert virtual_clock.sleeps == [1.0, 2.0, 2.0]
    assert checks == [0.0, 1.0, 3.0, 5.0]


def test_poll_can_wait_before_the_first_check(virtual_clock):
    checks: list[float] = []
    poll(
        lambda: checks.append(virtual_clock.now) or True,
        backoff=Backoff(0.1),
        timeout=None,
        timeout_error=lambda: AssertionError(),
        what="x",
        check_first=False,
    )
    assert checks == [0.1]


def test_an_error_of_the_status_check_is_raised_as_it_is(virtual_clock):
    def done() -> bool:
        raise errors.SessionStateError("failed")

    with pytest.raises(errors.SessionStateError):
        poll(done, backoff=Backoff(1.0), timeout=5, timeout_error=AssertionError, what="x")
    assert virtual_clock.sleeps == []


# -- the transport's policy --------------------------------------------------------------------


def test_request_policy_budgets_come_from_options(monkeypatch):
    monkeypatch.setattr(options, "retry_times", 2)
    monkeypatch.setattr(options, "throttle_retry_times", 9)
    monkeypatch.setattr(options, "server_error_retry_times", 3)
    monkeypatch.setattr(options, "tunnel_retry_deadline", 600.0)
    policy = request_policy(idempotent=True)
    moved, server, connection = policy.rules
    assert (moved.retries, server.retries, connection.retries) == (9, 3, 2)
    assert policy.deadline == 600.0
    assert moved.when(throttled()) and not moved.when(server_error())
    assert server.when(server_error()) and not server.when(throttled())
    assert connection.when(errors.TunnelConnectionError("reset"))
    not_idempotent = request_policy(idempotent=False).rules[2]
    assert not not_idempotent.when(errors.TunnelConnectionError("reset"))


def test_request_policy_defaults_are_pyodps(monkeypatch):
    """pyodps 0.13.2 ``odps/tunnel/retry.py``: 308/429 without a count limit, 5xx/408 at
    most 7 times, waits 1 s doubling to 64 s; no overall deadline."""
    defaults = type(options)()
    for name in ("tunnel_retry_base_delay", "tunnel_retry_max_delay", "tunnel_retry_deadline"):
        monkeypatch.setattr(options, name, getattr(defaults, name))
    policy = request_policy(idempotent=True)
    moved, server, _ = policy.rules
    assert (moved.retries, server.retries, policy.deadline) == (None, 7, None)
    assert [server.backoff.wait(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 64, 64]


def test_request_retries_wait_on_the_clients_clock(virtual_clock):
    with FakeServer() as srv:
        srv.answers += [Answer(503), Answer(503, headers={"Retry-After": "3"}), Answer(500)]
        srv.answers += [Answer(200, b'{"DownloadID": "d1", "Status": "normal"}')]
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        session = TableTunnel(odps).create_download_session("t", download_id="d1")
    assert session.id == "d1" and len(srv.seen) == 4
    # options.tunnel_retry_base_delay 0.001 doubling (the client tests' fast retries);
    # Retry-After 3 s
    assert virtual_clock.sleeps == pytest.approx([0.001, 3.0, 0.004])
