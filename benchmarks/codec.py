"""Throughput of our tunnel codecs next to pyodps 0.13.2's compiled ones, in one process.

Run: ``python benchmarks/codec.py [--rows N] [--repeat K] [--min-ratio R]`` (1,000,000 rows
and 3 rounds by default; ``--quick`` is 5,000 rows). Both sides get the same values. Each
round times ours and pyodps one after the other, the order alternating from round to round;
every figure is the median (min–max) over the rounds: rows per second, megabytes (10^6
bytes) of body per second, wall seconds and client CPU seconds (``time.process_time()`` of
this process; the work is in-process, there is no server). The ratio is ours / pyodps
throughput, paired per round (>= 1.0 means we are at least as fast). ``--min-ratio R``
makes a median ratio below R an error (exit status 1). The process runs with TZ=UTC, as
the golden vectors were made.

Schemas: ``typical`` (bigint, double, string of 20 characters, boolean, datetime,
decimal(18,4)) and ``wide`` (25 bigint + 25 double).

What each row times (data preparation is never timed); a row whose two sides do unequal
work says so in the row:

* record encode, tuples: ours ``RecordEncoder.encode_many(rows)`` + ``footer()``;
  pyodps ``BaseRecordWriter.write`` of prebuilt ``Record`` objects + ``close()``.
* record encode, Arrow: ours ``RecordEncoder.encode_arrow(batch)`` + ``footer()``; pyodps
  has no Arrow-to-record path, so its figure is the only record path it has: writing the
  same rows as prebuilt ``Record`` objects (the conversion is not counted).
* record decode: ours ``RecordDecoder.read_rows(4096)`` (tuples) until the end; pyodps
  ``TunnelRecordReader`` iterated, taking each record's ``.values``.
* Records build + encode: ``Record(schema, values)`` then encode, for each row; ours
  encodes ``record.values`` with ``RecordEncoder.encode``, pyodps calls ``write(record)``.
* Arrow framing encode / decode: ``ArrowWriter(schema, request_callback)`` writing the
  table as one call / ``TunnelArrowReader(schema, stream_creator).read()``, for both
  (ours from ``airflow_provider_odps_tunnel.tunnel.io.arrow_writer`` / ``arrow_reader``).

Before timing, each side's record body is decoded by the other side and compared with the
input rows, so both are known to encode the same data; every timed operation's output is
checked once, untimed, too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import _measure as measure

TYPICAL = (
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
)
WIDE = (
    [f"i{k}" for k in range(25)] + [f"d{k}" for k in range(25)],
    ["bigint"] * 25 + ["double"] * 25,
)


@dataclass
class Op:
    """One operation timed on both sides, ``repeat`` rounds each."""

    schema: str
    operation: str
    unequal: str  # what each side does when that differs, "" when it is the same work
    rows: int
    ours_bytes: int
    theirs_bytes: int
    ours: list[measure.Sample]
    theirs: list[measure.Sample]

    def ratios(self) -> list[float]:
        """Ours / pyodps throughput per round: pyodps's wall time over ours."""
        return measure.paired_ratios(measure.walls(self.theirs), measure.walls(self.ours))


def typical_rows(n: int) -> list[tuple]:
    rng = random.Random(1)
    base = dt.datetime(2020, 1, 1)
    return [
        (
            i,
            rng.random() * 1000,
            f"abcdefghij{i:010d}",
            i % 2 == 0,
            base + dt.timedelta(milliseconds=i * 1001),
            decimal.Decimal(f"{i}.{i % 10000:04d}"),
        )
        for i in range(n)
    ]


def wide_rows(n: int) -> list[tuple]:
    import numpy as np

    rng = np.random.default_rng(1)
    ints = [rng.integers(-(2**40), 2**40, n).tolist() for _ in range(25)]
    floats = [rng.random(n).tolist() for _ in range(25)]
    return list(zip(*ints, *floats, strict=True))


def arrow_table(names: list[str], types: list[str], rows: list[tuple]) -> Any:
    import pyarrow as pa

    arrow_types = {
        "bigint": pa.int64(),
        "double": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("ms"),
        "decimal(18,4)": pa.decimal128(18, 4),
    }
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(col, arrow_types[t]) for col, t in zip(columns, types, strict=True)]
    return pa.table(arrays, names=names)


