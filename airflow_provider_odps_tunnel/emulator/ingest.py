"""Turning an upload body into a data file, with bounded memory.

The event loop hands the body (already de-chunked by the HTTP server) to a worker thread
through a :class:`BodyPipe` as it arrives; the worker decompresses it per
``Content-Encoding``, decodes and verifies it (record CRCs and footer, or Arrow chunk CRCs)
and writes the batches to a data file (``datafiles``). Network receive and decoding thus
overlap, and at most :data:`PIPE_BYTES` of body wait between them: the pipe pushes back on
the event loop (and so on the client's socket) when the worker falls behind. The data file
is fsynced and left as ``<uuid>.arrow.part`` for the caller to register under the table
lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import ClientDisconnect

from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    ArrowFrameDecoder,
    read_payload_batches,
)
from airflow_provider_odps_tunnel.tunnel.codec.compression import decompressing_stream
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import RecordDecoder
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column
from airflow_provider_odps_tunnel.tunnel.errors import ChecksumError, DataStreamError, TunnelError

from . import columnar
from .datafiles import DataFileWriter
from .errors import EmulatorError

__all__ = [
    "BodyPipe",
    "DataSink",
    "receive_body",
    "records_to_file",
    "arrow_to_file",
    "check_field_sizes",
    "check_content_md5",
    "abort_pipes",
    "ConnectionAborted",
    "PIPE_BYTES",
]

T = TypeVar("T")
# Rows per decoded record batch, and the wire bytes after which a batch is cut short (so
# rows of large strings do not pile up).
BATCH_ROWS = 16384
BATCH_BYTES = 16 * 1024 * 1024
# What a read without a size returns at most.
_READ_SIZE = 1 << 20
#: Body bytes that may wait between the event loop and the decoding worker.
PIPE_BYTES = 4 << 20


class ConnectionAborted(Exception):
    """The connection was dropped on purpose (fault injection)."""


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class BodyPipe:
    """A request body on its way from the event loop (``put``) to a worker (``read``).

    Chunks are passed by reference, not copied or spooled to disk; a read joins the chunks
    it spans. Hand-offs are few: the worker is woken only once the bytes it asked for are
    there (or the body ended), and the event loop waits in ``put`` only when
    :data:`PIPE_BYTES` are already waiting, until the worker has taken half of them.
    After the worker is done (``close``), whatever else arrives is dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = PIPE_BYTES):
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already read
        self._size = 0  # bytes waiting
        self._wanted = 0  # what the waiting reader needs; 0 when it is not waiting
        self._space: asyncio.Future | None = None  # the event loop waiting for room
        self._done = False
        self._failed = False
        self._closed = False

    async def put(self, chunk: bytes) -> None:
        """Pass on the next piece of the body (event loop); waits while the pipe is full."""
        with self._cond:
            if self._closed:
                return
            self._chunks.append(chunk)
            self._size += len(chunk)
            full = self._size >= self._limit
            if full:
                self._space = self._loop.create_future()
            if self._wanted and (full or self._size >= self._wanted):
                self._cond.notify()
            space = self._space
        if full and space is not None:
            await space

    def finish(self, ok: bool) -> None:
        """End of the body (``ok``) or the client went away (the reader then fails)."""
        with self._cond:
            if not self._done:
                self._done = True
                self._failed = not ok
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (fewer only at the end of the body), waiting for the event loop;
        b"" at the end. ``IncompleteBody`` if the client went away first."""
        if size is None or size < 0:
            size = _READ_SIZE
        with self._cond:
            need = min(size, self._limit)
            while self._size < need and not self._done and self._space is None:
                self._wanted = need
                self._cond.wait()
            self._wanted = 0
            if not self._size:
                if self._failed:
                    raise EmulatorError(
                        "IncompleteBody", "the client closed the connection mid-body", 400
                    )
                return b""
            parts = self._take(size)
            if self._size <= self._limit // 2:
                self._release()
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _take(self, size: int) -> list[bytes | memoryview]:
        """Up to ``size`` waiting bytes, as pieces of the chunks (caller holds the lock)."""
        parts: list[bytes | memoryview] = []
        need = size
        while need and self._chunks:
            chunk = self._chunks[0]
            left = len(chunk) - self._head
            if left <= need:
                parts.append(chunk if not self._head else memoryview(chunk)[self._head :])
                self._chunks.popleft()
                self._head = 0
                need -= left
            else:
                parts.append(memoryview(chunk)[self._head : self._head + need])
                self._head += need
                need = 0
        self._size -= size - need
        return parts

    def close(self) -> None:
        """The reader is done (worker): drop what waits and what still arrives."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._size = 0
            self._release()

    def _release(self) -> None:
        """Let a ``put`` waiting for room go on (caller holds the lock)."""
        if self._space is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_wake, self._space)
            self._space = None


