"""Re-opening a download body at the first undelivered row: the resume logic of every reader."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import DatetimeOverflowError, TunnelError
from ..options import options

__all__ = ["ResumableRows"]

log = logging.getLogger(__name__)


class ResumableRows:
    """Rows of a body that can be re-opened at any row: the resume logic of every reader.

    ``open_batches(start_row)`` returns an iterator of row batches of a body beginning at
    ``start_row``. When reading fails (a broken connection, a truncated or corrupt body:
    a connection dropped between two chunks looks exactly like a truncated body),
    ``on_exception(exc)`` is asked first (True means give up and raise); otherwise the body
    is re-opened at the first row not yet delivered, up to ``retry_times`` times in a row.
    A value Python cannot hold (:class:`DatetimeOverflowError`) is raised at once.
    Rows are only delivered once verified, so a resume neither loses nor repeats rows.
    """

    def __init__(
        self,
        open_batches: Callable[[int], Iterator[Any]],
        count_rows: Callable[[Any], int],
        on_exception: Callable[[BaseException], bool] | None = None,
        retry_times: int | None = None,
    ):
        self._open = open_batches
        self._count_rows = count_rows
        self._on_exception = on_exception
        self._retry_times = options.retry_times if retry_times is None else retry_times
        self.cursor = 0
        self._batches: Iterator[Any] | None = None
        self._failures = 0

    def next_batch(self) -> Any | None:
        while True:
            try:
                if self._batches is None:
                    self._batches = self._open(self.cursor)
                batch = next(self._batches, None)
            except Exception as exc:  # noqa: BLE001 - every failure may be resumable
                self._batches = None
                self._handle(exc)
                continue
            if batch is None:
                return None
            self._failures = 0
            self.cursor += self._count_rows(batch)
            return batch

    def close(self) -> None:
        """Stop reading: close the body being read (its iterator's cleanup runs now)."""
        batches, self._batches = self._batches, None
        close = getattr(batches, "close", None)
        if close is not None:
            close()

    def _handle(self, exc: Exception) -> None:
        if isinstance(exc, TunnelError):
            exc.with_context(row=self.cursor)
        else:
            exc.add_note(f"while reading the body at row {self.cursor}")
        if isinstance(exc, DatetimeOverflowError):  # the same value comes back every time
            raise exc
        if self._on_exception is not None and self._on_exception(exc):
            raise exc
        self._failures += 1
        if self._failures > self._retry_times:
            raise exc
        log.warning("read failed at row %d (%r); re-opening the body there", self.cursor, exc)