class Ours:
    """Our codec's operations on one schema."""

    def __init__(self, names: list[str], types: list[str]):
        from airflow_provider_odps_tunnel.tunnel.codec.record_codec import (
            RecordDecoder,
            RecordEncoder,
        )
        from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

        self.schema = TableSchema.from_lists(names, types)
        self.columns = self.schema.simple_columns
        self.encoder_cls = RecordEncoder
        self.decoder_cls = RecordDecoder

    def encode_tuples(self, rows: list[tuple]) -> bytearray:
        encoder = self.encoder_cls(self.columns, tz=dt.UTC)
        out = bytearray()
        encoder.encode_many(rows, out)
        out += encoder.footer()
        return out

    def encode_arrow(self, table: Any) -> bytearray:
        encoder = self.encoder_cls(self.columns, tz=dt.UTC)
        out = bytearray()
        for batch in table.to_batches():
            encoder.encode_arrow(batch, out)
        out += encoder.footer()
        return out

    def decode(self, body: bytes) -> int:
        decoder = self.decoder_cls(self.columns, io.BytesIO(body), tz=dt.UTC)
        count = 0
        while rows := decoder.read_rows(4096):
            count += len(rows)
        return count

    def decode_all(self, body: bytes) -> list[tuple]:
        return self.decoder_cls(self.columns, io.BytesIO(body), tz=dt.UTC).read_rows(10**12)

    def build_and_encode(self, rows: list[tuple]) -> bytearray:
        from airflow_provider_odps_tunnel.tunnel.codec.record import Record

        encoder = self.encoder_cls(self.columns, tz=dt.UTC)
        out = bytearray()
        schema = self.schema
        for row in rows:
            encoder.encode(Record(schema=schema, values=row).values, out)
        out += encoder.footer()
        return out

    def arrow_encode(self, table: Any) -> bytes:
        from airflow_provider_odps_tunnel.tunnel.io.arrow_writer import ArrowWriter

        chunks: list[bytes] = []
        writer = ArrowWriter(self.schema, lambda body: chunks.extend(body))
        writer.write(table)
        writer.close()
        return b"".join(chunks)

    def arrow_decode(self, body: bytes) -> int:
        from airflow_provider_odps_tunnel.tunnel.io.arrow_reader import TunnelArrowReader

        return TunnelArrowReader(self.schema, lambda start: io.BytesIO(body)).read().num_rows


class Pyodps:
    """pyodps's default (compiled) codec's operations on one schema."""

    def __init__(self, names: list[str], types: list[str]):
        from odps import types as odps_types
        from odps.tunnel.io import reader, writer

        self.schema = odps_types.OdpsSchema.from_lists(names, types)
        self.writer_cls = writer.BaseRecordWriter
        self.reader_cls = reader.TunnelRecordReader
        self.arrow_writer_cls = writer.ArrowWriter
        self.arrow_reader_cls = reader.TunnelArrowReader

    def records(self, rows: list[tuple]) -> list[Any]:
        from odps.models import Record

        return [Record(schema=self.schema, values=list(row)) for row in rows]

    def encode_records(self, records: list[Any]) -> bytes:
        out = io.BytesIO()
        writer = self.writer_cls(self.schema, out)
        for record in records:
            writer.write(record)
        writer.close()
        return out.getvalue()

    def decode(self, body: bytes) -> int:
        count = 0
        for record in self.reader_cls(self.schema, lambda *a, **k: io.BytesIO(body)):
            record.values  # noqa: B018 - taking the values is the point
            count += 1
        return count

    def build_and_encode(self, rows: list[tuple]) -> bytes:
        from odps.models import Record

        out = io.BytesIO()
        writer = self.writer_cls(self.schema, out)
        schema = self.schema
        for row in rows:
            writer.write(Record(schema=schema, values=list(row)))
        writer.close()
        return out.getvalue()

    def arrow_encode(self, table: Any) -> bytes:
        chunks: list[bytes] = []
        writer = self.arrow_writer_cls(self.schema, lambda body: chunks.extend(body))
        writer.write(table)
        writer.close()
        return b"".join(chunks)

    def arrow_decode(self, body: bytes) -> int:
        reader = self.arrow_reader_cls(self.schema, lambda *a, **k: io.BytesIO(body))
        return reader.read().num_rows


def check_same_data(
    ours: Ours, theirs: Pyodps, rows: list[tuple], body: bytes, odps_body: bytes
) -> None:
    """Each side's body decodes (by the other side too) to the input rows."""
    sample = slice(0, 2000)
    measure.require(
        ours.decode_all(odps_body)[sample] == rows[sample], "our decoder on pyodps's body"
    )
    decoded = [r.values for r in theirs.reader_cls(theirs.schema, lambda *a, **k: io.BytesIO(body))]
    measure.require(
        [tuple(v) for v in decoded[sample]] == rows[sample], "pyodps's decoder on our body"
    )
    measure.require(len(decoded) == len(rows), "pyodps decoded a different number of rows")


