"""Data files that running SQL statements read, kept from the garbage collector.

A statement snapshots the manifests of the tables it reads, then reads their files; a
concurrent overwrite or drop could otherwise delete those files mid-query. The catalog asks
:meth:`FilePins.files` (besides the live tunnel sessions) before deleting anything.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["FilePins", "PinScope"]


class FilePins:
    """A multiset of pinned file names per table id (thread-safe)."""

    def __init__(self) -> None:
        self._pins: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def _add(self, table_id: str, names: Iterable[str]) -> None:
        with self._lock:
            self._pins.setdefault(table_id, Counter()).update(names)

    def _remove(self, table_id: str, names: Iterable[str]) -> None:
        with self._lock:
            pins = self._pins.get(table_id)
            if pins is None:
                return
            pins.subtract(names)
            for name in [n for n, count in pins.items() if count <= 0]:
                del pins[name]
            if not pins:
                del self._pins[table_id]

    def files(self, table_id: str) -> set[str]:
        """The pinned data files of a table."""
        with self._lock:
            return set(self._pins.get(table_id, ()))

    @contextmanager
    def scope(self) -> Iterator[PinScope]:
        """Pins taken through the yielded scope are released when the block ends."""
        scope = PinScope(self)
        try:
            yield scope
        finally:
            for table_id, names in scope.held:
                self._remove(table_id, names)


class PinScope:
    """The pins of one statement."""

    def __init__(self, owner: FilePins):
        self._owner = owner
        self.held: list[tuple[str, list[str]]] = []

    def pin(self, table_id: str, names: Iterable[str]) -> None:
        names = list(names)
        self._owner._add(table_id, names)
        self.held.append((table_id, names))
