"""Throughput of the Arrow upload/download path against pyodps, on 1M ``typical`` rows.

Run: ``.venv/bin/python benchmarks/arrow_framing_probe.py [rows] [zone]``. MB/s are body
megabytes (10^6 bytes of framed, uncompressed body) per second, best of three runs.
pyodps is imported here only as the reference to compare with.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel import TableSchema, options
from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    ArrowFrameDecoder,
    ArrowFrameEncoder,
    read_payload_batches,
    serialize_batch,
)
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import odps_schema_to_arrow_schema
from airflow_provider_odps_tunnel.tunnel.io.arrow_reader import TunnelArrowReader
from airflow_provider_odps_tunnel.tunnel.io.arrow_writer import ArrowWriter

SCHEMA = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
)


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype="S1")
    names = rng.choice(letters, size=(rows, 20)).view("S20").ravel().astype(str)
    amounts = rng.integers(-(10**13), 10**13, rows)
    columns = [
        pa.array(rng.integers(-(2**62), 2**62, rows)),
        pa.array(rng.normal(size=rows) * 1e6),
        pa.array(names, pa.string()),
        pa.array(rng.random(rows) < 0.5),
        pa.array(rng.integers(0, 2 * 10**12, rows), pa.timestamp("ms")),
        pa.array(amounts).cast(pa.decimal128(19, 0)).cast(pa.decimal128(18, 4)),
    ]
    table = pa.Table.from_arrays(columns, schema=odps_schema_to_arrow_schema(SCHEMA))
    return pa.Table.from_batches(table.to_batches(max_chunksize=65536))


def best(func, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def collect(chunks) -> bytes:
    return b"".join(chunks)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    zone = sys.argv[2] if len(sys.argv) > 2 else "UTC"
    options.local_timezone = zone
    from odps import options as odps_options
    from odps.tunnel.io.reader import TunnelArrowReader as TheirReader
    from odps.tunnel.io.stream import get_decompress_stream
    from odps.tunnel.io.writer import ArrowWriter as TheirWriter
    from odps.types import OdpsSchema

    odps_options.local_timezone = zone
    their_schema = OdpsSchema.from_lists(SCHEMA.names, [str(t) for t in SCHEMA.types])
    table = make_table(rows)
    batches = table.to_batches()
    arrow_schema = table.schema

    def frame_only() -> int:
        encoder = ArrowFrameEncoder(65536)
        size = 0
        for batch in batches:
            size += sum(len(p) for p in encoder.feed(serialize_batch(batch)))
        return size + len(encoder.finish())

    sent: list[bytes] = []

    def ours_write() -> None:
        sent.clear()
        with ArrowWriter(SCHEMA, lambda chunks: sent.append(collect(chunks))) as writer:
            writer.write(table)

    theirs: list[bytes] = []

    def theirs_write() -> None:
        theirs.clear()
        writer = TheirWriter(their_schema, lambda chunks: theirs.append(collect(chunks)))
        writer.write(table)
        writer.close()

    frame_time = best(frame_only)
    our_write_time = best(ours_write)
    their_write_time = best(theirs_write)
    body = sent[0]
    size_mb = len(body) / 1e6
    assert len(theirs[0]) == len(body)

    def decode_only() -> None:
        for _ in read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), arrow_schema):
            pass

    def ours_read() -> None:
        TunnelArrowReader(SCHEMA, lambda start: io.BytesIO(body)).read()

    def theirs_read() -> None:
        TheirReader(
            their_schema,
            lambda start: get_decompress_stream(io.BytesIO(body), None, requests=False),
        ).read()

    decode_time = best(decode_only)
    our_read_time = best(ours_read)
    their_read_time = best(theirs_read)

    print(f"rows={rows} zone={zone} body={size_mb:.1f} MB pyarrow={pa.__version__}")
    for label, seconds in [
        ("ours   encode: serialize + frame (ArrowFrameEncoder)", frame_time),
        ("ours   ArrowWriter.write+close (conform, frame, StreamingBody)", our_write_time),
        ("pyodps ArrowWriter.write+close", their_write_time),
        ("ours   decode: ArrowFrameDecoder + read_payload_batches", decode_time),
        ("ours   TunnelArrowReader.read()", our_read_time),
        ("pyodps TunnelArrowReader.read()", their_read_time),
    ]:
        print(f"{label:66s} {seconds * 1000:8.1f} ms {size_mb / seconds:9.0f} MB/s")


if __name__ == "__main__":
    main()
