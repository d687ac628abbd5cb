"""The volume tunnel's file framing (protocol §10): chunks each followed by a cumulative CRC-32.

A body is a big-endian uint32 chunk size, then the file in chunks of that size (the last
may be shorter), each followed by the big-endian CRC-32 of everything before it, header
included. An empty file is the header alone.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from ..errors import ChecksumError, DataStreamError, StreamTruncatedError
from .crc import crc32

__all__ = ["VolumeFrameEncoder", "VolumeFrameDecoder", "DEFAULT_CHUNK_SIZE"]

DEFAULT_CHUNK_SIZE = 512 * 1024
MAX_CHUNK_SIZE = 256 * 1024 * 1024
_u32 = struct.Struct(">I")


class VolumeFrameEncoder:
    """Frames file bytes incrementally: ``feed(data)`` and ``finish()`` return body bytes."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE):
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} outside 1..{MAX_CHUNK_SIZE}")
        self._chunk_size = chunk_size
        header = _u32.pack(chunk_size)
        self._crc = crc32(header)
        self._header: bytes | None = header
        self._pending = bytearray()

    def _take_header(self) -> bytes:
        header, self._header = self._header or b"", None
        return header

    def _frame(self, chunk: bytes | memoryview) -> bytes:
        self._crc = crc32(chunk, self._crc)
        return bytes(chunk) + _u32.pack(self._crc)

    def feed(self, data: bytes) -> bytes:
        out = bytearray(self._take_header())
        self._pending += data
        size = self._chunk_size
        full = len(self._pending) - len(self._pending) % size
        view = memoryview(self._pending)
        for start in range(0, full, size):
            out += self._frame(view[start : start + size])
        view.release()
        del self._pending[:full]
        return bytes(out)

    def finish(self) -> bytes:
        out = bytearray(self._take_header())
        if self._pending:
            out += self._frame(bytes(self._pending))
            self._pending.clear()
        return bytes(out)


class VolumeFrameDecoder:
    """A readable stream of the file carried by a framed body, every CRC verified."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._offset = 0
        header = self._read_exact(4, allow_short=False)
        (self._chunk_size,) = _u32.unpack(header)
        if not 1 <= self._chunk_size <= MAX_CHUNK_SIZE:
            raise DataStreamError(f"volume chunk size {self._chunk_size} is invalid", offset=0)
        self._crc = crc32(header)
        self._offset = len(header)
        self._buffer = b""
        self._eof = False

    def _read_exact(self, n: int, allow_short: bool = True) -> bytes:
        parts = []
        left = n
        while left:
            data = self._stream.read(left)
            if not data:
                break
            parts.append(data)
            left -= len(data)
        got = b"".join(parts)
        if left and not allow_short:
            raise StreamTruncatedError("volume body ended early", offset=self._offset + len(got))
        return got

    def _next_chunk(self) -> bytes:
        framed = self._read_exact(self._chunk_size + 4)
        if not framed:
            self._eof = True
            return b""
        if len(framed) < 5:
            raise StreamTruncatedError("volume chunk without data or CRC", offset=self._offset)
        data, (expected,) = framed[:-4], _u32.unpack(framed[-4:])
        self._crc = crc32(data, self._crc)
        if self._crc != expected:
            raise ChecksumError(
                f"volume CRC {expected:#010x} != computed {self._crc:#010x}", offset=self._offset
            )
        self._offset += len(framed)
        if len(framed) < self._chunk_size + 4:
            self._eof = True
        return data

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buffer) < size):
            self._buffer += self._next_chunk()
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out
