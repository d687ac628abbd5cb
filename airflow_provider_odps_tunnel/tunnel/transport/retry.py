"""The one back-off and retry mechanism of the tunnel client, built on tenacity.

* :class:`Backoff`: exponential waits (first wait, factor, cap);
* :class:`RetryRule` and :class:`RetryPolicy`: which failures are retried, how many times
  (each rule has its own budget), how long to wait (at least the ``Retry-After`` the
  service asked for), optionally within an overall deadline; :meth:`RetryPolicy.call`
  runs an action under the policy and logs one line per retry naming the cause and the
  wait;
* :func:`poll`: waits, with exponential pauses and a deadline, until a status callable
  says done, then raises the caller's timeout error naming the session or instance;
* :data:`clock`: the one place where the client sleeps and reads the time. Tests replace
  it (``monkeypatch.setattr(retry, "clock", fake)``) to run every wait on a virtual clock;
* :class:`RetryTrace`: the ``odps-tunnel-retry-trace-id`` / ``odps-tunnel-retry-index``
  pair every attempt of a tunnel request carries.

Every number lives here: the transport's policies (:func:`request_policy` for the tunnel,
:func:`service_policy` for the service endpoint) read ``options`` (``retry_times``,
``retry_delay``, ``retry_max_delay``, ``tunnel_retry_base_delay``,
``tunnel_retry_max_delay``, ``throttle_retry_times``, ``server_error_retry_times``,
``tunnel_retry_deadline``) when a request starts, and the polls use the named
:class:`Backoff` constants below. Each attempt knows its number (:class:`Attempt`), so what
changes from one attempt to the next is decided here too.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import tenacity
from urllib3.exceptions import NewConnectionError

from ..errors import (
    InternalServerError,
    ServerError,
    SlotReassigned,
    Throttled,
    TunnelConnectionError,
    TunnelError,
)
from ..options import options

__all__ = [
    "Attempt",
    "Backoff",
    "Clock",
    "RETRY_INDEX_HEADER",
    "RETRY_TRACE_ID_HEADER",
    "RetryPolicy",
    "RetryRule",
    "RetryTrace",
    "clock",
    "poll",
    "request_policy",
    "service_policy",
    "tunnel_backoff",
    "is_connect_failure",
    "NO_WAIT",
    "DOWNLOAD_INIT_POLL",
    "INSTANCE_POLL",
    "UPSERT_COMMIT_POLL",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Clock:
    """Where the client sleeps and reads the time (``time.sleep``, ``time.monotonic``).

    The module attribute :data:`clock` is read at every use, so replacing it with any
    object of these two methods moves every retry and poll onto another clock.
    """

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


#: The clock of every retry and poll of the client; tests swap it.
clock: Clock = Clock()


def _sleep(seconds: float) -> None:
    if seconds > 0:  # a retry "at once" does not sleep
        clock.sleep(seconds)


def _now() -> float:
    return clock.monotonic()


@dataclass(frozen=True)
class Backoff:
    """Exponential waits: ``first``, ``first * factor``, ... never above ``cap``."""

    first: float
    factor: float = 2.0
    cap: float | None = None

    def wait(self, n: int) -> float:
        """The wait before retry (or poll) ``n``, counted from 1."""
        wait = self.first * self.factor ** min(max(0, n - 1), 1000)
        return wait if self.cap is None else min(self.cap, wait)

    @classmethod
    def from_options(cls) -> Backoff:
        """``options.retry_delay`` doubling after each failure, up to ``retry_max_delay``."""
        return cls(options.retry_delay, 2.0, options.retry_max_delay)


#: Retry at once: for re-sends whose cause is not load (a broken body, a moved slot).
NO_WAIT = Backoff(0.0)
#: Polls of a download session the service still prepares (``INITIATING``): 0.1 s to 5 s.
DOWNLOAD_INIT_POLL = Backoff(0.1, 2.0, 5.0)
#: Polls of a SQL instance's status (the defaults of ``Instance.wait_for_completion``).
INSTANCE_POLL = Backoff(0.2, 2.0, 5.0)
#: Polls of an upsert commit until the service reports it committed: 1 s to 8 s.
UPSERT_COMMIT_POLL = Backoff(1.0, 2.0, 8.0)


#: The id shared by every attempt of one logical tunnel request (a uuid4).
RETRY_TRACE_ID_HEADER = "odps-tunnel-retry-trace-id"
#: The number of an attempt within its trace: 0 for the first, then 1, 2, ...
RETRY_INDEX_HEADER = "odps-tunnel-retry-index"


class RetryTrace:
    """The identity of one logical tunnel request across all its attempts (protocol §8.3).

    ``trace_id`` is a fresh uuid4 (or the one given); :meth:`next_index` hands out 0, 1,
    2, ... to the attempts, safely from several threads. A session that sends a batch
    again itself (after reloading its routes) passes the same trace to each
    ``RestClient.request``, so the indexes go on across those calls and the service can
    tell a re-sent write from a new one. The header names are not ``x-odps-*``, so they
    are not signed.
    """

    def __init__(self, trace_id: str | None = None):
        if trace_id is not None and not trace_id.strip():
            raise ValueError("a retry trace id must not be blank")
        self.trace_id = trace_id or str(uuid.uuid4())
        self._indexes = itertools.count()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RetryTrace({self.trace_id!r})"

    def next_index(self) -> int:
        """The index of the next attempt: 0 the first time, then 1, 2, ..."""
        with self._lock:
            return next(self._indexes)

    def next_headers(self) -> dict[str, str]:
        """The two headers of the next attempt (takes its index)."""
        return {
            RETRY_TRACE_ID_HEADER: self.trace_id,
            RETRY_INDEX_HEADER: str(self.next_index()),
        }


@dataclass(frozen=True)
class Attempt:
    """One try of an action run by :meth:`RetryPolicy.call`: its number, from 1."""

    number: int


@dataclass(frozen=True)
class RetryRule:
    """A kind of failure that is retried: the first rule of a policy whose ``when``
    accepts the exception decides. ``retries`` is this rule's own budget (None: as long
    as the policy's deadline allows); the wait before its n-th retry is
    ``backoff.wait(n)``, at least the exception's ``retry_after`` when ``retry_after``."""

    name: str
    when: Callable[[BaseException], bool]
    retries: int | None
    backoff: Backoff
    retry_after: bool = True
    log_level: int = logging.WARNING