def run_schema(label: str, names: list[str], types: list[str], n: int, repeat: int) -> list[Op]:
    rows = typical_rows(n) if label == "typical" else wide_rows(n)
    table = arrow_table(names, types, rows)
    ours, theirs = Ours(names, types), Pyodps(names, types)
    records = theirs.records(rows)

    # Untimed: every operation's output, once, so the timed runs need no checks.
    body = bytes(ours.encode_tuples(rows))  # what a stream reads from
    odps_body = theirs.encode_records(records)
    check_same_data(ours, theirs, rows, body, odps_body)
    measure.require(ours.encode_arrow(table) == body, "encode_arrow and encode_many disagree")
    measure.require(ours.build_and_encode(rows) == body, "build + encode and encode_many disagree")
    measure.require(ours.decode(body) == theirs.decode(odps_body) == n, "decoded row counts")
    framed, odps_framed = ours.arrow_encode(table), theirs.arrow_encode(table)
    measure.require(
        ours.arrow_decode(framed) == theirs.arrow_decode(odps_framed) == n, "Arrow rows"
    )

    record_sizes = (len(body), len(odps_body))
    operations: list[tuple[str, str, Callable[[], Any], Callable[[], Any], tuple[int, int]]] = [
        (
            "record encode, tuples",
            "ours: tuples, pyodps: prebuilt Records",
            lambda: ours.encode_tuples(rows),
            lambda: theirs.encode_records(records),
            record_sizes,
        ),
        (
            "record encode, Arrow",
            "ours: Arrow batches, pyodps: prebuilt Records (it has no Arrow record path)",
            lambda: ours.encode_arrow(table),
            lambda: theirs.encode_records(records),
            record_sizes,
        ),
        (
            "record decode",
            "ours: tuples, pyodps: Records and their .values",
            lambda: ours.decode(body),
            lambda: theirs.decode(odps_body),
            record_sizes,
        ),
        (
            "Records build + encode",
            "",
            lambda: ours.build_and_encode(rows),
            lambda: theirs.build_and_encode(rows),
            record_sizes,
        ),
        (
            "Arrow framing encode",
            "",
            lambda: ours.arrow_encode(table),
            lambda: theirs.arrow_encode(table),
            (len(framed), len(odps_framed)),
        ),
        (
            "Arrow framing decode",
            "",
            lambda: ours.arrow_decode(framed),
            lambda: theirs.arrow_decode(odps_framed),
            (len(framed), len(odps_framed)),
        ),
    ]
    results = []
    for operation, unequal, ours_fn, theirs_fn, (ours_bytes, theirs_bytes) in operations:
        fns = {"ours": ours_fn, "pyodps": theirs_fn}
        runs = measure.alternate(
            list(fns), repeat, lambda side, _round, fns=fns: measure.timed(fns[side])[0]
        )
        results.append(
            Op(
                label,
                operation,
                unequal,
                n,
                ours_bytes,
                theirs_bytes,
                runs["ours"],
                runs["pyodps"],
            )
        )
    return results


def print_results(results: list[Op]) -> None:
    for r in results:
        work = f"unequal work: {r.unequal}" if r.unequal else "same work on both sides"
        print(f"{r.schema:8} {r.operation:24} [{work}]")
        for side, samples, nbytes in (
            ("ours", r.ours, r.ours_bytes),
            ("pyodps", r.theirs, r.theirs_bytes),
        ):
            print(
                f"    {side:6} {measure.spread(measure.rates(r.rows, samples), ',.0f')} rows/s, "
                f"{measure.spread(measure.rates(nbytes, samples, measure.MB), '.1f')} MB/s, "
                f"{measure.cpu_figures(samples)}"
            )
        print(f"    ratio ours/pyodps throughput: {measure.spread(r.ratios())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per schema")
    parser.add_argument(
        "--min-ratio",
        type=float,
        help="target: every median ours/pyodps ratio at least this",
    )
    measure.common_args(parser, "--rows 5000")
    args = parser.parse_args()
    if args.quick:
        args.rows = 5000
    os.environ["TZ"] = "UTC"  # before pyodps is imported: it reads the local zone
    time.tzset()

    from odps import __version__ as odps_version

    from airflow_provider_odps_tunnel.tunnel.codec import record_codec

    print(
        f"rows={args.rows:,} repeat={args.repeat} pyodps={odps_version} "
        f"ours={record_codec.RecordEncoder.__module__}.{record_codec.RecordEncoder.__name__}"
    )
    print(measure.method(args.repeat, "no server: in-process codec work"))
    results = []
    for label, (names, types) in (("typical", TYPICAL), ("wide", WIDE)):
        results += run_schema(label, names, types, args.rows, args.repeat)
    print_results(results)
    print(
        "\nratio = ours / pyodps throughput (pyodps wall / ours wall, paired per round). pyodps"
        "\nhas no Arrow-to-record path: its 'record encode, Arrow' figure writes the same rows as"
        "\nprebuilt Records. Record bodies differ in size only by CRC varints (pyodps writes CRCs"
        "\n>= 2^31 in 10 bytes, we in 5)."
    )
    if args.min_ratio is not None:
        targets = measure.Targets()
        for r in results:
            targets.at_least(
                f"{r.schema} {r.operation} median ratio",
                measure.median(r.ratios()),
                args.min_ratio,
            )
        targets.finish()


if __name__ == "__main__":
    main()
