"""Re-sending a streamed block body after its request failed.

A writer opened with an explicit block id streams its body while the caller writes, so the
body cannot simply be produced again. :class:`SpooledBody` keeps every chunk that went out:
the chunks themselves while all such bodies of the process keep less than
``options.block_buffer_size`` bytes together (what the buffered writers of a session
share; the chunks are immutable, so keeping them costs no copy), the rest in a temporary
file. When the request fails, the rest of the body is drained into the spool, so that the
whole body can be sent again from there, since a block id is idempotent. A body whose
producer aborted (the writer left its ``with`` block by an exception) is never re-sent: it
is incomplete.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import InternalServerError, Throttled, TunnelConnectionError
from ..options import options

__all__ = ["SpooledBody", "send_resendable", "RESENDABLE"]

log = logging.getLogger(__name__)

_READ = 1 << 20
#: Failures of a streamed body that sending it again whole can cure.
RESENDABLE = (TunnelConnectionError, InternalServerError, Throttled)


class _HeldBytes:
    """The bytes all :class:`SpooledBody` objects of the process keep in memory: one budget
    (``options.block_buffer_size``) however many streamed writers are open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def take(self, size: int, limit: int) -> bool:
        with self._lock:
            if self.total + size > limit:
                return False
            self.total += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.total -= size


_HELD = _HeldBytes()


class _PushedPass:
    """A :class:`SpooledBody`'s first pass over chunks that can be pushed: iterated, the
    chunks as they come; pushed, each group kept and then sent."""

    def __init__(self, body: SpooledBody):
        self._body = body
        self._pull = body._pull()  # a generator: nothing is pulled before next()

    def __iter__(self) -> Iterator[bytes | memoryview]:
        return self

    def __next__(self) -> bytes | memoryview:
        return next(self._pull)

    def push_into(self, send: Callable[[list], None]) -> None:
        self._body._push_into(send)


class SpooledBody:
    """Passes ``chunks`` through once (:meth:`first_pass`) while keeping them; then
    iterating it gives the whole body again. Call :meth:`close` to drop what was kept.

    The chunks must be buffers nobody changes any more (what :class:`~.body.StreamingBody`
    hands out). They are kept as they are, without a copy, while the bodies of the process
    keep less than ``max_memory`` bytes together (default ``options.block_buffer_size``);
    the rest goes to a temporary file.
    """

    def __init__(self, chunks: Iterable[bytes | memoryview], max_memory: int | None = None):
        self._chunks = iter(chunks)
        self._max_memory = options.block_buffer_size if max_memory is None else max_memory
        self._held: list[bytes | memoryview] = []
        self._held_bytes = 0
        self._spill: Any = None  # the temporary file, once the memory share is used up
        self.complete = False
        self.aborted = False

    def _keep(self, chunk: bytes | memoryview) -> None:
        if self._spill is None and _HELD.take(len(chunk), self._max_memory):
            self._held.append(chunk)
            self._held_bytes += len(chunk)
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._spill.write(chunk)

    def _pull(self) -> Iterator[bytes | memoryview]:
        while True:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.complete = True
                return
            except BaseException:  # the producer gave up: the body is incomplete
                self.aborted = True
                raise
            if chunk:
                self._keep(chunk)
            yield chunk

    def first_pass(self) -> Iterator[bytes | memoryview]:
        """The body as it is produced (one pass only). When the chunks can be pushed
        (``push_into``, see ``body.BodyChunks``), so can the result, keeping each group
        before it is sent."""
        if hasattr(self._chunks, "push_into"):
            return _PushedPass(self)
        return self._pull()

    def _push_into(self, send: Callable[[list], None]) -> None:
        failed: list[BaseException] = []  # what send raised (in the producer's thread)

        def keep_and_send(group: list) -> None:
            for chunk in group:
                if chunk:
                    self._keep(chunk)
            try:
                send(group)
            except BaseException as exc:
                failed.append(exc)
                raise

        try:
            self._chunks.push_into(keep_and_send)  # type: ignore[attr-defined]
        except BaseException as exc:
            # A failed send leaves the rest of the body to come (``drain``); anything
            # else is the producer giving up: the body stays incomplete.
            if not any(exc is f for f in failed):
                self.aborted = True
            raise
        self.complete = True

    def drain(self) -> bool:
        """Keep what the producer has not handed out yet; True when the body is whole."""
        if not (self.complete or self.aborted):
            try:
                for _ in self._pull():
                    pass
            except BaseException:
                return False
        return self.complete

    def __iter__(self) -> Iterator[bytes | memoryview]:
        """The whole kept body, from the start (as often as needed)."""
        yield from self._held
        if self._spill is not None:
            self._spill.seek(0)
            while chunk := self._spill.read(_READ):
                yield chunk

    def close(self) -> None:
        _HELD.give_back(self._held_bytes)
        self._held, self._held_bytes = [], 0
        if self._spill is not None:
            self._spill.close()


def send_resendable(
    chunks: Iterable[bytes], send: Callable[[Iterable[bytes], bool], Any], what: str
) -> Any:
    """Send a one-shot streamed body with ``send(body, repeatable)``, spooling it as it goes;
    after a :data:`RESENDABLE` failure, send it once more whole from the spool
    (``repeatable`` True: the transport may then retry it too). ``what`` names the body in
    the log."""
    body = SpooledBody(chunks)
    try:
        try:
            return send(body.first_pass(), False)
        except RESENDABLE as exc:
            if not body.drain():
                raise
            log.warning("%s failed while streaming (%s); sending it again", what, exc)
        return send(body, True)
    finally:
        body.close()
