"""Sending a streamed request body with gathered writes instead of one copy per chunk.

urllib3 sends each chunk of an iterable body as ``b"%x\\r\\n%b\\r\\n" % (len, chunk)``: a
copy of every chunk, and one system call per chunk however small (an Arrow body is 64 KiB
pieces with a 4-byte CRC word after each). The connections here send such a body
themselves: the buffers are gathered, as they are, into HTTP chunks of up to
:data:`GATHER_BYTES`, and each goes out with one ``sendmsg`` of the chunk header, the
buffers and the trailer, so the payload is copied only by the kernel. An empty buffer in
the body means "nothing more is ready now" (see :mod:`..io.body`): what is gathered is
sent then, so nothing waits for data that has not been written. A body that can push
(``push_into(send)``) is handed a function that sends one group of buffers this way, and
its producer's thread sends as it writes. TLS sockets have no
``sendmsg``; there each gathered chunk is joined and sent with ``sendall``.

:class:`GatherAdapter` is a ``requests`` adapter whose pools make these connections; every
other request (bytes bodies, proxies) goes out exactly as urllib3 sends it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["GatherAdapter", "GATHER_BYTES", "send_gathered"]

#: The most body bytes sent as one HTTP chunk.
GATHER_BYTES = 1 << 20
# Buffers per sendmsg call, below every system's IOV_MAX (1024 on Linux).
_MAX_BUFFERS = 512


def _send_vectored(sock: socket.socket, buffers: list[Any]) -> None:
    """``sendmsg`` all of ``buffers``, continuing after partial sends."""
    start, count = 0, len(buffers)
    while start < count:
        batch = buffers[start : start + _MAX_BUFFERS]
        sent = sock.sendmsg(batch)
        for buf in batch:
            size = len(buf)
            if sent < size:
                if sent:
                    buffers[start] = memoryview(buf).cast("B")[sent:]
                break
            sent -= size
            start += 1


def _send(sock: Any, buffers: list[Any]) -> None:
    if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
        _send_vectored(sock, buffers)
    else:  # TLS encrypts a copy anyway: one joined write
        sock.sendall(b"".join(buffers))


def send_gathered(sock: Any, body: Iterable[Any], framed: bool) -> None:
    """Send ``body`` (bytes-like buffers) on ``sock``, gathered; ``framed``: as HTTP chunks
    (the closing zero-size chunk is left to the caller)."""
    gathered: list[Any] = []
    size = 0

    def flush() -> None:
        nonlocal gathered, size
        if size:
            if framed:
                gathered.insert(0, b"%x\r\n" % size)
                gathered.append(b"\r\n")
            _send(sock, gathered)
        gathered, size = [], 0

    for buf in body:
        if not buf:
            flush()
            continue
        if isinstance(buf, str):
            buf = buf.encode("utf-8")
        elif isinstance(buf, memoryview) and buf.itemsize != 1:
            buf = buf.cast("B")  # so that len() counts bytes
        gathered.append(buf)
        size += len(buf)
        if size >= GATHER_BYTES or len(gathered) >= _MAX_BUFFERS - 2:
            flush()
    flush()


class _GatheredBody:
    """An iterable body that sends itself on the connection's socket and yields nothing,
    so urllib3's loop has no chunk to copy; urllib3 still writes the closing chunk."""

    def __init__(self, conn: HTTPConnection, body: Iterable[Any], framed: bool):
        self._conn = conn
        self._body = body
        self._framed = framed

    def __iter__(self) -> Iterator[bytes]:
        # A generator: urllib3 calls iter() before it sends the headers, next() after.
        sock, framed = self._conn.sock, self._framed
        push = getattr(self._body, "push_into", None)
        if push is not None:  # the producer's thread sends each group as it is written
            push(lambda group: send_gathered(sock, group, framed))
        else:
            send_gathered(sock, self._body, framed)
        yield from ()


def _streamed(body: Any) -> bool:
    """True for a body urllib3 would send chunk by chunk (an iterable, not bytes or a file)."""
    if body is None or isinstance(body, bytes | bytearray | memoryview | str):
        return False
    return not hasattr(body, "read") and hasattr(body, "__iter__")


class _GatherMixin:
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
        **kwargs: Any,
    ) -> None:
        if _streamed(body):
            keys = {k.lower() for k in headers or {}}
            framed = chunked or "content-length" not in keys
            body = _GatheredBody(self, body, framed)  # type: ignore[arg-type]
        super().request(method, url, body, headers, chunked=chunked, **kwargs)  # type: ignore[misc]


class _GatherHTTPConnection(_GatherMixin, HTTPConnection):
    pass


class _GatherHTTPSConnection(_GatherMixin, HTTPSConnection):
    pass


class _GatherHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GatherHTTPConnection


class _GatherHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GatherHTTPSConnection


class GatherAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose direct (not proxied) connections send streamed bodies with
    :func:`send_gathered`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GatherHTTPPool,
            "https": _GatherHTTPSPool,
        }
