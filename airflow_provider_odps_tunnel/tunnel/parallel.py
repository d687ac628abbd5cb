"""Parallel downloads: one session's rows read as several row ranges over several connections.

The service caps the speed of each download request, so a large table is read faster as
many ranges at once. :func:`iter_arrow_batches` yields Arrow batches in row order while
the other ranges are read; it holds at most ``max(n_workers, 2)`` ranges of rows,
whatever the table size. :func:`download_to_files` writes each range to its own Parquet
or Arrow IPC file instead, holding one batch per worker.
Every range reader resumes by itself after a broken connection.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from .progress import Progress
from .sessions.table_download import TableDownloadSession

__all__ = ["split_ranges", "iter_arrow_batches", "download_to_files"]

_meter_lock = threading.Lock()
#: Rows of one range by default: about 4 MB of the typical schema.
MAX_RANGE_ROWS = 65_536


def split_ranges(start: int, count: int, rows_per_range: int) -> list[tuple[int, int]]:
    """``(start, count)`` pairs covering ``count`` rows from ``start``, in order."""
    if rows_per_range < 1:
        raise ValueError("rows_per_range must be positive")
    return [
        (first, min(rows_per_range, start + count - first))
        for first in range(start, start + count, rows_per_range)
    ]


def _default_range_rows(count: int, n_workers: int) -> int:
    # One range per worker is the fewest requests; the cap bounds memory, since each
    # range in flight is held whole until its turn comes (max(n_workers, 2) at most).
    return max(10_000, min(MAX_RANGE_ROWS, -(-count // max(1, n_workers))))


def _read_range(
    session: TableDownloadSession, first: int, n: int, options: dict[str, Any]
) -> list[pa.RecordBatch]:
    with session.open_arrow_reader(first, n, **options) as reader:
        return list(reader)


def iter_arrow_batches(
    session: TableDownloadSession,
    n_workers: int = 4,
    start: int = 0,
    count: int | None = None,
    columns: list[str] | None = None,
    compress: bool = False,
    append_partitions: bool = False,
    rows_per_range: int | None = None,
    progress: Any = None,
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of rows ``start .. start+count`` (default: to the end), in order.

    ``n_workers`` ranges of ``rows_per_range`` rows are read at once, each over its own
    connection; ``progress(event)`` is called with a ``ProgressEvent`` as batches
    arrive (rows and uncompressed Arrow bytes).
    """
    count = session.count - start if count is None else count
    ranges = split_ranges(start, count, rows_per_range or _default_range_rows(count, n_workers))
    options = {"compress": compress, "columns": columns, "append_partitions": append_partitions}
    meter = Progress("parallel download", progress)
    pending: deque[Future] = deque()
    workers = max(1, n_workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="tunnel-download") as pool:
        todo = iter(ranges)

        def read_ahead(limit: int) -> None:
            while len(pending) < limit and (nxt := next(todo, None)) is not None:
                pending.append(pool.submit(_read_range, session, *nxt, options))

        try:
            read_ahead(workers)
            while pending:
                batches = pending.popleft().result()
                # While this range is consumed, the others keep reading (one worker reads
                # the next range), so at most max(n_workers, 2) ranges are held.
                read_ahead(max(1, workers - 1))
                for batch in batches:
                    meter.add(batch.num_rows, batch.nbytes)
                    yield batch
                del batches
                read_ahead(workers)
        finally:
            for fut in pending:
                fut.cancel()
    meter.finish()


def _write_range(
    session: TableDownloadSession,
    first: int,
    n: int,
    path: str,
    file_format: str,
    options: dict[str, Any],
    meter: Progress,
) -> str:
    import pyarrow.parquet as pq

    with session.open_arrow_reader(first, n, **options) as reader:
        schema = reader.arrow_schema
        if file_format == "parquet":
            writer: Any = pq.ParquetWriter(path, schema)
        else:
            writer = pa.ipc.new_file(path, schema)
        with writer:
            for batch in reader:
                writer.write_batch(batch)
                with _meter_lock:
                    meter.add(batch.num_rows, batch.nbytes)
    return path


def download_to_files(
    session: TableDownloadSession,
    directory: str | os.PathLike,
    n_workers: int = 4,
    file_format: str = "parquet",
    columns: list[str] | None = None,
    compress: bool = False,
    append_partitions: bool = False,
    rows_per_range: int | None = None,
    progress: Any = None,
) -> list[str]:
    """Write the session's rows as files ``part-00000.<ext>`` ... (one per range) in
    ``directory``; returns their paths in row order. ``file_format`` is ``parquet`` or
    ``arrow`` (Arrow IPC file)."""
    if file_format not in ("parquet", "arrow"):
        raise ValueError(f"file_format must be 'parquet' or 'arrow', not {file_format!r}")
    os.makedirs(directory, exist_ok=True)
    ranges = split_ranges(
        0, session.count, rows_per_range or _default_range_rows(session.count, n_workers)
    )
    options = {"compress": compress, "columns": columns, "append_partitions": append_partitions}
    meter = Progress("parallel download", progress)
    with ThreadPoolExecutor(max(1, n_workers), thread_name_prefix="tunnel-download") as pool:
        futures = [
            pool.submit(
                _write_range,
                session,
                first,
                n,
                os.path.join(directory, f"part-{i:05d}.{file_format}"),
                file_format,
                options,
                meter,
            )
            for i, (first, n) in enumerate(ranges)
        ]
        paths = [f.result() for f in futures]
    meter.finish()
    return paths
