"""Turning an upload body into a Parquet data file, with bounded memory.

The body is streamed (already de-chunked by the HTTP server) into a staging file by the event
loop, while a worker thread reads that file as it grows, decompresses it per
``Content-Encoding``, decodes and verifies it (record CRCs and footer, or Arrow chunk CRCs)
and writes Parquet row groups. Network receive and decoding thus overlap, and neither side
holds more than one batch. The staging file is deleted afterwards; the Parquet file is
fsynced and left as ``<uuid>.parquet.part`` for the caller to register under the table lock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
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
from .errors import EmulatorError

__all__ = [
    "Spool",
    "ParquetSink",
    "receive_body",
    "records_to_parquet",
    "arrow_to_parquet",
    "check_field_sizes",
    "check_content_md5",
    "ConnectionAborted",
]

T = TypeVar("T")
# Rows per Parquet row group / decode batch, and the wire bytes after which a batch is cut
# short (so rows of large strings do not pile up).
BATCH_ROWS = 16384
BATCH_BYTES = 16 * 1024 * 1024
_READ_SIZE = 256 * 1024
# Dictionary encoding costs more CPU than the rest of a write; the emulator favours speed
# over file size.
PARQUET_OPTIONS = {"compression": "lz4", "use_dictionary": False}


class ConnectionAborted(Exception):
    """The connection was dropped on purpose (fault injection)."""


class Spool:
    """A staging file written by the event loop and read, as it grows, by a worker thread."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in finish()
        self._reader = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._cond = threading.Condition()
        self._size = 0
        self._done = False
        self._failed = False

    def write(self, data: bytes) -> None:
        self._writer.write(data)
        with self._cond:
            self._size += len(data)
            self._cond.notify_all()

    def finish(self, ok: bool) -> None:
        """End of the body (``ok``) or the client went away (the reader then fails)."""
        if not self._writer.closed:
            self._writer.close()
        with self._cond:
            self._done = True
            self._failed = not ok
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, waiting for the writer; b"" only at the end of the body."""
        if size is None or size < 0:
            size = _READ_SIZE
        while True:
            data = self._reader.read(size)
            if data:
                return data
            with self._cond:
                while self._reader.tell() >= self._size and not self._done:
                    self._cond.wait()
                if self._reader.tell() >= self._size:
                    if self._failed:
                        raise EmulatorError(
                            "IncompleteBody", "the client closed the connection mid-body", 400
                        )
                    return b""

    def close(self) -> None:
        self.finish(ok=self._done and not self._failed)
        self._reader.close()
        self.path.unlink(missing_ok=True)


def data_error(exc: TunnelError) -> EmulatorError:
    """The service's error for a body that does not decode (protocol §8.2)."""
    code = "CorruptedDataStream" if isinstance(exc, ChecksumError) else "MalformedDataStream"
    if isinstance(exc, DataStreamError):  # ChecksumError is one too
        return EmulatorError(code, f"The data stream is not well formed: {exc}", 400)
    return EmulatorError.invalid_argument(str(exc))


