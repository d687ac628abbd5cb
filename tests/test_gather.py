"""Gathered sending of streamed request bodies (transport/gather.py)."""

from __future__ import annotations

import array
import socket

import pytest

from airflow_provider_odps_tunnel.tunnel.transport import gather


class ShortWrites(socket.socket):
    """A socket whose ``sendmsg`` takes at most ``limit`` bytes per call, as a full socket
    buffer does, and records what it took."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.calls: list[int] = []
        self.received = bytearray()

    def sendmsg(self, buffers):  # type: ignore[override]
        left = self.limit
        for buf in buffers:
            data = bytes(buf)[:left]
            self.received += data
            left -= len(data)
            if not left:
                break
        self.calls.append(len(buffers))
        return self.limit - left


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts)


@pytest.mark.parametrize("limit", [1, 3, 7, 1000])
def test_partial_sends_continue_where_they_stopped(limit):
    sock = ShortWrites(limit)
    body = [b"abc", memoryview(b"defgh"), b"", b"ij", bytearray(b"k")]
    gather.send_gathered(sock, body, framed=True)
    # The empty buffer ends a gathered chunk: what was ready went out then.
    assert bytes(sock.received) == chunked(b"abcdefgh", b"ijk")
    sock.close()


def test_unframed_bodies_are_sent_as_they_are():
    sock = ShortWrites(4)
    gather.send_gathered(sock, [b"abc", b"def"], framed=False)
    assert bytes(sock.received) == b"abcdef"
    sock.close()


def test_wide_memoryviews_count_bytes_not_items():
    sock = ShortWrites(5)
    numbers = memoryview(array.array("i", [1, 2, 3]))
    gather.send_gathered(sock, [numbers], framed=True)
    assert bytes(sock.received) == chunked(numbers.tobytes())
    sock.close()


def test_large_bodies_go_in_chunks_of_at_most_gather_bytes(monkeypatch):
    monkeypatch.setattr(gather, "GATHER_BYTES", 10)
    sock = ShortWrites(1 << 20)
    gather.send_gathered(sock, [b"x" * 6] * 4, framed=True)
    assert bytes(sock.received) == chunked(b"x" * 12, b"x" * 12)
    sock.close()


def test_sockets_without_sendmsg_get_one_joined_write():
    """TLS sockets (and socket-like wrappers) cannot gather: each chunk is joined."""

    class Wrapped:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def sendall(self, data: bytes) -> None:
            self.writes.append(data)

    sock = Wrapped()
    gather.send_gathered(sock, [b"ab", memoryview(b"cd"), b"", b"e"], framed=True)
    assert sock.writes == [chunked(b"abcd"), chunked(b"e")]
