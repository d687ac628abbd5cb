"""The file formats of an export: Parquet, CSV or JSON lines, compressed, written as a stream.

``export_suffix`` names a file (``.parquet``; ``.csv`` or ``.jsonl`` with ``.gz``, ``.bz2``
or ``.zst`` when compressed), and ``BatchFileWriter`` writes Arrow batches into an open
binary file. Parquet compresses inside the file (its codec: ``snappy`` by default,
``zstd``, ``gzip``, ``brotli``, ``lz4`` or ``none``); CSV and JSON lines are compressed as a
whole stream with pyarrow's codecs (``gzip``, ``bz2``, ``zstd``).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from typing import Any

import pyarrow as pa

__all__ = ["EXPORT_FORMATS", "STREAM_COMPRESSIONS", "export_suffix", "BatchFileWriter"]

EXPORT_FORMATS = ("parquet", "csv", "jsonl")
#: Whole-file compressions of CSV and JSON lines, and their file suffixes.
STREAM_COMPRESSIONS = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}


def check_format(file_format: str, compression: str | None) -> None:
    """Fail early, naming the option, on a format or compression the export cannot write."""
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export file_format {file_format!r}; use one of {EXPORT_FORMATS}")
    stream = file_format != "parquet" and compression and compression != "none"
    if stream and compression not in STREAM_COMPRESSIONS:
        raise ValueError(
            f"a {file_format} export is compressed with one of "
            f"{sorted(STREAM_COMPRESSIONS)}, not {compression!r}"
        )


def export_suffix(file_format: str, compression: str | None) -> str:
    """The file name suffix of an export file: ``.parquet``, ``.csv.gz``, ``.jsonl`` ..."""
    check_format(file_format, compression)
    if file_format == "parquet" or not compression or compression == "none":
        return f".{file_format}"
    return f".{file_format}{STREAM_COMPRESSIONS[compression]}"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class BatchFileWriter:
    """Writes Arrow batches of one schema to an open binary file in an export format.

    Call ``write`` per batch and ``close`` once (also for no batches: the file then holds
    the schema, for Parquet, or the CSV header); ``close`` does not close ``fh``.
    """

    def __init__(
        self, fh: Any, schema: pa.Schema, file_format: str, compression: str | None
    ) -> None:
        check_format(file_format, compression)
        self.schema = schema
        self.format = file_format
        self._stream: Any = None
        if file_format == "parquet":
            import pyarrow.parquet as pq

            codec = compression or "snappy"
            self._writer: Any = pq.ParquetWriter(fh, schema, compression=codec)
            return
        if compression and compression != "none":
            self._stream = pa.CompressedOutputStream(fh, compression)
            out = self._stream
        else:
            out = pa.PythonFile(fh, mode="w")
        self._out = out
        if file_format == "csv":
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(out, schema)
        else:
            self._writer = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.format == "jsonl":
            lines = "".join(
                json.dumps(row, default=_json_value, ensure_ascii=False) + "\n"
                for row in batch.to_pylist()
            )
            self._out.write(lines.encode())
        else:
            self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._stream is not None:
            # Flushes the compressed stream's end; the file object stays the caller's.
            self._stream.close()
