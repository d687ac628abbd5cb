"""The service's per-table rate limits on session creation and commits (off by default),
and the tunnel quotas that exist (unchecked by default).

The service documents, per table, 500 upload sessions and 200 download sessions created per
5 minutes and 75 commits per 15 seconds. A :class:`RateLimit` is "N per window seconds";
:class:`RateLimiter` counts events per table in a sliding window of the emulator's clock (so
tests move time instead of waiting) and answers an event over the limit with the service's
429 ``FlowExceeded`` and a ``Retry-After`` of the seconds until a slot frees up.

With a list of known quotas configured, :func:`check_quota` answers a ``quotaName`` outside
it as the service answers a quota that does not exist: ``QuotaNotExist``, HTTP 404 (the
status is inferred: it is the service's status for every "no such object" code, and no
client reads it; pyodps 0.13.2 has no class for the code and raises a plain ``ODPSError``
whose ``code`` is ``QuotaNotExist``).
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import EmulatorError

__all__ = ["RateLimit", "RateLimiter", "check_quota", "name_list", "names"]

_SPEC = re.compile(r"\s*(\d+)\s*(?:/\s*(\d+(?:\.\d+)?)\s*s?)?\s*\Z")


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` events per ``window`` seconds."""

    count: int
    window: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.window <= 0:
            raise ValueError(f"a rate limit needs count >= 1 and window > 0, not {self}")

    @classmethod
    def parse(cls, value: Any) -> RateLimit | None:
        """From a RateLimit, ``(count, window)``, ``"500/300"`` (window in seconds) or None."""
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, tuple | list) and len(value) == 2:
            return cls(int(value[0]), float(value[1]))
        match = _SPEC.match(str(value))
        if not match or not match.group(2):
            raise ValueError(f"rate limit {value!r} is not COUNT/SECONDS, e.g. 500/300")
        return cls(int(match.group(1)), float(match.group(2)))

    def __str__(self) -> str:
        return f"{self.count}/{self.window:g}"


class RateLimiter:
    """Sliding-window counters keyed by (what, table); ``clock()`` gives the time."""

    def __init__(self, clock: Any):
        self._clock = clock
        self._events: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, limit: RateLimit | None, what: str, key: str) -> None:
        """Count one event, or raise 429 ``FlowExceeded`` if ``limit`` is reached."""
        if limit is None:
            return
        now = self._clock()
        with self._lock:
            events = self._events.setdefault((what, key), deque())
            while events and events[0] <= now - limit.window:
                events.popleft()
            if len(events) >= limit.count:
                wait = max(1, math.ceil(events[0] + limit.window - now))
                raise EmulatorError(
                    "FlowExceeded",
                    f"Your flow quota is exceeded: at most {limit.count} {what} per "
                    f"{limit.window:g} s on table {key}",
                    429,
                    headers={"Retry-After": str(wait)},
                )
            events.append(now)


def name_list(value: str | Iterable[str] | None) -> str | None:
    """A configured list of names as comma-separated text (None stays None: unchecked).

    Text form, so the value round-trips through its CLI option unchanged.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return ",".join(item.strip() for item in items if item.strip())


def names(value: str | None) -> frozenset[str] | None:
    """The set of names in a :func:`name_list` value (None: no list configured)."""
    if value is None:
        return None
    return frozenset(item for item in value.split(",") if item)


def check_quota(known: str | None, quota: str | None) -> None:
    """Refuse a ``quotaName`` that is not one of the ``known`` quotas (404 ``QuotaNotExist``).

    Without a configured list, or without a quota in the request, nothing is checked.
    """
    allowed = names(known)
    if allowed is None or not quota or quota in allowed:
        return
    raise EmulatorError("QuotaNotExist", f"The specified tunnel quota does not exist: {quota}", 404)
