"""Progress lines for long transfers in task logs: rows, MB, MB/s and an ETA.

The ETA comes from rows when the total row count is known (Parquet metadata, a download
session's count), else from finished units of work (blocks, ranges, pieces).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

__all__ = ["TransferProgress"]


class TransferProgress:
    """Counts rows and bytes of one transfer and logs a line at most every ``interval`` s.

    Thread-safe: writer threads may call ``add`` concurrently.

    :param log: the logger to write to (the task's ``self.log``).
    :param what: what moves, e.g. ``"upload to proj.sales/ds=2024-01-01"``.
    :param total_rows: rows expected in total, when known.
    :param total_units: units of work (blocks, ranges) expected in total, when known.
    :param unit: what a unit is, for the line (``"3 of 8 blocks done"``).
    :param interval: seconds between two progress lines.
    """

    def __init__(
        self,
        log: Any,
        what: str,
        *,
        total_rows: int | None = None,
        total_units: int | None = None,
        unit: str = "units",
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.what = what
        self.total_rows = total_rows
        self.total_units = total_units
        self.unit = unit
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._last = self._start
        self.rows = 0
        self.bytes = 0
        self.units = 0

    def add(self, rows: int, nbytes: int) -> None:
        """Count ``rows`` and ``nbytes`` more; may log a progress line."""
        with self._lock:
            self.rows += rows
            self.bytes += nbytes
            now = self._clock()
            due = now - self._last >= self.interval
            if due:
                self._last = now
        if due:
            self.log.info("%s", self.line())

    def unit_done(self, rows: int = 0, nbytes: int = 0) -> None:
        """A unit of work finished (optionally counting rows and bytes it moved at once)."""
        with self._lock:
            self.units += 1
        if rows or nbytes:
            self.add(rows, nbytes)

    def eta(self) -> timedelta | None:
        """Estimated time left, or None when it cannot be estimated yet."""
        elapsed = self._clock() - self._start
        if elapsed <= 0:
            return None
        if self.total_rows and self.rows:
            left = max(0, self.total_rows - self.rows) * elapsed / self.rows
        elif self.total_units and self.units:
            left = max(0, self.total_units - self.units) * elapsed / self.units
        else:
            return None
        return timedelta(seconds=round(left))

    def line(self, done: bool = False) -> str:
        """The progress line: rows, MB, MB/s and ETA (or the total time when done)."""
        elapsed = max(self._clock() - self._start, 1e-9)
        mb = self.bytes / 1e6
        rows = f"{self.rows:,}"
        if self.total_rows:
            rows += f"/{self.total_rows:,} ({100 * self.rows / self.total_rows:.0f}%)"
        units = f", {self.units} of {self.total_units} {self.unit} done" if self.total_units else ""
        text = f"{self.what}: {rows} rows, {mb:.1f} MB, {mb / elapsed:.1f} MB/s{units}"
        if done:
            return f"{text}, finished in {timedelta(seconds=round(elapsed))}"
        eta = self.eta()
        return f"{text}, ETA {eta}" if eta is not None else text

    def finish(self) -> None:
        """Log the final line."""
        self.log.info("%s", self.line(done=True))
