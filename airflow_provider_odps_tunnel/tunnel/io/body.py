"""Streaming a request body to the HTTP layer while the caller is still producing it.

A writer produces bytes; the HTTP layer consumes an iterable of chunks in
``request_callback(chunks)``. :class:`StreamingBody` runs the callback in a thread and feeds
it through a small bounded queue, so a block of any size is sent with a few chunks of
memory, and an error on either side reaches the other instead of leaving it blocked.

Hand-offs between the threads are few and large: a queue item is a list of buffers of up to
about :data:`HANDOFF_BYTES`, not one small chunk. Buffers the writer will never change
(:meth:`StreamingBody.write_pieces`, e.g. views of serialized Arrow batches) pass through
without a copy. The consumer sees the buffers one by one, each item followed by an empty
chunk: the mark that nothing more is ready yet, which the transport uses to send what it
has gathered (an empty chunk is skipped by every HTTP layer).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..codec.compression import Compressor

__all__ = ["StreamingBody", "HANDOFF_BYTES"]

_END = object()
_POLL_SECONDS = 0.5
#: About how many body bytes go to the consumer thread in one hand-off.
HANDOFF_BYTES = 1 << 20


class _Aborted(Exception):
    """Raised inside the consumer when the producer gave up."""


class StreamingBody:
    """Feed ``request_callback`` an iterable of bytes-like chunks while the body is written.

    ``write`` takes uncompressed bytes (copied), ``write_pieces`` buffers that never change
    (not copied); ``close`` ends the body, waits for the callback and returns its result
    (or raises its exception). At most ``max_queued`` hand-offs of about
    :data:`HANDOFF_BYTES` each wait in memory. Small writes are gathered into chunks of
    ``chunk_size`` bytes.
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
        self._handoff = max(chunk_size, HANDOFF_BYTES)
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

    def _chunks(self) -> Iterator[bytes | memoryview]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
            yield b""  # the mark: send what is gathered

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

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``, which the caller may change afterwards: it is copied once and
        handed on in chunks of ``chunk_size``; a shorter rest waits for more."""
        if not data:
            return
        size = self._chunk_size
        if self._pending or len(data) < size:
            self._pending += data
            if len(self._pending) < size:
                return
            data = bytes(self._pending)
            self._pending.clear()
        else:
            data = bytes(data)  # no copy when it is bytes already
        view = memoryview(data)
        whole = len(view) - len(view) % size
        if whole < len(view):
            self._pending += view[whole:]
        self._hand_over([view[i : i + size] for i in range(0, whole, size)], whole)

    def _put_pending(self) -> None:
        chunk = bytes(self._pending)
        self._pending.clear()
        self._hand_over([chunk], len(chunk))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to the body (copied: the caller may reuse its buffer)."""
        if self._closed:
            raise ValueError("write to a closed body")
        self.raw_bytes += len(data)
        if self._compressor is not None:
            data = self._compressor.compress(bytes(data))
        self._emit(data)

    def write_pieces(self, pieces: Iterable[bytes | memoryview]) -> None:
        """Add ``pieces``, buffers nobody changes any more, to the body without copying
        them (compressed, they are copied by the compressor as usual)."""
        if self._closed:
            raise ValueError("write to a closed body")
        if self._compressor is not None:
            for piece in pieces:
                self.raw_bytes += len(piece)
                self._emit(self._compressor.compress(piece))
            return
        if self._pending:
            self._put_pending()
        group: list[bytes | memoryview] = []
        size = 0
        for piece in pieces:
            if not piece:
                continue
            group.append(piece)
            size += len(piece)
            self.raw_bytes += len(piece)
            if size >= self._handoff:
                self._hand_over(group, size)
                group, size = [], 0
        if group:
            self._hand_over(group, size)

    def _hand_over(self, group: list[bytes | memoryview], size: int) -> None:
        self.sent_bytes += size
        self._put(group)

    def close(self) -> Any:
        """End the body and return what ``request_callback`` returned."""
        if self._closed:
            return self._result
        self._closed = True
        if self._compressor is not None:
            self._emit(self._compressor.flush())
        if self._pending:
            self._put_pending()
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
