"""Writing Arrow data to tunnel upload blocks (``PUT ...?blockid=..&arrow``).

A block body is the framed Arrow payload of :mod:`.arrow_framing`, optionally compressed
as a whole. :class:`ArrowWriter` streams one block while the caller writes;
:class:`BufferedArrowWriter` collects blocks of about ``buffer_size`` bytes and sends each
complete, which is what makes a failed block re-sendable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from ..codec.arrow_framing import ArrowFrameEncoder, Piece, serialize_batch
from ..codec.arrow_types import conform_table, odps_schema_to_arrow_schema
from ..codec.compression import CompressOption, make_compressor
from ..codec.schema import TableSchema
from ..options import options, resolve_timezone
from .body import StreamingBody

__all__ = ["ArrowWriter", "BufferedArrowWriter", "arrow_compress_option"]


def arrow_compress_option(option: CompressOption | None) -> CompressOption | None:
    """The option an Arrow upload really uses: LZ4 is sent as ``x-odps-lz4-frame``.

    The bytes are the same LZ4 frame; only the label differs, as the service expects for
    Arrow bodies. Other options are returned unchanged.
    """
    if option is not None and option.algorithm is CompressOption.CompressAlgorithm.ODPS_LZ4:
        return CompressOption(
            CompressOption.CompressAlgorithm.ODPS_ARROW_LZ4, option.level, option.strategy
        )
    return option


class _ArrowWriterBase:
    """Schema, conforming and framing shared by both writers."""

    def __init__(
        self, schema: TableSchema, compress_option: CompressOption | None, chunk_size: int | None
    ):
        self.schema = schema
        self.arrow_schema = odps_schema_to_arrow_schema(schema)
        self.compress_option = arrow_compress_option(compress_option)
        #: The ``Content-Encoding`` header the request must carry (None: uncompressed).
        self.content_encoding = (
            self.compress_option.algorithm.get_encoding() if self.compress_option else None
        )
        self.chunk_size = chunk_size or options.chunk_size
        self._timezone = resolve_timezone()
        self._closed = False
        #: Rows written so far.
        self.n_rows = 0

    def _batches(self, data: Any) -> Iterator[pa.RecordBatch]:
        if self._closed:
            raise ValueError("write to a closed Arrow writer")
        return conform_table(data, self.arrow_schema, self._timezone)

    def get_total_bytes(self) -> int:
        """Body bytes produced so far, before compression (pyodps's name)."""
        return self.n_bytes

    def __enter__(self) -> Any:
        return self


class ArrowWriter(_ArrowWriterBase):
    """Streams one Arrow block to ``request_callback`` while data is written.

    ``request_callback(chunks)`` receives the body as an iterable of bytes-like chunks and
    runs in its own thread (see :class:`~.body.StreamingBody`); the request must carry the
    ``Content-Encoding`` in :attr:`content_encoding`. ``write`` accepts a ``RecordBatch``,
    ``Table`` or pandas ``DataFrame`` and checks it against the table schema before
    anything of it is sent. ``close`` ends the body and returns the callback's result.
    Leaving a ``with`` block by an exception aborts the request instead.
    """

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Callable[[Iterable[bytes]], Any],
        compress_option: CompressOption | None = None,
        chunk_size: int | None = None,
    ):
        super().__init__(schema, compress_option, chunk_size)
        self._encoder = ArrowFrameEncoder(self.chunk_size)
        self._body = StreamingBody(
            request_callback, self.chunk_size, make_compressor(self.compress_option)
        )

    @property
    def n_bytes(self) -> int:
        """Body bytes written so far, before compression."""
        return self._body.raw_bytes

    def _send(self, pieces: Iterable[Piece]) -> None:
        # The pieces are views of serialized batches, which nothing changes: no copy.
        self._body.write_pieces(pieces)

    def write(self, data: Any) -> None:
        """Write a ``pyarrow.RecordBatch``, ``pyarrow.Table`` or pandas ``DataFrame``."""
        for batch in self._batches(data):
            self._send(self._encoder.feed(serialize_batch(batch)))
            self.n_rows += batch.num_rows

    def flush(self) -> None:
        """Nothing to do: every complete frame is already handed to the request; the
        frame being filled can only go out whole, with its CRC (pyodps's ``flush``
        likewise only flushes its compressor)."""

    def close(self) -> Any:
        """Finish the body and wait for the request; returns what the callback returned."""
        if not self._closed:
            self._closed = True
            self._send([self._encoder.finish()])
        return self._body.close()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._closed = True
            self._body.abort(exc)