async def receive_body(
    request: Any,
    staging_dir: Path,
    executor: Any,
    work: Callable[[BinaryIO], T],
    abort_after: int | None = None,
    on_abort: Callable[[], None] | None = None,
    corrupt_at: int | None = None,
    open_spools: set[Spool] | None = None,
    content_md5: str | None = None,
) -> T:
    """Stream the request body into a staging file while ``work`` consumes it in a thread.

    ``work`` gets the (not yet decompressed) body as a binary stream and returns the result.
    If ``work`` fails early, the rest of the body is read and discarded so the client gets
    the error response rather than a broken pipe. Fault injection: ``abort_after`` drops
    the connection after that many body bytes through ``on_abort``; ``corrupt_at`` flips
    the lowest bit of the body byte at that offset, as a corrupting network would (-1: the
    middle of the first piece received); inside a value, only the checksum reveals it.
    A ``content_md5`` (the request's ``Content-MD5``) that is not the digest of the body as
    received fails the request with ``BadDigest``, and ``work`` keeps nothing.
    """
    spool = Spool(staging_dir / uuid.uuid4().hex)
    if open_spools is not None:
        open_spools.add(spool)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(executor, work, spool)
    received = 0
    digest = hashlib.md5(usedforsecurity=False) if content_md5 is not None else None
    try:
        async for chunk in request.stream():
            if not chunk or future.done():
                continue  # a failed decoder: drain the body, keep nothing
            if abort_after is not None and received + len(chunk) >= abort_after:
                spool.write(chunk[: max(abort_after - received, 0)])
                spool.finish(ok=False)
                if on_abort is not None:
                    on_abort()
                raise ConnectionAborted()
            if corrupt_at is not None:
                at = len(chunk) // 2 if corrupt_at < 0 else corrupt_at - received
                if 0 <= at < len(chunk):
                    chunk = chunk[:at] + bytes([chunk[at] ^ 0x01]) + chunk[at + 1 :]
                    corrupt_at = None
            spool.write(chunk)
            received += len(chunk)
            if digest is not None:
                digest.update(chunk)
        if digest is not None and not future.done():  # (done: failed early, skipped chunks)
            # Before the body counts as complete: on a mismatch ``work`` fails and discards.
            check_content_md5(content_md5, digest.digest())
        spool.finish(ok=True)
    except ClientDisconnect:
        spool.finish(ok=False)
    except BaseException:
        spool.finish(ok=False)
        with contextlib.suppress(Exception):  # the connection error is what matters
            await future
        spool.close()
        if open_spools is not None:
            open_spools.discard(spool)
        raise
    try:
        return await future
    finally:
        spool.close()
        if open_spools is not None:
            open_spools.discard(spool)


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


def abort_spools(open_spools: set[Spool]) -> None:
    """Fail every body still being received: its worker stops with ``IncompleteBody``."""
    for spool in list(open_spools):
        spool.finish(ok=False)


def check_field_sizes(batch: pa.RecordBatch, limit: int) -> None:
    """Reject string and binary values longer than the session's ``MaxFieldSize``."""
    for field, array in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_binary(field.type):
            if len(array) == 0 or array.null_count == len(array):
                continue
            longest = pc.max(pc.binary_length(array)).as_py()
            if longest is not None and longest > limit:
                raise EmulatorError(
                    "MalformedDataStream",
                    f"a value of column {field.name!r} has {longest} bytes, more than the "
                    f"session's MaxFieldSize of {limit} bytes",
                    400,
                )


class ParquetSink:
    """Writes batches to ``<path>`` (a ``.part`` file), then fsyncs it."""

    def __init__(self, path: Path, schema: pa.Schema, max_field_size: int):
        self.path = path
        self.schema = schema
        self.max_field_size = max_field_size
        self.rows = 0
        self._writer = pq.ParquetWriter(path, schema, **PARQUET_OPTIONS)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            check_field_sizes(batch, self.max_field_size)
            self._writer.write_batch(batch, row_group_size=BATCH_ROWS * 4)
            self.rows += batch.num_rows

    def close(self) -> None:
        self._writer.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def discard(self) -> None:
        try:
            self._writer.close()
        finally:
            self.path.unlink(missing_ok=True)


def _ensure_ended(stream: BinaryIO) -> None:
    if stream.read(1):
        raise EmulatorError(
            "MalformedDataStream", "The data stream continues after its footer", 400
        )


def records_to_parquet(
    raw: BinaryIO,
    content_encoding: str | None,
    wire_columns: Sequence[Column],
    schema: pa.Schema,
    out: Path,
    max_field_size: int,
    transform: Callable[[list[Any]], list[Any]] | None = None,
) -> int:
    """Decode a record body into a Parquet file; returns the row count.

    ``wire_columns`` number the fields; ``transform`` maps a batch of decoded rows onto
    ``schema``'s columns (identity when the wire and storage columns are the same).
    """
    sink = ParquetSink(out, schema, max_field_size)
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


def arrow_to_parquet(
    raw: BinaryIO,
    content_encoding: str | None,
    schema: pa.Schema,
    out: Path,
    max_field_size: int,
) -> int:
    """Decode a framed Arrow body (protocol §6.2) into a Parquet file; returns the rows."""
    sink = ParquetSink(out, schema, max_field_size)
    wire = pa.schema([pa.field(f.name, f.type) for f in schema])
    try:
        stream = decompressing_stream(raw, content_encoding)
        for batch in read_payload_batches(ArrowFrameDecoder(stream), wire):
            sink.write(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
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
