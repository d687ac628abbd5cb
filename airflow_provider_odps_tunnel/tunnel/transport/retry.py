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
  it (``monkeypatch.setattr(retry, "clock", fake)``) to run every wait on a virtual clock.

Every number lives here: the transport's policy (:func:`request_policy`) reads ``options``
(``retry_times``, ``throttle_retry_times``, ``retry_delay``, ``retry_max_delay``) when a
request starts, and the polls use the named :class:`Backoff` constants below. The rules a
request is retried by are all in :func:`request_policy`. Each attempt knows its number
(:class:`Attempt`), so what changes from one attempt to the next is decided here too.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import tenacity
from urllib3.exceptions import NewConnectionError

from ..errors import InternalServerError, Throttled, TunnelConnectionError, TunnelError
from ..options import options

__all__ = [
    "Attempt",
    "Backoff",
    "Clock",
    "RetryPolicy",
    "RetryRule",
    "clock",
    "poll",
    "request_policy",
    "is_connect_failure",
    "NO_WAIT",
    "DOWNLOAD_INIT_POLL",
    "INSTANCE_POLL",
    "UPSERT_COMMIT_POLL",
    "UPSERT_SEND_ATTEMPTS",
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
#: Rounds of sending the buckets of one upsert flush (the session reloaded in between).
UPSERT_SEND_ATTEMPTS = 3


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
        budget = f" of {rule.retries}" if rule.retries is not None else ""
        log.log(
            rule.log_level,
            "%s failed (%s); %s retry %d%s in %.2f s",
            what,
            describe(exc),
            rule.name,
            self.count,
            budget,
            self.next_wait,
        )


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


def request_policy(idempotent: bool) -> RetryPolicy:
    """How a request is retried (protocol §8.3), with separate budgets:

    * throttling (HTTP 429, ``FlowExceeded``, ``QPSExceeded``, ``SlotExceeded``), any
      method: ``options.throttle_retry_times`` times;
    * connections that could not be opened (any method: nothing was sent) and, for an
      ``idempotent`` request, 5xx answers and broken connections:
      ``options.retry_times`` times.

    Both wait :meth:`Backoff.from_options`, at least the ``Retry-After`` asked for.
    """
    backoff = Backoff.from_options()

    def failed(exc: BaseException) -> bool:
        if is_connect_failure(exc):
            return True
        return idempotent and isinstance(exc, InternalServerError | TunnelConnectionError)

    return RetryPolicy(
        (
            RetryRule(
                "throttled",
                lambda exc: isinstance(exc, Throttled),
                options.throttle_retry_times,
                backoff,
            ),
            RetryRule("failure", failed, options.retry_times, backoff),
        )
    )


def describe(exc: BaseException | None) -> str:
    """An exception for a log line: ``Type: message`` for ours, ``repr`` for others."""
    if isinstance(exc, TunnelError):
        return f"{type(exc).__name__}: {exc}"
    return repr(exc)
