"""Throughput of the Arrow upload/download path against pyodps, on 1M ``typical`` rows.

Run: ``.venv/bin/python benchmarks/arrow_framing_probe.py [--rows N] [--zone Z] [--repeat K]
[--min-ratio R]`` (1,000,000 rows, UTC, 3 rounds; ``--quick`` is 20,000 rows). MB/s are body
megabytes (10^6 bytes of framed, uncompressed body) per second. The encode steps are timed
together in each round, then the decode steps, the order alternating from round to round;
every figure is the median (min–max) over the rounds, next to wall and client CPU seconds
(``time.process_time()`` of this process; the work is in-process, there is no server).
Ratios are ours / pyodps throughput of the full writer and reader, paired per round;
``--min-ratio R`` makes a median ratio below R an error (exit status 1). The ``ours
encode``/``ours decode`` rows are lower layers alone (less work than a writer or reader), so
they are not compared with pyodps. pyodps is imported here only as the reference.
"""

from __future__ import annotations

import argparse
import io

import _measure as measure
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


def collect(chunks) -> bytes:
    return b"".join(chunks)


# (label, work it does; the first word says whose code runs)
ENCODE = {
    "frame": "ours   encode: serialize + frame (ArrowFrameEncoder) [lower layer only]",
    "ours write": "ours   ArrowWriter.write+close (conform, frame, StreamingBody)",
    "pyodps write": "pyodps ArrowWriter.write+close",
}
DECODE = {
    "decode": "ours   decode: ArrowFrameDecoder + read_payload_batches [lower layer only]",
    "ours read": "ours   TunnelArrowReader.read()",
    "pyodps read": "pyodps TunnelArrowReader.read()",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--zone", default="UTC", help="options.local_timezone of both sides")
    parser.add_argument(
        "--min-ratio", type=float, help="target: median ours/pyodps write and read ratios"
    )
    measure.common_args(parser, "--rows 20000")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    zone = args.zone
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

    def ours_write() -> list[bytes]:
        sent: list[bytes] = []
        with ArrowWriter(SCHEMA, lambda chunks: sent.append(collect(chunks))) as writer:
            writer.write(table)
        return sent

    def theirs_write() -> list[bytes]:
        theirs: list[bytes] = []
        writer = TheirWriter(their_schema, lambda chunks: theirs.append(collect(chunks)))
        writer.write(table)
        writer.close()
        return theirs

    # Untimed: what the writers send, and that both send the same amount.
    body = ours_write()[0]
    measure.require(len(theirs_write()[0]) == len(body), "ours and pyodps frame different sizes")
    size_mb = len(body) / measure.MB

    def decode_only() -> None:
        for _ in read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), arrow_schema):
            pass

    def ours_read() -> int:
        return TunnelArrowReader(SCHEMA, lambda start: io.BytesIO(body)).read().num_rows

    def theirs_read() -> int:
        return (
            TheirReader(
                their_schema,
                lambda start: get_decompress_stream(io.BytesIO(body), None, requests=False),
            )
            .read()
            .num_rows
        )

    measure.require(ours_read() == theirs_read() == rows, "decoded row counts")
    fns = {
        "frame": frame_only,
        "ours write": ours_write,
        "pyodps write": theirs_write,
        "decode": decode_only,
        "ours read": ours_read,
        "pyodps read": theirs_read,
    }
    runs: dict[str, list[measure.Sample]] = {}
    for group in (ENCODE, DECODE):
        runs |= measure.alternate(
            list(group), args.repeat, lambda name, _round: measure.timed(fns[name])[0]
        )

    print(f"rows={rows} zone={zone} body={size_mb:.1f} MB pyarrow={pa.__version__}")
    print(measure.method(args.repeat, "no server: in-process framing work"))
    for name, label in (ENCODE | DECODE).items():
        samples = runs[name]
        mbps = measure.spread(measure.rates(size_mb, samples), ".0f")
        print(f"{label:76s} {mbps} MB/s, {measure.cpu_figures(samples)}")
    ratios = {
        "write": measure.paired_ratios(
            measure.walls(runs["pyodps write"]), measure.walls(runs["ours write"])
        ),
        "read": measure.paired_ratios(
            measure.walls(runs["pyodps read"]), measure.walls(runs["ours read"])
        ),
    }
    for what, values in ratios.items():
        print(f"ratio ours/pyodps {what} throughput (same work): {measure.spread(values)}")
    if args.min_ratio is not None:
        targets = measure.Targets()
        for what, values in ratios.items():
            targets.at_least(f"{what} median ratio", measure.median(values), args.min_ratio)
        targets.finish()


if __name__ == "__main__":
    main()