def data_error(exc: TunnelError) -> EmulatorError:
    """The service's error for a body that does not decode (protocol §8.2)."""
    code = "CorruptedDataStream" if isinstance(exc, ChecksumError) else "MalformedDataStream"
    if isinstance(exc, DataStreamError):  # ChecksumError is one too
        return EmulatorError(code, f"The data stream is not well formed: {exc}", 400)
    return EmulatorError.invalid_argument(str(exc))


async def receive_body(
    request: Any,
    executor: Any,
    work: Callable[[BinaryIO], T],
    abort_after: int | None = None,
    on_abort: Callable[[], None] | None = None,
    corrupt_at: int | None = None,
    open_pipes: set[BodyPipe] | None = None,
    content_md5: str | None = None,
) -> T:
    """Stream the request body through a :class:`BodyPipe` to ``work``, run in a thread.

    ``work`` gets the (not yet decompressed) body as a binary stream and returns the result.
    If ``work`` fails early, the rest of the body is read and discarded so the client gets
    the error response rather than a broken pipe. Fault injection: ``abort_after`` drops
    the connection after that many body bytes through ``on_abort``; ``corrupt_at`` flips
    the lowest bit of the body byte at that offset, as a corrupting network would (-1: the
    middle of the first piece received); inside a value, only the checksum reveals it.
    A ``content_md5`` (the request's ``Content-MD5``) that is not the digest of the body as
    received fails the request with ``BadDigest``, and ``work`` keeps nothing.
    """
    loop = asyncio.get_running_loop()
    pipe = BodyPipe(loop)
    if open_pipes is not None:
        open_pipes.add(pipe)

    def consume() -> T:
        try:
            return work(pipe)
        finally:
            pipe.close()

    future = loop.run_in_executor(executor, consume)
    received = 0
    digest = hashlib.md5(usedforsecurity=False) if content_md5 is not None else None
    try:
        async for chunk in request.stream():
            if not chunk or future.done():
                continue  # a failed decoder: drain the body, keep nothing
            if abort_after is not None and received + len(chunk) >= abort_after:
                await pipe.put(chunk[: max(abort_after - received, 0)])
                pipe.finish(ok=False)
                if on_abort is not None:
                    on_abort()
                raise ConnectionAborted()
            if corrupt_at is not None:
                at = len(chunk) // 2 if corrupt_at < 0 else corrupt_at - received
                if 0 <= at < len(chunk):
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0x01]) + chunk[at + 1 :]
                    corrupt_at = None
            received += len(chunk)
            if digest is not None:
                digest.update(chunk)
            await pipe.put(chunk)
        if digest is not None and not future.done():  # (done: failed early, skipped chunks)
            # Before the body counts as complete: on a mismatch ``work`` fails and discards.
            check_content_md5(content_md5, digest.digest())
        pipe.finish(ok=True)
    except ClientDisconnect:
        pipe.finish(ok=False)
    except BaseException:
        pipe.finish(ok=False)
        with contextlib.suppress(Exception):  # the connection error is what matters
            await future
        raise
    finally:
        if open_pipes is not None:
            open_pipes.discard(pipe)
    return await future


def check_content_md5(header: str | None, digest: bytes) -> None:
    """``BadDigest`` (400) unless ``header`` is ``digest`` in base64 (RFC 1864) or hex.

    The v2 signature covers the ``Content-MD5`` header but not the body, so this check is
    what detects a body changed after signing (when the client sent the header).
    """
    if header is None:
        return
    given = header.strip()
    if given != base64.b64encode(digest).decode() and given.lower() != digest.hex():
        raise EmulatorError(
            "BadDigest", "The Content-MD5 you specified did not match what was received", 400
        )