@dataclass(frozen=True)
class RetryPolicy:
    """Rules for retrying an action, and an optional overall ``deadline`` (seconds from
    the first attempt) that no wait may cross. A failure no rule accepts is raised."""

    rules: tuple[RetryRule, ...] = ()
    deadline: float | None = None

    @classmethod
    def single(
        cls,
        name: str,
        when: Callable[[BaseException], bool],
        *,
        retries: int | None = None,
        backoff: Backoff | None = None,
        retry_after: bool = True,
        log_level: int = logging.WARNING,
    ) -> RetryPolicy:
        """A policy of one rule: ``retries`` defaults to ``options.retry_times`` and the
        waits to :meth:`Backoff.from_options`; ``retry_after=False`` ignores the service's
        ``Retry-After`` (for re-sends made at once, with :data:`NO_WAIT`)."""
        return cls(
            (
                RetryRule(
                    name,
                    when,
                    options.retry_times if retries is None else retries,
                    backoff or Backoff.from_options(),
                    retry_after=retry_after,
                    log_level=log_level,
                ),
            )
        )

    def call(
        self,
        action: Callable[[Attempt], T],
        *,
        what: str,
        allowed: Callable[[BaseException], bool] | None = None,
        before_retry: Callable[[], object] | None = None,
    ) -> T:
        """Run ``action(attempt)`` until it returns, retrying the failures the rules
        accept while their budgets, the deadline and ``allowed(exc)`` (the caller's say,
        asked last) permit; the last failure is raised as it is. ``what`` names the action
        in the log line of each retry. ``before_retry()`` runs after each wait, before the
        next attempt (e.g. to reload a session); its own failure is raised, not retried."""
        run = _Run(self, allowed)
        numbers = itertools.count(1)

        def attempt() -> T:
            number = next(numbers)
            return action(Attempt(number))

        def pause(seconds: float) -> None:
            _sleep(seconds)
            if before_retry is not None:
                before_retry()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(run.should_retry),
            stop=tenacity.stop_never,
            wait=run.wait,
            sleep=pause,
            before_sleep=lambda state: run.log(what, state),
            reraise=True,
        )
        return retrying(attempt)


