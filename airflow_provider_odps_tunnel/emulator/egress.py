"""Serving committed data: row ranges of a snapshot as record, Arrow or IPC bodies.

Rows are read from the snapshot's data files a stored batch at a time (whole files and
batches before the range are skipped by their row counts, see ``datafiles``), encoded, and
yielded as chunks of about :data:`CHUNK` bytes, optionally compressed, so a response of any
size holds one batch and one chunk in memory.
"""

from __future__ import annotations

import datetime as _dt
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as _odps
from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import ArrowFrameEncoder
from airflow_provider_odps_tunnel.tunnel.codec.compression import CompressOption, make_compressor
from airflow_provider_odps_tunnel.tunnel.codec.crc import crc32c
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import (
    END_METRICS,
    META_COUNT,
    RecordEncoder,
)
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column
from airflow_provider_odps_tunnel.tunnel.errors import TunnelError

from . import columnar, datafiles
from .catalog import DataFile
from .errors import EmulatorError

__all__ = [
    "read_range",
    "record_body",
    "arrow_body",
    "compressed",
    "choose_encoding",
    "metrics_json",
    "CHUNK",
]

CHUNK = 1024 * 1024
ARROW_CHUNK_SIZE = 65536


def read_range(
    data_dir: Path,
    files: Sequence[DataFile],
    start: int,
    count: int,
    columns: list[str],
) -> Iterator[pa.RecordBatch]:
    """Batches of rows ``start .. start+count`` of ``files`` (in order), given columns."""
    skip, remaining = start, count
    for data_file in files:
        if remaining <= 0:
            return
        if skip >= data_file.rows:
            skip -= data_file.rows
            continue
        for batch in datafiles.read_range(data_dir / data_file.name, skip, remaining, columns):
            remaining -= batch.num_rows
            yield batch
        skip = 0


def record_body(
    batches: Iterable[pa.RecordBatch],
    columns: Sequence[Column],
    metrics: Callable[[], bytes] | None = None,
) -> Iterator[bytes]:
    """A record stream (protocol §5) of the batches; field numbers follow ``columns``.

    With ``metrics``, the footer carries the metrics block (§5.7) holding the JSON it
    returns when the last row is encoded.
    """
    # A DATETIME goes on the wire exactly as a BIGINT of its epoch milliseconds (same tag,
    # zigzag varint and checksum bytes), so it is sent from the stored integers: any year
    # the type holds (0000-9999) is sent, none goes through Python's datetime (years 1+).
    types = [_odps.bigint if c.type == _odps.datetime else c.type for c in columns]
    wire = [Column(c.name, t) for c, t in zip(columns, types, strict=True)]
    millis = [i for i, c in enumerate(columns) if c.type == _odps.datetime]
    encoder = RecordEncoder(wire, tz=_dt.UTC, string_as_binary=False)
    # The encoder's column-wise path takes Arrow columns as they are, which fits every
    # storage type except the few that hold a stand-in (intervals, json).
    direct = not columnar.needs_conversion(types)
    out = bytearray()
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for i in millis:
            batch = batch.set_column(i, batch.field(i).name, batch.column(i).view(pa.int64()))
        if direct:
            encoder.encode_arrow(batch, out)
        else:
            encoder.encode_many(columnar.batch_to_rows(batch, types), out)
        if len(out) >= CHUNK:
            yield bytes(out)
            out.clear()
    footer = encoder.footer()
    out += footer if metrics is None else _with_metrics(footer, rows, metrics())
    yield bytes(out)


def metrics_json(server_micros: int) -> bytes:
    """The service's metrics JSON (§5.7) for ``server_micros`` of work: storage and I/O
    cost a microsecond each, so the tunnel's own cost (total minus those) stays positive,
    which pyodps's metrics test expects."""
    total = max(int(server_micros), 3)
    return json.dumps({"PanguIOCost": 1, "ServerIOCost": 1, "ServerTotalCost": total}).encode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _with_metrics(footer: bytes, rows: int, metrics: bytes) -> bytes:
    """``footer`` (count, checksum) with the metrics block between its two fields: tag
    (1, length-delimited), the JSON, tag END_METRICS and the CRC32C of int32_le(1) + JSON."""
    count = _varint(META_COUNT << 3) + _varint(rows << 1)  # zigzag of a count >= 0
    if not footer.startswith(count):
        raise AssertionError("the record footer does not start with its count")
    crc = crc32c(metrics, crc32c(struct.pack("<i", 1)))
    block = (
        _varint(1 << 3 | 2)
        + _varint(len(metrics))
        + metrics
        + _varint(END_METRICS << 3)
        + _varint(crc)
    )
    return count + block + footer[len(count) :]


def arrow_body(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """A framed Arrow body (protocol §6.2): record-batch messages only, no schema."""
    framer = ArrowFrameEncoder(ARROW_CHUNK_SIZE)
    pending: list[bytes | memoryview] = []
    size = 0
    sent_any = False
    for batch in batches:
        if not batch.num_rows:
            continue
        for piece in framer.feed(batch.serialize()):
            pending.append(piece)
            size += len(piece)
            sent_any = True
        if size >= CHUNK:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if not sent_any:
        # py's reader needs the chunk-size word even for an empty payload (§6.2).
        pending.append(struct.pack(">I", ARROW_CHUNK_SIZE))
    pending.append(framer.finish())
    yield b"".join(pending)


def ipc_stream_body(table: pa.Table) -> bytes:
    """A standard Arrow IPC stream (schema, batches, end marker); empty for no rows."""
    if table.num_rows == 0:
        return b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def choose_encoding(accept_encoding: str | None) -> str | None:
    """The ``Content-Encoding`` to answer a request's ``Accept-Encoding`` with.

    pyodps announces exactly one tunnel token; the first token the tunnel knows is used and
    anything else (or nothing) means an uncompressed body.
    """
    if not accept_encoding:
        return None
    for token in accept_encoding.split(","):
        token = token.split(";")[0].strip()
        try:
            algo = CompressOption.CompressAlgorithm.from_encoding(token)
        except TunnelError:
            continue
        if algo.get_encoding() is not None:
            return token.lower()
    return None


def compressed(chunks: Iterable[bytes], encoding: str | None) -> Iterator[bytes]:
    """``chunks`` compressed with the tunnel codec of ``encoding`` (or passed through)."""
    if encoding is None:
        yield from chunks
        return
    try:
        option = CompressOption(CompressOption.CompressAlgorithm.from_encoding(encoding))
    except TunnelError as exc:
        raise EmulatorError.invalid_argument(str(exc)) from None
    compressor = make_compressor(option)
    assert compressor is not None
    for chunk in chunks:
        data = compressor.compress(chunk)
        if data:
            yield data
    tail = compressor.flush()
    if tail:
        yield tail