class _BlockBuffer:
    """The body of one block as a list of buffers: the framed pieces themselves (views of
    serialized batches, never copied) or, compressed, the compressor's output."""

    def __init__(self, compress_option: CompressOption | None):
        self._compressor = make_compressor(compress_option)
        self.chunks: list[Piece] = []
        self.size = 0  # body bytes produced (compressed)
        self.raw_size = 0  # framed bytes written

    def write(self, piece: Piece) -> None:
        self.raw_size += len(piece)
        data = self._compressor.compress(piece) if self._compressor else piece
        if data:
            self.size += len(data)
            self.chunks.append(data)

    def finish(self) -> list[Piece]:
        if self._compressor is not None:
            tail = self._compressor.flush()
            if tail:
                self.size += len(tail)
                self.chunks.append(tail)
        return self.chunks


class BufferedArrowWriter(_ArrowWriterBase):
    """Writes Arrow data as a series of blocks of about ``buffer_size`` bytes each.

    A block is cut when its compressed size exceeds ``buffer_size`` (default
    ``options.block_buffer_size``), always between record batches; batches larger than
    that are sliced first, so memory stays near one buffer. Each complete block is sent
    with ``request_callback(block_id, chunks)``, ``chunks`` being a list of bytes-like
    buffers that may be iterated again to re-send it. The first block id is ``block_id``, or
    ``block_id_gen()`` (0 without one); each later one is ``block_id_gen()`` or the
    previous plus one. Commit :meth:`get_blocks_written` when done.
    """

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Callable[[int, list[bytes]], Any],
        compress_option: CompressOption | None = None,
        buffer_size: int | None = None,
        chunk_size: int | None = None,
        block_id: int | None = None,
        block_id_gen: Callable[[], int] | None = None,
    ):
        super().__init__(schema, compress_option, chunk_size)
        self._callback = request_callback
        self.buffer_size = buffer_size or options.block_buffer_size
        # Where the block being filled is cut: the buffer size, or less when the writer
        # shares its memory with others (see sessions/upload.py, WriterMemory).
        self.block_limit = self.buffer_size
        self._block_id = block_id
        self._block_id_gen = block_id_gen
        self._blocks_written: list[int] = []
        self._sent_bytes = 0
        self._new_block()

    def _new_block(self) -> None:
        self._encoder = ArrowFrameEncoder(self.chunk_size)
        self._buffer = _BlockBuffer(self.compress_option)

    @property
    def n_bytes(self) -> int:
        """Body bytes produced so far (sent and buffered), before compression."""
        return self._sent_bytes + self._buffer.raw_size

    @property
    def cur_block_id(self) -> int:
        """The id the block being filled will be sent as."""
        if self._block_id is None:
            self._block_id = self._block_id_gen() if self._block_id_gen else 0
        return self._block_id

    def _slices(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """``batch`` in zero-copy row slices of at most about ``buffer_size`` bytes."""
        size, limit = batch.nbytes, self.block_limit
        if size <= limit or batch.num_rows <= 1:
            yield batch
            return
        rows = max(1, batch.num_rows * limit // size)
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)

    def write(self, data: Any) -> None:
        """Write a ``pyarrow.RecordBatch``, ``pyarrow.Table`` or pandas ``DataFrame``."""
        for batch in self._batches(data):
            for part in self._slices(batch):
                for piece in self._encoder.feed(serialize_batch(part)):
                    self._buffer.write(piece)
                self.n_rows += part.num_rows
                if self._buffer.size > self.block_limit:
                    self._flush()

    def _flush(self) -> None:
        self._buffer.write(self._encoder.finish())
        chunks = self._buffer.finish()
        block_id = self.cur_block_id
        self._callback(block_id, chunks)
        self._blocks_written.append(block_id)
        self._sent_bytes += self._buffer.raw_size
        self._block_id = None if self._block_id_gen else block_id + 1
        self._new_block()

    def flush(self) -> None:
        """Send what is buffered as a block now (no-op when nothing is buffered), as
        :meth:`.BufferedRecordWriter.flush` does."""
        if not self._closed and self._encoder.payload_bytes:
            self._flush()

    def get_blocks_written(self) -> list[int]:
        """Ids of the blocks sent so far, for the session's commit."""
        return list(self._blocks_written)

    def close(self) -> list[int]:
        """Send the last, partly filled block (if any data is in it); returns the block ids."""
        if not self._closed:
            self._closed = True
            if self._encoder.payload_bytes:
                self._flush()
        return self.get_blocks_written()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._closed = True