def abort_pipes(open_pipes: set[BodyPipe]) -> None:
    """Fail every body still being received: its worker stops with ``IncompleteBody``."""
    for pipe in list(open_pipes):
        pipe.finish(ok=False)


def check_field_sizes(batch: pa.RecordBatch, limit: int) -> None:
    """Reject string and binary values longer than the session's ``MaxFieldSize``.

    A column whose value bytes all together fit the limit is not looked at value by value.
    """
    for field, array in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_binary(field.type):
            data = array.buffers()[2]
            if data is None or data.size <= limit or array.null_count == len(array):
                continue
            longest = pc.max(pc.binary_length(array)).as_py()
            if longest is not None and longest > limit:
                raise EmulatorError(
                    "MalformedDataStream",
                    f"a value of column {field.name!r} has {longest} bytes, more than the "
                    f"session's MaxFieldSize of {limit} bytes",
                    400,
                )


class DataSink(DataFileWriter):
    """A data file writer that first rejects values longer than ``max_field_size``."""

    def __init__(self, path: Path, schema: pa.Schema, max_field_size: int):
        super().__init__(path, schema)
        self.max_field_size = max_field_size

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            check_field_sizes(batch, self.max_field_size)
            super().write(batch)


def _ensure_ended(stream: BinaryIO) -> None:
    if stream.read(1):
        raise EmulatorError(
            "MalformedDataStream", "The data stream continues after its footer", 400
        )


def records_to_file(
    raw: BinaryIO,
    content_encoding: str | None,
    wire_columns: Sequence[Column],
    schema: pa.Schema,
    out: Path,
    max_field_size: int,
    transform: Callable[[list[Any]], list[Any]] | None = None,
) -> int:
    """Decode a record body into a data file; returns the row count.

    ``wire_columns`` number the fields; ``transform`` maps a batch of decoded rows onto
    ``schema``'s columns (identity when the wire and storage columns are the same).
    """
    sink = DataSink(out, schema, max_field_size)
    try:
        stream = decompressing_stream(raw, content_encoding)
        decoder = RecordDecoder(
            wire_columns, stream, tz=_dt.UTC, string_as_binary=False, require_footer=True
        )
        bulk = getattr(decoder, "read_rows", None)
        while True:
            if bulk is not None:
                rows = bulk(BATCH_ROWS)
            else:
                rows = []
                start = decoder.offset
                while len(rows) < BATCH_ROWS and decoder.offset - start < BATCH_BYTES:
                    row = decoder.read_row()
                    if row is None:
                        break
                    rows.append(row)
            if not rows:
                break
            if transform is not None:
                rows = transform(rows)
            sink.write(columnar.rows_to_batch(rows, schema))
        _ensure_ended(stream)
        sink.close()
    except TunnelError as exc:
        sink.discard()
        raise data_error(exc) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError, TypeError) as exc:
        sink.discard()
        raise EmulatorError(
            "MalformedDataStream", f"The data stream does not fit the schema: {exc}", 400
        ) from None
    except BaseException:
        sink.discard()
        raise
    return sink.rows


def arrow_to_file(
    raw: BinaryIO,
    content_encoding: str | None,
    schema: pa.Schema,
    out: Path,
    max_field_size: int,
) -> int:
    """Decode a framed Arrow body (protocol §6.2) into a data file; returns the rows.

    Batches are stored as decoded: they differ from ``schema`` only in its field metadata,
    which the file carries once.
    """
    sink = DataSink(out, schema, max_field_size)
    wire = pa.schema([pa.field(f.name, f.type) for f in schema])
    try:
        stream = decompressing_stream(raw, content_encoding)
        for batch in read_payload_batches(ArrowFrameDecoder(stream), wire):
            sink.write(batch)
        _ensure_ended(stream)
        sink.close()
    except TunnelError as exc:
        sink.discard()
        raise data_error(exc) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        sink.discard()
        raise EmulatorError(
            "MalformedDataStream", f"The Arrow data stream is not well formed: {exc}", 400
        ) from None
    except BaseException:
        sink.discard()
        raise
    return sink.rows
