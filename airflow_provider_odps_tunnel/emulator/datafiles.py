"""Table data files on disk: the one place that writes, reads and ranges over them.

New data files are Arrow IPC files (``<uuid>.arrow``), uncompressed: writing one is a copy
of the batches' buffers and reading one back a read of them, so an Arrow upload is stored
and an Arrow download served with no encoding step (Parquet with LZ4 took 5 times the CPU
to write and 10 times to read; ``docs/emulator.md`` has the figures). Files written by earlier versions are Parquet
(``<uuid>.parquet``) and are still read everywhere: downloads, SQL, schema changes, upsert
merges, garbage collection.

An IPC file does not say how many rows each batch holds without reading it, so the writer
ends every file with an empty batch whose custom metadata lists the row count of each
batch before it: a row range is then found from the footer and that one small batch, and
only the batches it covers are read. Reads go through ordinary file reads, never a memory
map, so serving a file of any size holds one batch in memory, not the pages of the file.

Batches are stored between :data:`COALESCE_ROWS` and :data:`MAX_BATCH_ROWS` rows where the
input allows: small input batches (a client may send one-row batches) are gathered and
large ones split, so a file never holds millions of tiny batches nor a batch too large to
serve a piece of.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .fsutil import fsync_file, start_writeback

__all__ = [
    "SUFFIX",
    "SUFFIXES",
    "DataFileWriter",
    "write_table",
    "is_data_file",
    "read_table",
    "read_range",
    "dataset",
    "COALESCE_ROWS",
    "MAX_BATCH_ROWS",
]

#: The suffix of new data files (Arrow IPC file format).
SUFFIX = ".arrow"
_PARQUET = ".parquet"
#: Every suffix a data file may have (new files, then files of earlier versions).
SUFFIXES = (SUFFIX, _PARQUET)
# Input batches below both of these are gathered into one stored batch ...
COALESCE_ROWS = 16384
COALESCE_BYTES = 1 << 20
# ... and batches above either are stored in slices.
MAX_BATCH_ROWS = 65536
MAX_BATCH_BYTES = 16 << 20
# Bytes written after which the disk write-back of the file is started (fsutil).
WRITEBACK_BYTES = 2 << 20
# Custom metadata key of the closing empty batch: the stored batches' row counts.
_INDEX_KEY = b"odps_emulator_batch_rows"
# Rows per batch read from a Parquet file (files of earlier versions).
_PARQUET_BATCH_ROWS = 8192


def is_data_file(name: str) -> bool:
    """Whether ``name`` is a (final, not ``.part``) data file of either format."""
    return name.endswith(SUFFIXES)


class DataFileWriter:
    """Writes batches of ``schema`` to a new data file at ``path``; fsynced by ``close``.

    The file is complete only after :meth:`close`; :meth:`discard` removes it instead.
    """

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.rows = 0
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self._counts: list[int] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._kicked = 0  # file size when write-back was last started

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (of the file's schema)."""
        rows = batch.num_rows
        if not rows:
            return
        self.rows += rows
        size = batch.nbytes
        if rows < COALESCE_ROWS and size < COALESCE_BYTES:
            self._pending.append(batch)
            self._pending_rows += rows
            self._pending_bytes += size
            if self._pending_rows >= COALESCE_ROWS or self._pending_bytes >= COALESCE_BYTES:
                self._flush()
            return
        self._flush()
        step = min(MAX_BATCH_ROWS, max(1, rows * MAX_BATCH_BYTES // max(size, 1)))
        for start in range(0, rows, step):
            self._store(batch.slice(start, step) if step < rows else batch)

    def write_table(self, table: pa.Table) -> None:
        """Append the rows of ``table``."""
        for batch in table.to_batches(max_chunksize=MAX_BATCH_ROWS):
            self.write(batch)

    def _flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        self._pending = []
        self._pending_rows = self._pending_bytes = 0
        self._store(pending[0] if len(pending) == 1 else pa.concat_batches(pending))

    def _store(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self._counts.append(batch.num_rows)
        written = self._sink.tell()
        if written - self._kicked >= WRITEBACK_BYTES:
            start_writeback(self._sink.fileno())
            self._kicked = written

    def close(self) -> None:
        """Finish the file (the row index, the footer) and make it durable."""
        self._flush()
        index = ",".join(map(str, self._counts)).encode()
        self._writer.write_batch(
            pa.RecordBatch.from_pylist([], schema=self.schema), custom_metadata={_INDEX_KEY: index}
        )
        self._writer.close()
        self._sink.close()
        fsync_file(self.path)

    def discard(self) -> None:
        """Abandon the file: close what is open and delete it."""
        try:
            if not self._sink.closed:
                self._sink.close()
        finally:
            self.path.unlink(missing_ok=True)


def write_table(path: Path, table: pa.Table) -> None:
    """Write ``table`` as a new data file at ``path`` (fsynced)."""
    writer = DataFileWriter(path, table.schema)
    try:
        writer.write_table(table)
        writer.close()
    except BaseException:
        writer.discard()
        raise


def read_table(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """All rows of a data file: its own columns, or those of ``schema`` (by name, cast to
    its types; a column the file lacks is NULL)."""
    if schema is not None:
        return dataset([str(path)], schema).to_table()
    if path.name.endswith(_PARQUET):
        return pq.read_table(path)
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def dataset(paths: Sequence[str], schema: pa.Schema) -> ds.Dataset:
    """The rows of data files ``paths`` (either format) as one dataset of ``schema``."""
    parts = []
    for fmt, suffix in (("ipc", SUFFIX), ("parquet", _PARQUET)):
        group = [p for p in paths if p.endswith(suffix)]
        if group:
            parts.append(ds.dataset(group, schema=schema, format=fmt))
    if len(parts) == 1:
        return parts[0]
    return ds.dataset(parts, schema=schema)


def read_range(path: Path, skip: int, count: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Batches of rows ``skip .. skip+count`` of one data file, ``columns`` in that order.

    Only the batches that hold those rows are read.
    """
    if path.name.endswith(_PARQUET):
        yield from _parquet_range(path, skip, count, columns)
        return
    with pa.OSFile(str(path)) as source:
        reader = pa.ipc.open_file(source)
        last = reader.num_record_batches - 1
        index = reader.get_batch_with_custom_metadata(last).custom_metadata[_INDEX_KEY]
        counts = [int(n) for n in index.split(b",")] if index else []
        for i, rows in enumerate(counts):
            if count <= 0:
                return
            if skip >= rows:
                skip -= rows
                continue
            batch = reader.get_batch(i).select(columns)
            if skip or count < rows - skip:
                batch = batch.slice(skip, count)
            skip = 0
            count -= batch.num_rows
            yield batch


def _parquet_range(
    path: Path, skip: int, count: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """:func:`read_range` of a Parquet file: row groups before the range are skipped by
    their row counts."""
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        if count <= 0:
            return
        size = parquet.metadata.row_group(group).num_rows
        if skip >= size:
            skip -= size
            continue
        for batch in parquet.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=columns
        ):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            part = batch.slice(skip, count)
            skip = 0
            count -= part.num_rows
            yield part
            if count <= 0:
                return
