"""The chunked, CRC32C-checked framing of tunnel Arrow bodies (protocol §6.2) and its payload.

A framed body is::

    uint32_be chunk_size
    payload in chunk_size pieces, each full piece followed by uint32_be CRC32C(piece)
    the remaining (shorter, possibly empty) piece, then uint32_be CRC32C(whole payload)

The payload is a run of Arrow IPC record-batch messages (``RecordBatch.serialize()``) with
no schema message: both ends know the schema from the session, and the reader prepends it
before handing the bytes to an Arrow stream reader.

Both directions work on buffers, not copies: the encoder hands out memoryview slices of the
serialized batches, and CRC32C runs on those slices directly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ..errors import ChecksumError, DataStreamError, StreamTruncatedError
from .crc import crc32c

__all__ = [
    "ArrowFrameEncoder",
    "ArrowFrameDecoder",
    "serialize_batch",
    "read_payload_batches",
    "EMPTY_BODY",
]

_U32 = struct.Struct(">I")
# What pyodps sends for a writer closed before any batch: the global CRC of no payload,
# without a chunk-size word. The service accepts it, so an empty upload is sent this way too.
EMPTY_BODY = b"\x00\x00\x00\x00"
# A chunk size beyond this is taken as a corrupt header rather than allocated.
MAX_CHUNK_SIZE = 256 * 1024 * 1024
# The encoder's chunk size when none is given (the default of ``options.chunk_size``).
DEFAULT_CHUNK_SIZE = 65536

Piece = bytes | memoryview


class ArrowFrameEncoder:
    """Frames a payload given as a sequence of buffers, without copying it.

    ``feed(buffer)`` returns the framed pieces for that buffer: the chunk-size word before
    the first payload byte, memoryview slices of ``buffer`` and the per-chunk CRC words;
    ``finish()`` returns the closing piece (the global CRC). Concatenated, the pieces are the
    body. Slices keep their buffer alive, so they may be sent after ``feed`` returns.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE):
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be in 1..{MAX_CHUNK_SIZE}, not {chunk_size}")
        self.chunk_size = chunk_size
        self.payload_bytes = 0
        self._started = False
        self._finished = False
        self._fill = 0  # bytes of the current chunk already emitted
        self._chunk_crc = 0
        self._total_crc = 0

    def feed(self, data: Any) -> list[Piece]:
        """The framed pieces of the next payload ``data`` (bytes, pyarrow.Buffer, ...)."""
        if self._finished:
            raise ValueError("feed after finish")
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        size = len(view)
        if not size:
            return []
        pieces: list[Piece] = []
        if not self._started:
            pieces.append(_U32.pack(self.chunk_size))
            self._started = True
        self._total_crc = crc32c(view, self._total_crc)
        self.payload_bytes += size
        chunk_size = self.chunk_size
        pos = 0
        while pos < size:
            take = min(chunk_size - self._fill, size - pos)
            piece = view[pos : pos + take]
            pieces.append(piece)
            pos += take
            if self._fill + take == chunk_size:
                pieces.append(_U32.pack(crc32c(piece, self._chunk_crc)))
                self._chunk_crc = 0
                self._fill = 0
            else:
                self._chunk_crc = crc32c(piece, self._chunk_crc)
                self._fill += take
        return pieces

    def finish(self) -> bytes:
        """The closing piece. With no payload at all it is :data:`EMPTY_BODY`."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        return _U32.pack(self._total_crc)


class ArrowFrameDecoder:
    """Reads a framed body from a binary stream and yields verified payload pieces.

    Every chunk is checked before its bytes are handed out: a wrong CRC raises
    :class:`ChecksumError`, a body that stops before its closing CRC
    :class:`StreamTruncatedError`; both carry ``offset``, the body offset of the problem.
    An empty body and the 4-byte body ``00 00 00 00`` (no chunk-size word) are an empty
    payload. Pieces are memoryviews of the bytes read; ``offset`` counts body bytes
    consumed so far.
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self.offset = 0
        self.payload_bytes = 0
        self.chunk_size: int | None = None
        self._total_crc = 0
        self._done = False

    def _read(self, size: int) -> bytes | bytearray:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        data = self._stream.read(size)
        if data is None:
            data = b""
        if len(data) == size or not data:
            return data
        buf = bytearray(data)
        while len(buf) < size:
            more = self._stream.read(size - len(buf))
            if not more:
                break
            buf += more
        return buf

    def _start(self) -> bool:
        """Reads the chunk-size word; False for a body that carries no payload at all."""
        head = self._read(4)
        if not head:
            return False
        if len(head) < 4:
            raise StreamTruncatedError(
                f"Arrow body ends after {len(head)} bytes, inside its chunk-size word",
                offset=0,
            )
        (chunk_size,) = _U32.unpack(head)
        if chunk_size == 0:
            # ``00 00 00 00`` alone is a writer's empty body; anything after it is not.
            if self._read(1):
                raise DataStreamError("Arrow body declares a chunk size of 0", offset=0)
            self.offset = 4
            return False
        if chunk_size > MAX_CHUNK_SIZE:
            raise DataStreamError(
                f"Arrow body declares an implausible chunk size {chunk_size}", offset=0
            )
        self.chunk_size = chunk_size
        self.offset = 4
        return True

    def read_piece(self) -> memoryview | None:
        """The next verified payload piece (may be empty), or None after the closing CRC."""
        if self._done:
            return None
        if self.chunk_size is None and not self._start():
            self._done = True
            return None
        chunk_size = self.chunk_size
        assert chunk_size is not None
        start = self.offset
        frame = self._read(chunk_size + 4)
        view = memoryview(frame)
        self.offset += len(frame)
        if len(frame) == chunk_size + 4:
            data = view[:chunk_size]
            expected = _U32.unpack_from(frame, chunk_size)[0]
            actual = crc32c(data)
            if actual != expected:
                raise ChecksumError(
                    f"Arrow chunk CRC mismatch: computed {actual:#010x}, body has {expected:#010x}",
                    offset=start,
                )
            self._total_crc = crc32c(data, self._total_crc)
            self.payload_bytes += chunk_size
            return data
        if len(frame) < 4:
            raise StreamTruncatedError(
                "Arrow body ends without its closing CRC", offset=self.offset
            )
        data = view[:-4]
        expected = _U32.unpack_from(frame, len(frame) - 4)[0]
        actual = crc32c(data, self._total_crc)
        if actual != expected:
            # A body cut inside a chunk lands here too: its last 4 bytes are not a CRC.
            raise ChecksumError(
                f"Arrow closing CRC mismatch (corrupt, or cut inside a chunk): computed "
                f"{actual:#010x}, body has {expected:#010x}",
                offset=start,
            )
        self.payload_bytes += len(data)
        self._done = True
        return data

    def __iter__(self) -> Iterator[memoryview]:
        while (piece := self.read_piece()) is not None:
            if piece:
                yield piece


