"""Table preview: the first rows of a table without a session (protocol §3.5).

The answer is a plain Arrow IPC stream (schema, batches, end), possibly empty. The schema
comes from the stream itself, so a preview needs no table metadata. Timestamps sent as
``struct<sec, nano>`` are turned into Arrow timestamps; partition columns are included
by the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from ..codec.arrow_types import arrow_type_to_odps_type, timestamp_structs_to_ns
from ..codec.record import Record
from ..codec.schema import Column, TableSchema
from ..io.reader_api import RecordReaderAPI

__all__ = ["PreviewArrowReader", "PreviewRecordReader"]


def _is_time_struct(t: pa.DataType) -> bool:
    return (
        pa.types.is_struct(t)
        and t.num_fields == 2
        and {t.field(0).name, t.field(1).name} == {"sec", "nano"}
    )


def _compat(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Struct-encoded timestamps as ``timestamp[ns]`` columns."""
    if not any(_is_time_struct(f.type) for f in batch.schema):
        return batch
    arrays = [
        timestamp_structs_to_ns(col) if _is_time_struct(col.type) else col for col in batch.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


class PreviewArrowReader:
    """The preview's Arrow batches: ``read_next_batch``, iteration, ``read``, ``to_pandas``."""

    def __init__(self, stream: Any, columns: list[str] | None = None, make_compat: bool = True):
        data = stream.read()
        stream.close()
        self._batches: list[pa.RecordBatch] = []
        self._schema = pa.schema([])
        if data:
            reader = pa.ipc.open_stream(pa.py_buffer(data))
            self._schema = reader.schema
            self._batches = list(reader)
            for batch in self._batches:
                # The body has no checksum: at least refuse one that is not valid Arrow
                # (offsets, UTF-8), which a damaged body usually is not.
                batch.validate(full=True)
            if make_compat:
                self._batches = [_compat(b) for b in self._batches]
            if self._batches:
                self._schema = self._batches[0].schema
        self._columns = columns
        self._pos = 0

    @property
    def schema(self) -> pa.Schema:
        return self._select_schema(self._schema)

    def _select_schema(self, schema: pa.Schema) -> pa.Schema:
        if not self._columns or not schema.names:  # an empty body has no schema at all
            return schema
        return pa.schema([schema.field(schema.get_field_index(c)) for c in self._columns])

    def _select(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self._columns:
            return batch
        return batch.select(self._columns)

    def read_next_batch(self) -> pa.RecordBatch | None:
        """The next batch, or None at the end."""
        if self._pos >= len(self._batches):
            return None
        batch = self._batches[self._pos]
        self._pos += 1
        return self._select(batch)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while (batch := self.read_next_batch()) is not None:
            yield batch

    def read(self) -> pa.Table:
        """Every remaining batch as one table."""
        batches = list(self)
        if batches:
            return pa.Table.from_batches(batches)
        return self.schema.empty_table()

    def to_pandas(self) -> Any:
        return self.read().to_pandas()

    def close(self) -> None:
        self._batches = []

    def __enter__(self) -> PreviewArrowReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PreviewRecordReader(RecordReaderAPI):
    """The preview as :class:`Record` objects, with a schema derived from the stream
    (pyodps's ``ArrowRecordReader``): iteration, slicing, ``count`` (records read so far),
    ``to_pandas(start, count)`` and ``to_result_frame``."""

    def __init__(self, arrow_reader: PreviewArrowReader):
        self._arrow = arrow_reader
        self.schema = TableSchema(
            [Column(f.name, arrow_type_to_odps_type(f.type)) for f in arrow_reader.schema]
        )
        self.columns = self.schema.columns
        self._rows = self._generate()
        self._count = 0

    def _generate(self) -> Iterator[Record]:
        for batch in self._arrow:
            for row in batch.to_pylist():
                yield Record(schema=self.schema, values=list(row.values()))

    @property
    def count(self) -> int:
        """Records read so far."""
        return self._count

    def read(self) -> Record | None:
        """The next record, or None at the end."""
        record = next(self._rows, None)
        if record is not None:
            self._count += 1
        return record

    def close(self) -> None:
        self._arrow.close()

    def __enter__(self) -> PreviewRecordReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
