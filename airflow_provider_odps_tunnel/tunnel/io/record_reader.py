"""Reading record bodies as Records, tuples or Arrow batches, resuming after a failure."""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterator
from itertools import chain
from operator import length_hint
from typing import Any, BinaryIO

from ..codec.datetimes import timedelta_to_pair
from ..codec.partition import PartitionSpec
from ..codec.record import Record
from ..codec.record_codec import RecordDecoder, RecordIterator
from ..codec.schema import Column, TableSchema
from ..codec.types import (
    Array,
    DataType,
    IntegerType,
    Map,
    Struct,
    interval_day_time,
)
from ..codec.types import json as json_type
from ..errors import DataStreamError, TunnelError
from ..options import options, resolve_timezone
from ..progress import Progress
from .metrics import ClientClock, TimedStream, TunnelMetrics
from .reader_api import RecordReaderAPI
from .resume import ResumableRows

__all__ = ["TunnelRecordReader"]

StreamCreator = Callable[[int], BinaryIO]
# Rows decoded per step: a resume after a failure starts at most this many rows back.
_BATCH_ROWS = 1024


class TunnelRecordReader(RecordReaderAPI):
    """Reads a download body as :class:`Record` objects (or tuples, or Arrow batches).

    ``stream_creator(start_row)`` returns a readable binary stream (already decompressed)
    of a body that begins ``start_row`` rows after the reader's first row. ``columns``
    selects and orders columns (partition columns included); without it every data column
    is read, followed by the partition columns when ``append_partitions`` is set. Partition
    values come from ``partition_spec``: the service never sends them.

    Besides pyodps's surface (iteration, slicing, ``reads()``, ``to_result_frame``,
    ``to_pandas``, ``n_bytes``, ``metrics``: :class:`~.reader_api.RecordReaderAPI`) it
    offers faster paths: :meth:`iter_tuples`, :meth:`iter_arrow_batches`, :meth:`read_arrow`.
    """

    def __init__(
        self,
        schema: TableSchema,
        stream_creator: StreamCreator,
        columns: list[str] | None = None,
        partition_spec: str | PartitionSpec | None = None,
        append_partitions: bool = False,
        on_exception: Callable[[BaseException], bool] | None = None,
    ):
        self._schema = schema
        self._stream_creator = stream_creator
        spec = PartitionSpec(partition_spec)
        if columns is None:
            out_columns = list(schema.simple_columns)
            if append_partitions:
                out_columns += [c for c in schema.partitions if c.name in spec]
        else:
            out_columns = [schema.get_column(name) for name in columns]
        partition_names = {c.name.lower() for c in schema.partitions}
        self._wire_columns: list[Column] = [
            c for c in out_columns if c.name.lower() not in partition_names
        ]
        # For each output column: its index in the wire row, or the partition value.
        self._layout: list[tuple[int | None, Any]] = []
        for col in out_columns:
            if col.name.lower() in partition_names:
                value = _partition_value(spec, col)
                self._layout.append((None, value))
            else:
                self._layout.append((self._wire_columns.index(col), None))
        self._plain = all(pos == i for i, (pos, _) in enumerate(self._layout))
        self.columns = out_columns
        self._index = {c.name.lower(): i for i, c in enumerate(out_columns)}
        self._rows = ResumableRows(self._open_batches, len, on_exception)
        # The batch being handed out: its rows as Records one by one, or the rest as tuples.
        self._current = RecordIterator([], self.columns, self._index)
        self.progress = Progress("download")
        self._finished = False
        self._clock = ClientClock()
        self._decoder: RecordDecoder | None = None
        self._past_bytes = 0
        self._server_metrics: dict | None = None

    @property
    def schema(self) -> TableSchema:
        """The table's schema, as the reader was given it (pyodps's ``reader.schema``)."""
        return self._schema

    @property
    def n_bytes(self) -> int:
        """Body bytes decoded so far, over every attempt (decompressed; decoding runs at
        most one batch of rows ahead of the rows handed out)."""
        return self._past_bytes + (self._decoder.offset if self._decoder is not None else 0)

    def get_total_bytes(self) -> int:
        """The same as :attr:`n_bytes` (pyodps's name)."""
        return self.n_bytes

    @property
    def metrics(self) -> TunnelMetrics | None:
        """The server's costs from the end of the body (protocol §5.7), with the client's
        own when ``options.enable_client_metrics`` is set; None until a body has ended
        with a metrics block (after a resume: the last body's)."""
        return self._clock.metrics(type(self).__name__, self._server_metrics)

    @property
    def wire_columns(self) -> list[Column]:
        """The columns the body carries, in wire order: what a ``columns=`` request names."""
        return list(self._wire_columns)

    @property
    def count(self) -> int:
        """Rows delivered so far."""
        return self._rows.cursor - length_hint(self._current)

    def _open_batches(self, start_row: int) -> Iterator[list[tuple]]:
        started = self._clock.start()
        stream = self._stream_creator(start_row)
        self._clock.add_network(started)
        if self._clock.enabled:
            stream = TimedStream(stream, self._clock)
        decoder = self._decoder = RecordDecoder(
            self._wire_columns,
            stream,
            tz=resolve_timezone(),
            string_as_binary=options.string_as_binary,
            require_footer=options.require_stream_footer,
        )
        consumed = 0
        try:
            while True:
                rows = decoder.read_rows(_BATCH_ROWS)
                if not rows:
                    if decoder.metrics is not None:
                        self._server_metrics = decoder.metrics
                    return
                self.progress.add(len(rows), decoder.offset - consumed)
                consumed = decoder.offset
                yield rows
        except DataStreamError as exc:
            exc.row = start_row + (exc.row if exc.row is not None else decoder.count)
            raise
        finally:
            self._past_bytes += decoder.offset
            self._decoder = None
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def _shape(self, row: tuple) -> tuple:
        return tuple(row[pos] if pos is not None else value for pos, value in self._layout)

    def _next_batch(self) -> bool:
        """Make the next batch of rows (shaped to the output columns) the current one;
        False at the end of the rows."""
        started = self._clock.start()
        batch = self._rows.next_batch()
        self._clock.add_local(started)
        if batch is None:
            if not self._finished:
                self._finished = True
                self.progress.finish()
            return False
        if not self._plain:
            batch = [self._shape(row) for row in batch]
        self._current = RecordIterator(batch, self.columns, self._index)
        return True

    def read(self) -> Record | None:
        """The next record, or None at the end."""
        for record in self._current:
            return record
        while self._next_batch():
            for record in self._current:
                return record
        return None

    def __iter__(self) -> Iterator[Record]:
        """The remaining records. The batches' record iterators are chained in C, so a
        record costs no Python call; they are the reader's own, so ``read()``, ``next()``
        and ``count`` stay in step with the loop."""
        return chain.from_iterable(self._batches())

    def _batches(self) -> Iterator[RecordIterator]:
        """The current batch while it has rows, then each next one."""
        while True:
            if length_hint(self._current):
                yield self._current
            elif not self._next_batch():
                return

    def iter_tuples(self) -> Iterator[tuple]:
        """Rows as tuples in column order: the fast path, with no Record per row."""
        while True:
            rows = self._current.rest()
            if rows:
                yield from rows
            elif not self._next_batch():
                return

    def iter_arrow_batches(self, batch_size: int = 65536) -> Iterator[Any]:
        """Rows as ``pyarrow.RecordBatch`` objects of up to ``batch_size`` rows.

        The batches have the layout :class:`~.arrow_reader.TunnelArrowReader` returns:
        DATETIME and TIMESTAMP as naive wall-clock times, JSON as text.
        """
        schema = self.arrow_schema
        converters = [_arrow_ready(c.type) for c in self.columns]
        rows: list[tuple] = []
        for row in self.iter_tuples():
            rows.append(row)
            if len(rows) >= batch_size:
                yield _rows_to_batch(rows, schema, converters)
                rows = []
        if rows:
            yield _rows_to_batch(rows, schema, converters)

    @property
    def arrow_schema(self) -> Any:
        from ..codec.arrow_types import odps_schema_to_arrow_schema

        return odps_schema_to_arrow_schema(self.columns)

    def read_arrow(self) -> Any:
        """Every remaining row as one ``pyarrow.Table``."""
        import pyarrow as pa

        batches = list(self.iter_arrow_batches())
        if batches:
            return pa.Table.from_batches(batches)
        return self.arrow_schema.empty_table()

    def _frame_rows(self, start: int | None, end: int | None, step: int | None) -> Iterator[tuple]:
        """Every remaining row takes the tuple path, with no Record per row."""
        if not start and end is None and (step or 1) == 1:
            return self.iter_tuples()
        return super()._frame_rows(start, end, step)

    def close(self) -> None:
        """Drop buffered rows and close the body being read."""
        self._current.rest()  # also what an iterator from __iter__ holds
        self._rows.close()

    def __enter__(self) -> TunnelRecordReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _partition_value(spec: PartitionSpec, column: Column) -> Any:
    """The typed value of a partition column (specs hold text; integer keys are common)."""
    for key, value in spec.items():
        if key.lower() == column.name.lower():
            return int(value) if isinstance(column.type, IntegerType) else value
    raise TunnelError(f"partition column {column.name!r} has no value in spec {spec}")