def serialize_batch(batch: pa.RecordBatch) -> pa.Buffer:
    """One encapsulated IPC record-batch message (continuation marker, metadata, body)."""
    return batch.serialize()


class _PayloadSource:
    """A file-like object over the schema message then the payload, for pyarrow to read.

    A read that falls inside one piece returns a memoryview of it; only reads that span
    pieces (large message bodies) are assembled into a new buffer.
    """

    def __init__(self, pieces: Iterator[Piece]):
        self._pieces = pieces
        self._current = memoryview(b"")
        self.closed = False
        #: What reading the pieces raised, told apart from pyarrow's own errors.
        self.error: BaseException | None = None

    def _next_piece(self) -> bool:
        try:
            piece = next(self._pieces, None)
        except BaseException as exc:
            self.error = exc
            raise
        if piece is None:
            return False
        self._current = memoryview(piece)
        return True

    def read(self, size: int = -1) -> Any:
        if size is None or size < 0:
            chunks = [bytes(self._current)]
            while self._next_piece():
                chunks.append(bytes(self._current))
            self._current = memoryview(b"")
            return b"".join(chunks)
        while not self._current:
            if not self._next_piece():
                return b""
        if len(self._current) >= size:
            out = self._current[:size]
            self._current = self._current[size:]
            return out
        buf = bytearray(size)
        filled = 0
        while filled < size:
            if not self._current and not self._next_piece():
                return memoryview(buf)[:filled]
            take = min(size - filled, len(self._current))
            buf[filled : filled + take] = self._current[:take]
            self._current = self._current[take:]
            filled += take
        return buf

    def at_end(self) -> bool:
        """True when no payload is left (this consumes, and so verifies, the rest)."""
        while not self._current:
            if not self._next_piece():
                return True
        return False

    def close(self) -> None:
        self.closed = True


_READ_OPTIONS = pa.ipc.IpcReadOptions(ensure_alignment=pa.ipc.Alignment.DataTypeSpecific)


def read_payload_batches(pieces: Iterable[Piece], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Record batches of a payload given as pieces (for example an :class:`ArrowFrameDecoder`).

    The schema message is prepended and the whole is read as an Arrow IPC stream, one
    message at a time, so only the batch being decoded is in memory. An end-of-stream
    marker in the payload is accepted when nothing but the closing CRC follows it.
    """

    def with_schema() -> Iterator[Piece]:
        yield schema.serialize()
        yield from pieces

    source = _PayloadSource(with_schema())
    reader = pa.ipc.open_stream(source, options=_READ_OPTIONS)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as exc:
            if exc is source.error:  # the body's own failure, passed through by pyarrow
                raise
            raise DataStreamError(f"Arrow payload does not parse: {exc}") from exc
        yield batch
    if not source.at_end():
        raise DataStreamError("Arrow payload continues after its end-of-stream marker")
