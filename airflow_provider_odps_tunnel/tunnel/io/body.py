"""Streaming a request body to the HTTP layer while the caller is still producing it.

A writer produces bytes; the HTTP layer consumes an iterable of chunks in
``request_callback(chunks)``. :class:`StreamingBody` runs the callback in a thread and feeds
it through a small bounded queue, so a block of any size is sent with a few chunks of
memory, and an error on either side reaches the other instead of leaving it blocked.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..codec.compression import Compressor

__all__ = ["StreamingBody"]

_END = object()
_POLL_SECONDS = 0.5


class _Aborted(Exception):
    """Raised inside the consumer when the producer gave up."""


class StreamingBody:
    """Feed ``request_callback`` an iterable of chunks of at most ``chunk_size`` bytes.

    ``write`` takes uncompressed bytes; ``close`` ends the body, waits for the callback
    and returns its result (or raises its exception). At most ``max_queued`` chunks wait
    in memory.
    """

    def __init__(
        self,
        request_callback: Callable[[Iterator[bytes]], Any],
        chunk_size: int,
        compressor: Compressor | None = None,
        max_queued: int = 4,
    ):
        self._callback = request_callback
        self._chunk_size = chunk_size
        self._compressor = compressor
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._pending = bytearray()
        self._thread: threading.Thread | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._closed = False
        self.raw_bytes = 0
        self.sent_bytes = 0

    def _run(self) -> None:
        try:
            self._result = self._callback(self._chunks())
        except BaseException as exc:  # handed to the producer in close()/write()
            self._error = exc
        finally:
            # Unblock a producer waiting on a full queue.
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tunnel-body", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        if self._thread is None:
            self._start()
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                if item is _END or isinstance(item, BaseException):
                    return
                raise RuntimeError("the request ended before the body was complete")
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self._pending += data
        size = self._chunk_size
        while len(self._pending) >= size:
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            self.sent_bytes += len(chunk)
            self._put(chunk)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ValueError("write to a closed body")
        self.raw_bytes += len(data)
        if self._compressor is not None:
            data = self._compressor.compress(bytes(data))
        self._emit(data)

    def close(self) -> Any:
        """End the body and return what ``request_callback`` returned."""
        if self._closed:
            return self._result
        self._closed = True
        if self._compressor is not None:
            self._emit(self._compressor.flush())
        if self._pending:
            self.sent_bytes += len(self._pending)
            self._put(bytes(self._pending))
            self._pending.clear()
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def abort(self, reason: BaseException | None = None) -> None:
        """Stop the request without completing the body; the callback sees an error."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._put(reason or _Aborted("body aborted by the writer"))
            self._thread.join()
