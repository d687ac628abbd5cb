"""The HTTP protocol the emulator serves with: uvicorn's httptools one, minus two body copies.

uvicorn appends every piece of a request body the parser hands over to a ``bytearray``
and gives the application ``bytes(bytearray)``: two copies of each body byte, on the event
loop, besides the parser's own. For block uploads of hundreds of MiB that is a large
share of the emulator's CPU. :class:`BodyProtocol` keeps what the parser hands over as it
is: a single piece reaches the application as that very ``bytes`` object (``bytes(b)`` of
a ``bytes`` is ``b``), several pieces received between two reads are joined once. Flow
control (pause reading above uvicorn's high-water mark) is unchanged.

Without httptools (uvicorn then speaks HTTP through h11), :func:`http_protocol` leaves
uvicorn's choice alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["http_protocol"]


class _Pieces:
    """Body pieces received since the application last read; joined when it reads."""

    __slots__ = ("parts", "size")

    def __init__(self, first: bytes, second: bytes):
        self.parts = [first, second]
        self.size = len(first) + len(second)

    def append(self, piece: bytes) -> None:
        self.parts.append(piece)
        self.size += len(piece)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


def http_protocol() -> Any:
    """What to pass as uvicorn's ``http``: :class:`BodyProtocol`, or ``"auto"``."""
    try:
        from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn uses h11
        return "auto"

    class BodyProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, holding body pieces without copying them."""

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if (self.parser.should_upgrade() and self._should_upgrade()) or (
                cycle.response_complete
            ):
                return
            pending = cycle.body
            if not pending:
                cycle.body = body
            elif isinstance(pending, _Pieces):
                pending.append(body)
            else:
                cycle.body = _Pieces(bytes(pending), body)
            if len(cycle.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()

    return BodyProtocol
