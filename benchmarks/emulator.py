"""Throughput and memory of the emulator under pyodps, with the loopback ceiling beside them.

Run on purpose (``python benchmarks/emulator.py [--gb 1.0] [--paths arrow,record] [--repeat
3] [--min-mbps X]``), not as a test; ``--quick`` is 0.005 GB. A child-process emulator serves
a temporary directory on loopback (no service bandwidth cap); pyodps, in this process,
uploads then downloads ``--gb`` GB (wire bytes) of the typical schema ``bigint, double,
string(20), boolean, datetime, decimal(18,4)`` on the Arrow path and on the record path,
into a fresh table each round. Each round also measures the loopback ceiling: the same
number of raw bytes sent over a TCP connection between two child processes (neither this
one nor the emulator). The order of the ceiling and the paths alternates from round to
round. For each phase it prints the median (min–max) over the rounds of MB/s, wall seconds,
the client's CPU seconds (this process: pyodps, with its threads), the emulator's CPU
seconds (``/proc/<pid>/stat``; as many as wall seconds = one core busy: the emulator is the
bottleneck only near that) and its peak RSS (sampled every 50 ms), and the phase's MB/s as
a fraction of the same round's ceiling. Arrow phases count Arrow IPC bytes, record phases
record-wire bytes, so the two paths' MB/s are not the same unit of work. ``--min-mbps X``
makes a phase whose median MB/s is below X an error (exit status 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from collections.abc import Callable
from decimal import Decimal

import _measure as measure
import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

SCHEMA = "a bigint, b double, c string, d boolean, e datetime, f decimal(18,4)"
BATCH_ROWS = 65536
UNITS = {"arrow": "Arrow IPC bytes", "record": "record-wire bytes"}


def sample_batch(rows: int) -> pa.RecordBatch:
    base = dt.datetime(2024, 1, 1)
    return pa.RecordBatch.from_pydict(
        {
            "a": pa.array(range(rows), pa.int64()),
            "b": pa.array([i * 0.37 for i in range(rows)], pa.float64()),
            "c": pa.array([f"{i:020d}" for i in range(rows)], pa.string()),
            "d": pa.array([i % 2 == 0 for i in range(rows)], pa.bool_()),
            "e": pa.array(
                [base + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("ms")
            ),
            "f": pa.array([Decimal(i % 100000) / 10000 for i in range(rows)], pa.decimal128(18, 4)),
        }
    )


class Paths:
    """pyodps's upload and download on each path, against one emulator; nbytes per path."""

    def __init__(self, emu, target: float):
        from odps import ODPS
        from odps.tunnel import TableTunnel

        self.emu = emu
        entry = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
        self.tunnel = TableTunnel(entry, endpoint=emu.tunnel_endpoint)
        self.batch = sample_batch(BATCH_ROWS)
        self.sample = [list(r.values()) for r in self.batch.slice(0, 1000).to_pylist()]
        self.schema = TableSchema(parse_columns(SCHEMA))
        arrow_row_bytes = self.batch.serialize().size / BATCH_ROWS
        record_row_bytes = len(encode_rows(self.schema.simple_columns, self.sample)) / 1000
        self.batches = int(target / arrow_row_bytes / BATCH_ROWS) or 1
        self.rows = int(target / record_row_bytes)
        self.nbytes = {
            "arrow": self.batches * BATCH_ROWS * arrow_row_bytes,
            "record": self.rows * record_row_bytes,
        }

    def phases(self, path: str, table: str) -> list[tuple[str, Callable[[], None]]]:
        tunnel = self.tunnel

        def arrow_upload() -> None:
            session = tunnel.create_upload_session(table)
            with session.open_arrow_writer(0) as writer:
                for _ in range(self.batches):
                    writer.write(self.batch)
            session.commit([0])

        def arrow_download() -> None:
            session = tunnel.create_download_session(table)
            with session.open_arrow_reader(0, session.count) as reader:
                rows = sum(b.num_rows for b in reader)
            measure.require(rows == self.batches * BATCH_ROWS, f"arrow download got {rows} rows")

        def record_upload() -> None:
            session = tunnel.create_upload_session(table)
            records = [session.new_record(v) for v in self.sample]
            with session.open_record_writer(0) as writer:
                for i in range(self.rows):
                    writer.write(records[i % len(records)])
            session.commit([0])

        def record_download() -> None:
            session = tunnel.create_download_session(table)
            count = 0
            with session.open_record_reader(0, session.count) as reader:
                for _ in reader:
                    count += 1
            measure.require(count == self.rows, f"record download got {count} rows")

        if path == "arrow":
            return [("upload", arrow_upload), ("download", arrow_download)]
        return [("upload", record_upload), ("download", record_download)]

    def run(
        self, path: str, round_: int, rss: measure.RssSampler
    ) -> dict[str, tuple[measure.Sample, int]]:
        """Upload then download on ``path`` into a fresh table: each phase's sample and the
        emulator's peak RSS during it."""
        table = f"bench_{path}_{round_}"
        self.emu.catalog.create_table(self.emu.project, table, self.schema)
        out = {}
        for phase, fn in self.phases(path, table):
            rss.lap()
            sample, _ = measure.timed(fn, self.emu.pid)
            out[phase] = (sample, rss.lap())
        self.emu.catalog.drop_table(self.emu.project, table, if_exists=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="wire gigabytes per transfer")
    parser.add_argument("--paths", default="arrow,record", help="arrow, record or both")
    parser.add_argument("--min-mbps", type=float, help="target: every phase's median MB/s")
    measure.common_args(parser, "--gb 0.005")
    args = parser.parse_args()
    if args.quick:
        args.gb = 0.005
    target = args.gb * 1e9
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    print(f"emulator benchmark: {args.gb} GB per transfer, schema ({SCHEMA})")
    print(measure.method(args.repeat))

    with (
        tempfile.TemporaryDirectory(prefix="emulator-bench-") as data_dir,
        measure.child_emulator(data_dir) as emu,
    ):
        bench = Paths(emu, target)
        rss = measure.RssSampler(emu.pid, interval=0.05)

        def run(unit: str, round_: int) -> dict[str, tuple[measure.Sample, int | None]]:
            if unit == "ceiling":
                return {"ceiling": (measure.loopback_ceiling(int(target)), None)}
            return bench.run(unit, round_, rss)

        runs = measure.alternate(["ceiling", *paths], args.repeat, run)
        rss.stop()

    ceiling = [r["ceiling"][0] for r in runs["ceiling"]]
    print(measure.ceiling_line(int(target), ceiling))
    ceiling_mbps = measure.rates(target, ceiling, measure.MB)
    targets = measure.Targets()
    for path in paths:
        nbytes = bench.nbytes[path]
        for phase in ("upload", "download"):
            samples = [r[phase][0] for r in runs[path]]
            mbps = measure.rates(nbytes, samples, measure.MB)
            label = f"{path} {phase} (pyodps) [{UNITS[path]}]"
            print(
                f"{label:46} {nbytes / measure.MB:8.1f} MB at {measure.spread(mbps, '.1f')} MB/s, "
                f"{measure.cpu_figures(samples)}, server peak RSS "
                f"{measure.spread((r[phase][1] / measure.MB for r in runs[path]), '.0f')} MB"
            )
            print(
                f"{'':46} fraction of the loopback ceiling ({measure.LOOPBACK}): "
                f"{measure.spread(measure.paired_ratios(mbps, ceiling_mbps), '.3f')}"
            )
            if args.min_mbps is not None:
                targets.at_least(
                    f"{path} {phase} median MB/s",
                    measure.median(mbps),
                    args.min_mbps,
                )
    targets.finish()


if __name__ == "__main__":
    main()