def _arrow_ready(t: DataType) -> Callable[[Any], Any] | None:
    """What turns a record value into what ``pyarrow.array`` takes for ``t`` (None: as is)."""
    if t == json_type:
        return _json.dumps
    if t == interval_day_time:

        def interval(v: Any) -> dict[str, int]:
            seconds, nanos = timedelta_to_pair(v)
            return {"sec": seconds, "nano": nanos}

        return interval
    if isinstance(t, Array):
        item = _arrow_ready(t.value_type)
        return None if item is None else lambda v: [None if x is None else item(x) for x in v]
    if isinstance(t, Map):
        key = _arrow_ready(t.key_type) or _same
        value = _arrow_ready(t.value_type) or _same
        return lambda v: [(key(k), None if x is None else value(x)) for k, x in v.items()]
    if isinstance(t, Struct):
        fields = {name: _arrow_ready(ft) for name, ft in t.field_types.items()}
        if not any(fields.values()):
            return None
        return lambda v: {
            n: x if x is None or fields[n] is None else fields[n](x) for n, x in v.items()
        }
    return None


def _same(value: Any) -> Any:
    return value


def _rows_to_batch(rows: list[tuple], arrow_schema: Any, converters: list) -> Any:
    import pyarrow as pa

    arrays = []
    for values, field, convert in zip(
        zip(*rows, strict=True), arrow_schema, converters, strict=True
    ):
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)