class _Run:
    """The state of one :meth:`RetryPolicy.call`: each rule's count and the next wait."""

    def __init__(self, policy: RetryPolicy, allowed: Callable[[BaseException], bool] | None):
        self.policy = policy
        self.allowed = allowed
        self.started = _now()
        self.counts: dict[int, int] = {}
        self.rule: RetryRule | None = None
        self.count = 0
        self.next_wait = 0.0

    def should_retry(self, exc: BaseException) -> bool:
        index, rule = next(
            ((i, r) for i, r in enumerate(self.policy.rules) if r.when(exc)), (-1, None)
        )
        if rule is None:
            return False
        count = self.counts.get(index, 0) + 1
        if rule.retries is not None and count > rule.retries:
            return False
        if self.allowed is not None and not self.allowed(exc):
            return False
        wait = rule.backoff.wait(count)
        asked = getattr(exc, "retry_after", None) if rule.retry_after else None
        if asked is not None:
            wait = max(wait, asked)
        deadline = self.policy.deadline
        if deadline is not None and _now() + wait - self.started > deadline:
            return False
        self.counts[index] = count
        self.rule, self.count, self.next_wait = rule, count, wait
        return True

    def wait(self, state: tenacity.RetryCallState) -> float:
        return self.next_wait

    def log(self, what: str, state: tenacity.RetryCallState) -> None:
        rule = self.rule
        if rule is None:  # pragma: no cover - tenacity sleeps only after should_retry
            return
        exc = state.outcome.exception() if state.outcome else None
        log.log(
            rule.log_level,
            "%s failed (%s); %s retry %d%s in %.2f s",
            what,
            describe(exc),
            rule.name,
            self.count,
            self.budget(rule),
            self.next_wait,
        )

    def budget(self, rule: RetryRule) -> str:
        """How far the retries of ``rule`` may go, for the log line."""
        if rule.retries is not None:
            return f" of {rule.retries}"
        deadline = self.policy.deadline
        if deadline is not None:
            return f" until the {deadline:g} s deadline"
        return " (no limit)"


def poll(
    done: Callable[[], bool],
    *,
    backoff: Backoff,
    timeout: float | None,
    timeout_error: Callable[[], BaseException],
    what: str,
    check_first: bool = True,
) -> None:
    """Call ``done()`` until it returns True, pausing ``backoff.wait(1)``, ``wait(2)``, ...
    between calls (``check_first=False``: pause before the first call too).

    With ``timeout`` (seconds from now), the last pause is cut to the time left and, when
    none is left and ``done()`` still says no, ``timeout_error()`` is raised. An exception
    of ``done()`` is raised as it is.
    """
    deadline = None if timeout is None else _now() + timeout
    calls = itertools.count()

    def attempt() -> bool:
        if not check_first and next(calls) == 0:
            return False
        return done()

    def left() -> float | None:
        return None if deadline is None else deadline - _now()

    def stop(state: tenacity.RetryCallState) -> bool:
        remaining = left()
        return remaining is not None and remaining <= 0

    def wait(state: tenacity.RetryCallState) -> float:
        pause = backoff.wait(state.attempt_number)
        remaining = left()
        return pause if remaining is None else max(0.0, min(pause, remaining))

    def timed_out(state: tenacity.RetryCallState) -> None:
        raise timeout_error()

    tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda ready: not ready),
        stop=stop,
        wait=wait,
        sleep=_sleep,
        before_sleep=lambda state: log.debug(
            "%s: not done; polling again in %.2f s",
            what,
            state.next_action.sleep if state.next_action else 0.0,
        ),
        retry_error_callback=timed_out,
    )(attempt)


# -- the transport's rules -------------------------------------------------------------------

_CONNECT_ERRORS = (requests.exceptions.ConnectTimeout,)
#: 308 (slot reassignment) and 429 (flow exceeded): retried with no count limit.
_MOVED_OR_THROTTLED = frozenset({308, 429})
#: 408 (request timeout): retried like a 5xx.
_REQUEST_TIMEOUT = 408


def is_connect_failure(exc: BaseException) -> bool:
    """True when the request never reached the server (so it is safe to repeat)."""
    cause = exc.__cause__
    if isinstance(cause, _CONNECT_ERRORS):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError):
        inner = cause.args[0] if cause.args else None
        reason = getattr(inner, "reason", None)
        return isinstance(reason, NewConnectionError) or isinstance(inner, NewConnectionError)
    return False


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ServerError) else None


