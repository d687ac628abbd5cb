"""Re-sending a streamed block body after its request failed.

A writer opened with an explicit block id streams its body while the caller writes, so the
body cannot simply be produced again. :class:`SpooledBody` keeps a copy of every chunk that
went out in a temporary spool (memory up to ``max_memory``, then disk). When the request
fails, the rest of the body is drained into the spool, so that the whole body can be sent
again from there, since a block id is idempotent. A body whose producer aborted (the
writer left its ``with`` block by an exception) is never re-sent: it is incomplete.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import InternalServerError, Throttled, TunnelConnectionError

__all__ = ["SpooledBody", "send_resendable", "RESENDABLE"]

log = logging.getLogger(__name__)

_READ = 1 << 20
#: Failures of a streamed body that sending it again whole can cure.
RESENDABLE = (TunnelConnectionError, InternalServerError, Throttled)


class SpooledBody:
    """Passes ``chunks`` through once (:meth:`first_pass`) while spooling them; then
    iterating it gives the whole body again. Call :meth:`close` to drop the spool."""

    def __init__(self, chunks: Iterable[bytes], max_memory: int = 4 << 20):
        self._chunks = iter(chunks)
        self._spool = tempfile.SpooledTemporaryFile(max_size=max_memory)  # noqa: SIM115
        self.complete = False
        self.aborted = False

    def _pull(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.complete = True
                return
            except BaseException:  # the producer gave up: the body is incomplete
                self.aborted = True
                raise
            self._spool.write(chunk)
            yield chunk

    def first_pass(self) -> Iterator[bytes]:
        """The body as it is produced (one pass only)."""
        return self._pull()

    def drain(self) -> bool:
        """Spool what the producer has not handed out yet; True when the body is whole."""
        if not (self.complete or self.aborted):
            try:
                for _ in self._pull():
                    pass
            except BaseException:
                return False
        return self.complete

    def __iter__(self) -> Iterator[bytes]:
        """The whole spooled body, from the start (as often as needed)."""
        self._spool.seek(0)
        while chunk := self._spool.read(_READ):
            yield chunk

    def close(self) -> None:
        self._spool.close()


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
