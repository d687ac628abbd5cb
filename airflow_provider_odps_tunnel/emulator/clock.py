"""The emulator's clock: wall time plus an offset that tests move forward.

Session expiry and rate-limit windows read this clock, so a test can expire a 24 h session
by moving the clock 25 h instead of waiting. Request signatures are still checked against
the real time (the client signs with it). The offset is kept in ``clock.json`` in the data
directory, so it survives restarts like everything else.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .fsutil import atomic_write_json, read_json

__all__ = ["Clock"]


class Clock:
    """Now = ``time.time() + offset``; ``path`` (optional) persists the offset."""

    def __init__(self, path: Path | None = None):
        self._path = path
        self._lock = threading.Lock()
        self.offset = 0.0
        if path is not None and path.exists():
            self.offset = float(read_json(path).get("offset", 0.0))

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, with a negative value); returns the new now."""
        with self._lock:
            self.offset += float(seconds)
            self._persist()
        return self.now()

    def set(self, timestamp: float) -> float:
        """Make now equal the epoch ``timestamp``; returns it."""
        with self._lock:
            self.offset = float(timestamp) - time.time()
            self._persist()
        return self.now()

    def reset(self) -> None:
        """Back to the wall clock."""
        with self._lock:
            self.offset = 0.0
            self._persist()

    def _persist(self) -> None:
        if self._path is not None:
            atomic_write_json(self._path, {"offset": self.offset})
