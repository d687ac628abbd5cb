"""Progress of a transfer: rows, bytes and throughput, for callbacks and task logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressEvent"]

log = logging.getLogger("airflow_provider_odps_tunnel.tunnel.progress")


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot handed to progress callbacks."""

    kind: str
    rows: int
    bytes: int
    seconds: float
    done: bool

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        state = "done" if self.done else "so far"
        return (
            f"{self.kind}: {self.rows} rows, {self.megabytes:.1f} MB in {self.seconds:.1f} s "
            f"({self.mb_per_second:.1f} MB/s) {state}"
        )


class Progress:
    """Counts rows and bytes; logs and calls ``callback`` at most every ``interval`` seconds.

    ``callback(event)`` also runs once when the transfer finishes. Set ``callback`` on a
    reader's or writer's ``progress`` attribute to follow a long transfer.
    """

    def __init__(
        self,
        kind: str,
        callback: Callable[[ProgressEvent], None] | None = None,
        interval: float = 10.0,
    ):
        self.kind = kind
        self.callback = callback
        self.interval = interval
        self.rows = 0
        self.bytes = 0
        self._start = time.monotonic()
        self._last_report = self._start

    def add(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        now = time.monotonic()
        if now - self._last_report >= self.interval:
            self._last_report = now
            self._report(now, done=False)

    def finish(self) -> None:
        self._report(time.monotonic(), done=True)

    def _report(self, now: float, done: bool) -> None:
        event = ProgressEvent(self.kind, self.rows, self.bytes, now - self._start, done)
        log.info("%s", event)
        if self.callback is not None:
            self.callback(event)
