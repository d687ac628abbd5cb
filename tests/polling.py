"""The one way tests wait for something: poll a condition, with a deadline.

Tests never sleep a fixed time to let something happen; they poll until it has happened
and fail, naming what they waited for, when it does not happen in time. Import it as
``from polling import wait_until`` (``tests/`` is on ``sys.path``, as for ``vector_values``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WaitTimeout", "wait_until"]

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold in time: a test failure, and a ``TimeoutError`` (so a wait
    that is only best effort can ``contextlib.suppress(TimeoutError)``)."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    It is called at least once, then every ``interval`` seconds; once ``timeout`` seconds
    have passed without a truthy answer it raises :class:`WaitTimeout` saying what it waited
    for: ``message``, e.g. "the commit to be published", or a callable making that text when
    the wait fails (say, to add the tail of a log as it is then).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
