"""The chunked, CRC32C-checked framing of tunnel Arrow bodies (protocol §6.2) and its payload.

A framed body is::

    uint32_be chunk_size
    payload in chunk_size pieces, each full piece followed by uint32_be CRC32C(piece)
    the remaining (shorter, possibly empty) piece, then uint32_be CRC32C(whole payload)

The payload is a run of Arrow IPC record-batch messages (``RecordBatch.serialize()``) with
no schema message: both ends know the schema from the session, and the reader prepends it
before handing the bytes to an Arrow stream reader.

Both directions work on buffers, not copies: the encoder hands out memoryview slices of the
serialized batches, and CRC32C runs on those slices directly. Each payload byte is
checksummed once: the closing CRC is combined from the chunk CRCs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ..errors import ChecksumError, DataStreamError, StreamTruncatedError
from .crc import crc32c, crc32c_combiner

__all__ = [
    "ArrowFrameEncoder",
    "ArrowFrameDecoder",
    "serialize_batch",
    "read_payload_batches",
    "EMPTY_BODY",
    "READ_SIZE",
]

_U32 = struct.Struct(">I")
# What pyodps sends for a writer closed before any batch: the global CRC of no payload,
# without a chunk-size word. The service accepts it, so an empty upload is sent this way too.
EMPTY_BODY = b"\x00\x00\x00\x00"
# A chunk size beyond this is taken as a corrupt header rather than allocated.
MAX_CHUNK_SIZE = 256 * 1024 * 1024
# The encoder's chunk size when none is given (the default of ``options.chunk_size``).
DEFAULT_CHUNK_SIZE = 65536
# About how many body bytes the decoder asks its stream for at a time (whole frames).
READ_SIZE = 1 << 20

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
        self._combine = crc32c_combiner(chunk_size)
        self._total_crc = 0  # of the payload up to the current chunk
        self._tail: list[memoryview] = []  # the pieces of the current chunk

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
        self.payload_bytes += size
        chunk_size = self.chunk_size
        pos = 0
        while pos < size:
            take = min(chunk_size - self._fill, size - pos)
            piece = view[pos : pos + take]
            pieces.append(piece)
            pos += take
            if self._fill + take == chunk_size:
                crc = crc32c(piece, self._chunk_crc)
                pieces.append(_U32.pack(crc))
                # The payload CRC follows from the chunk CRCs: each byte is read once.
                self._total_crc = self._combine(self._total_crc, crc)
                self._chunk_crc = 0
                self._fill = 0
                self._tail.clear()
            else:
                self._chunk_crc = crc32c(piece, self._chunk_crc)
                self._fill += take
                self._tail.append(piece)
        return pieces

    def finish(self) -> bytes:
        """The closing piece. With no payload at all it is :data:`EMPTY_BODY`."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        total = self._total_crc
        for piece in self._tail:  # the last, partial chunk
            total = crc32c(piece, total)
        self._tail.clear()
        return _U32.pack(total)


class ArrowFrameDecoder:
    """Reads a framed body from a binary stream and yields verified payload pieces.

    Every chunk is checked before its bytes are handed out: a wrong CRC raises
    :class:`ChecksumError`, a body that stops before its closing CRC
    :class:`StreamTruncatedError`; both carry ``offset``, the body offset of the problem.
    An empty body and the 4-byte body ``00 00 00 00`` (no chunk-size word) are an empty
    payload. Pieces are memoryviews of the bytes read; ``offset`` counts body bytes
    consumed so far.

    The stream is read a whole number of frames at a time, about ``read_size`` bytes per
    read (default :data:`READ_SIZE`): few calls into the HTTP layer, and every frame lies
    inside one read, so pieces are views of it and nothing is assembled. At most one read
    is held beyond the piece being used.
    """

    def __init__(self, stream: Any, read_size: int | None = None):
        self._stream = stream
        self._read_size = read_size or READ_SIZE
        self.offset = 0
        self.payload_bytes = 0
        self.chunk_size: int | None = None
        self._total_crc = 0
        self._done = False
        self._block = memoryview(b"")  # frames read but not handed out yet
        self._block_offset = 0  # body offset of self._block[0]
        self._last = False  # the stream ended inside self._block
        self._error: Exception | None = None  # a read failure held back by _fill
        self._combine: Any = None  # crc32c_combiner(chunk_size), once it is known

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
        self.offset = self._block_offset = 4
        return True

    def _fill(self, frame: int) -> None:
        """Reads the next run of whole frames (a shorter read means the body ended).

        When the stream fails part way, the whole frames that did arrive are handed out
        first and the failure is raised after them, so a reader resumes after them."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        size = frame * max(1, self._read_size // frame)
        data = self._stream.read(size) or b""
        if 0 < len(data) < size:
            buf = bytearray(data)
            try:
                while len(buf) < size and (more := self._stream.read(size - len(buf))):
                    buf += more
            except Exception as exc:
                whole = len(buf) - len(buf) % frame
                if not whole:
                    raise
                self._error = exc
                self._block = memoryview(buf)[:whole]
                return
            data = buf
        self._block = memoryview(data)
        self._last = len(data) < size

    def read_piece(self) -> memoryview | None:
        """The next verified payload piece (may be empty), or None after the closing CRC."""
        if self._done:
            return None
        if self.chunk_size is None and not self._start():
            self._done = True
            return None
        chunk_size = self.chunk_size
        assert chunk_size is not None
        frame = chunk_size + 4
        if not self._block and not self._last:
            self._fill(frame)
        block = self._block
        start = self.offset
        if len(block) >= frame:
            data = block[:chunk_size]
            expected = _U32.unpack_from(block, chunk_size)[0]
            self._block = block[frame:]
            self.offset += frame
            actual = crc32c(data)
            if actual != expected:
                raise ChecksumError(
                    f"Arrow chunk CRC mismatch: computed {actual:#010x}, body has {expected:#010x}",
                    offset=start,
                )
            if self._combine is None:
                self._combine = crc32c_combiner(chunk_size)
            self._total_crc = self._combine(self._total_crc, actual)
            self.payload_bytes += chunk_size
            return data
        # The last frame: what is left of the body, a partial chunk and the closing CRC.
        self._block = memoryview(b"")
        self.offset += len(block)
        if len(block) < 4:
            raise StreamTruncatedError(
                "Arrow body ends without its closing CRC", offset=self.offset
            )
        data = block[:-4]
        expected = _U32.unpack_from(block, len(block) - 4)[0]
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
        # pyarrow's pool: memory it reuses, not zero-filled (a bytearray is both fresh
        # and zeroed, which costs page faults and a pass over every byte).
        buf = pa.allocate_buffer(size)
        view = memoryview(buf).cast("B")
        filled = 0
        while filled < size:
            if not self._current and not self._next_piece():
                return buf.slice(0, filled)
            take = min(size - filled, len(self._current))
            view[filled : filled + take] = self._current[:take]
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