def is_moved_or_throttled(exc: BaseException) -> bool:
    """An answer 308 (the slot moved) or 429 (throttled); without a status, the class
    says (:class:`SlotReassigned`, :class:`Throttled`)."""
    status = _status(exc)
    if status is None:
        return isinstance(exc, SlotReassigned | Throttled)
    return status in _MOVED_OR_THROTTLED


def is_server_error(exc: BaseException) -> bool:
    """An answer 5xx or 408; without a status, an :class:`InternalServerError`."""
    status = _status(exc)
    if status is None:
        return isinstance(exc, InternalServerError)
    return status == _REQUEST_TIMEOUT or 500 <= status < 600


def tunnel_backoff() -> Backoff:
    """The tunnel's waits: ``options.tunnel_retry_base_delay`` (1 s) doubling up to
    ``options.tunnel_retry_max_delay`` (64 s): 1, 2, 4, ..., 32, 64, 64, ..."""
    return Backoff(options.tunnel_retry_base_delay, 2.0, options.tunnel_retry_max_delay)


def _connection_rule(idempotent: bool, backoff: Backoff) -> RetryRule:
    def failed(exc: BaseException) -> bool:
        if is_connect_failure(exc):
            return True
        return idempotent and isinstance(exc, TunnelConnectionError)

    return RetryRule("connection", failed, options.retry_times, backoff)


def request_policy(idempotent: bool) -> RetryPolicy:
    """How a tunnel request is retried: pyodps 0.13.2's ``TunnelRetryHandler`` (protocol
    §8.3). The first rule that accepts a failure decides, each rule has its own count:

    * 308 and 429, any method: :func:`tunnel_backoff`, no count limit
      (``options.throttle_retry_times`` sets one) until ``options.tunnel_retry_deadline``;
    * 5xx and 408, any method: :func:`tunnel_backoff`, at most
      ``options.server_error_retry_times`` (7) times;
    * any other answer (other 4xx): never;
    * failures without an answer: a connection that could not be opened (any method:
      nothing was sent) and, for an ``idempotent`` request, a broken connection or a read
      timeout: ``options.retry_times`` (4) times, waiting :meth:`Backoff.from_options`
      (``retry_delay`` 0.1 s doubling up to ``retry_max_delay``; pyodps waits 0.1 s each
      time, we double so that a retry can outlast a server restart).

    Every wait is at least the ``Retry-After`` the service asked for. A session that
    re-sends a write itself runs its loop with this policy (``.call(...,
    before_retry=reload)``) around requests made with ``retry=False``.
    """
    backoff = tunnel_backoff()
    return RetryPolicy(
        (
            RetryRule(
                "moved/throttled", is_moved_or_throttled, options.throttle_retry_times, backoff
            ),
            RetryRule("server error", is_server_error, options.server_error_retry_times, backoff),
            _connection_rule(idempotent, Backoff.from_options()),
        ),
        deadline=options.tunnel_retry_deadline,
    )


def service_policy(idempotent: bool) -> RetryPolicy:
    """How a request to the service endpoint (SQL, tables, tunnel discovery) is retried,
    as pyodps' REST layer does: ``options.retry_times`` times, waiting
    :meth:`Backoff.from_options` (at least ``Retry-After``), for connections that could
    not be opened (any method) and, for an ``idempotent`` request only, 5xx answers and
    broken connections — never a 5xx of a POST, which could run a SQL statement twice.
    Unlike pyodps we also retry throttling (any method: the request was refused
    unprocessed), as this client always has.
    """
    backoff = Backoff.from_options()

    def failed(exc: BaseException) -> bool:
        if is_connect_failure(exc):
            return True
        return idempotent and isinstance(exc, InternalServerError | TunnelConnectionError)

    return RetryPolicy(
        (
            RetryRule(
                "throttled", lambda exc: isinstance(exc, Throttled), options.retry_times, backoff
            ),
            RetryRule("failure", failed, options.retry_times, backoff),
        )
    )


def describe(exc: BaseException | None) -> str:
    """An exception for a log line: ``Type: message`` for ours, ``repr`` for others."""
    if isinstance(exc, TunnelError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)
