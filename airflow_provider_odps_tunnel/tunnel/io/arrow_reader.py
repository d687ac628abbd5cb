"""Reading Arrow download bodies (``GET ...?data&arrow``) as batches, tables or rows.

The body is framed Arrow (:mod:`.arrow_framing`) carrying the requested data columns in
table order. The reader prepends the schema, converts instants to the configured zone,
puts the columns in the requested order, adds partition values, and re-opens the body at
the first undelivered row when reading fails.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import pyarrow as pa

from ..codec import types as odps_types
from ..codec.arrow_framing import ArrowFrameDecoder, read_payload_batches
from ..codec.arrow_types import (
    changes_to_wall_clock,
    instants_to_wall_clock,
    odps_schema_to_arrow_schema,
    timestamp_structs_to_ns,
)
from ..codec.datetimes import pair_to_timedelta
from ..codec.partition import PartitionSpec
from ..codec.record import Record
from ..codec.schema import Column, TableSchema
from ..errors import TunnelError
from ..options import options, resolve_timezone
from .resume import ResumableRows

__all__ = ["TunnelArrowReader"]


class _CountingStream:
    """Counts the bytes read through it (the reader's ``n_bytes``)."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.count = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data

    def close(self) -> None:
        self.closed = True
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _nullable(fields: list[pa.Field]) -> pa.Schema:
    # Batches are taken as the server sends them; NOT NULL is a write-side check.
    return pa.schema([field.with_nullable(True) for field in fields])


class TunnelArrowReader:
    """Arrow record batches of a download, in the columns and order asked for.

    ``stream_creator(start_row)`` returns a readable binary stream, already decompressed,
    of a body that begins ``start_row`` rows after the reader's first row. ``columns``
    selects and orders columns, partition columns included; without it all data columns
    are read, followed by the partition columns of ``partition_spec`` when
    ``append_partitions`` is set. Partition values take their columns' types. The service sends
    the data columns in table order; they are reordered here.

    DATETIME and TIMESTAMP values come out as naive wall-clock times in the configured
    zone, TIMESTAMP_NTZ as stored. ``timestamp_as_struct`` reads the instance-download
    layout (TIMESTAMP columns as ``struct<sec, nano>``); ``use_ipc_stream`` reads a plain
    Arrow IPC stream (the preview endpoint) instead of a framed body.

    When reading fails, ``on_exception(exc)`` is asked first (True: raise it); otherwise
    the body is re-opened at the first row not yet returned, up to ``options.retry_times``
    times in a row (:class:`~.resume.ResumableRows`).
    """

    def __init__(
        self,
        schema: TableSchema,
        stream_creator: Callable[[int], BinaryIO],
        columns: list[str] | None = None,
        partition_spec: str | PartitionSpec | None = None,
        append_partitions: bool = False,
        use_ipc_stream: bool = False,
        timestamp_as_struct: bool = False,
        on_exception: Callable[[BaseException], bool] | None = None,
    ):
        self._stream_creator = stream_creator
        self._use_ipc_stream = use_ipc_stream
        self._timestamp_as_struct = timestamp_as_struct
        spec = PartitionSpec(partition_spec)
        partition_names = {c.name.lower() for c in schema.partitions}
        if columns is None:
            out_columns = list(schema.simple_columns)
            if append_partitions:
                out_columns += [c for c in schema.partitions if _spec_value(spec, c) is not None]
        else:
            out_columns = [schema.get_column(name) for name in columns]
        selected = {c.name.lower() for c in out_columns}
        #: The data columns the body carries, in table order (what ``columns=`` requests).
        self.wire_columns: list[Column] = [
            c for c in schema.simple_columns if c.name.lower() in selected
        ]
        self._wire_schema = _nullable(
            list(odps_schema_to_arrow_schema(self.wire_columns, timestamp_as_struct))
        )
        #: The columns of the output, in output order.
        self.columns = out_columns
        self._index = {c.name.lower(): i for i, c in enumerate(out_columns)}
        self._partition_values: dict[str, pa.Scalar] = {}
        fields = []
        for col in out_columns:
            if col.name.lower() in partition_names:
                value = _spec_value(spec, col)
                if value is None:
                    raise TunnelError(
                        f"partition column {col.name!r} was asked for but partition spec "
                        f"{spec} gives it no value"
                    )
                field = odps_schema_to_arrow_schema([col]).field(0)
                self._partition_values[col.name.lower()] = pa.scalar(value).cast(field.type)
                fields.append(field)
            else:
                fields.extend(odps_schema_to_arrow_schema([col]))
        #: The Arrow schema of the batches this reader returns.
        self.arrow_schema = _nullable(fields)
        self._timezone = resolve_timezone()
        self._string_as_binary = options.string_as_binary
        self._rows = ResumableRows(self._open, _num_rows, on_exception)
        self._stream: _CountingStream | None = None
        self._as_sent: bool | None = None  # batches need no shaping (known at the first)
        self._finished = False
        self._past_bytes = 0
        #: Rows returned so far.
        self.n_rows = 0
        #: Whether :meth:`close` was called (pyodps's attribute).
        self.closed = False

    @property
    def schema(self) -> TableSchema:
        """The output columns as a schema (partition columns included, as data columns)."""
        return TableSchema(self.columns)

    @property
    def count(self) -> int:
        """Rows returned so far (pyodps' name for :attr:`n_rows`)."""
        return self.n_rows

    @property
    def n_bytes(self) -> int:
        """Body bytes read so far, over every attempt."""
        return self._past_bytes + (self._stream.count if self._stream else 0)

    def get_total_bytes(self) -> int:
        """The same as :attr:`n_bytes` (pyodps's name)."""
        return self.n_bytes

    # ----------------------------------------------------------------- the body

    def _open(self, start_row: int) -> Iterator[pa.RecordBatch]:
        self._close_stream()
        self._stream = _CountingStream(self._stream_creator(start_row))
        try:
            if self._use_ipc_stream:
                yield from pa.ipc.open_stream(self._stream)
            else:
                yield from read_payload_batches(ArrowFrameDecoder(self._stream), self._wire_schema)
        finally:
            self._close_stream()

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._past_bytes += self._stream.count
            self._stream.close()
            self._stream = None

    def _shape(self, raw: pa.RecordBatch) -> pa.RecordBatch:
        """``raw`` in output order and form: zones applied, partition values added."""
        if self._as_sent is None:
            self._as_sent = self._needs_no_shaping(raw.schema)
        if self._as_sent:
            return raw
        positions = {name.lower(): i for i, name in enumerate(raw.schema.names)}
        arrays = []
        for col in self.columns:
            key = col.name.lower()
            if key in self._partition_values:
                arrays.append(pa.repeat(self._partition_values[key], raw.num_rows))
                continue
            arr = raw.column(positions[key])
            if self._timestamp_as_struct and col.type in (
                odps_types.timestamp,
                odps_types.timestamp_ntz,
            ):
                arr = timestamp_structs_to_ns(arr)
            arrays.append(instants_to_wall_clock(arr, col.type, self._timezone))
        if self._use_ipc_stream:
            return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in self.columns])
        return pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema)

    def _needs_no_shaping(self, sent: pa.Schema) -> bool:
        """True when batches of schema ``sent`` are already in output order and form (the
        common case: all columns, no partition values, a zone where instants need no
        change), so they are returned as they are."""
        if self._use_ipc_stream or self._partition_values or not sent.equals(self.arrow_schema):
            return False
        struct_times = (odps_types.timestamp, odps_types.timestamp_ntz)
        return not any(
            (self._timestamp_as_struct and col.type in struct_times)
            or changes_to_wall_clock(col.type, self._timezone)
            for col in self.columns
        )

    # ----------------------------------------------------------------- public API

    def read_next_batch(self) -> pa.RecordBatch | None:
        """The next record batch, or None at the end of the body."""
        if self._finished:
            return None
        raw = self._rows.next_batch()
        if raw is None:
            self._finished = True
            return None
        batch = self._shape(raw)
        self.n_rows += batch.num_rows
        return batch

    def __iter__(self) -> TunnelArrowReader:
        return self

    def __next__(self) -> pa.RecordBatch:
        batch = self.read_next_batch()
        if batch is None:
            raise StopIteration
        return batch

    def read(self) -> pa.Table:
        """Every remaining row as one ``pyarrow.Table``."""
        batches = list(self)
        if not batches:
            return self.arrow_schema.empty_table()
        return pa.Table.from_batches(batches)

    def to_pandas(self) -> Any:
        """Every remaining row as a pandas ``DataFrame``."""
        return self.read().to_pandas()

    def iter_tuples(self) -> Iterator[tuple]:
        """Rows as tuples of Python values, with the conventions of records."""
        converters = [self._converter(col) for col in self.columns]
        for batch in self:
            values = []
            for arr, convert in zip(batch.columns, converters, strict=True):
                items = arr.to_pylist()
                if convert is not None:
                    items = [None if v is None else convert(v) for v in items]
                values.append(items)
            yield from zip(*values, strict=True)

    def iter_records(self) -> Iterator[Record]:
        """Rows as :class:`~.record.Record` objects."""
        for row in self.iter_tuples():
            yield Record._trusted(self.columns, self._index, list(row))

    def _converter(self, col: Column) -> Callable[[Any], Any] | None:
        if col.name.lower() in self._partition_values:
            return None
        return _python_value(col.type, self._string_as_binary)

    def close(self) -> None:
        """Close the body being read."""
        self._rows.close()
        self._close_stream()
        self._finished = True
        self.closed = True

    def __enter__(self) -> TunnelArrowReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _spec_value(spec: PartitionSpec, column: Column) -> str | None:
    for key, value in spec.items():
        if key.lower() == column.name.lower():
            return value
    return None


def _python_value(t: odps_types.DataType, string_as_binary: bool) -> Callable[[Any], Any] | None:
    """What turns ``to_pylist`` output into a record's value for ``t`` (None: nothing to do).

    Arrow already gives datetimes, ``pandas.Timestamp`` (nanoseconds), dates, Decimals,
    lists and struct dicts; maps come as key/value pairs, JSON as text and intervals as
    ``{sec, nano}``.
    """
    if t is odps_types.json:
        return _json.loads
    if t is odps_types.interval_day_time:
        return lambda v: pair_to_timedelta(v["sec"], v["nano"])
    if string_as_binary and t is odps_types.string:
        return lambda v: v.encode("utf-8")
    if isinstance(t, odps_types.Array | odps_types.Vector):
        item = _python_value(t.value_type, string_as_binary)
        if item is None:
            return None
        return lambda v: [None if x is None else item(x) for x in v]
    if isinstance(t, odps_types.Map):
        key = _python_value(t.key_type, string_as_binary) or _same
        value = _python_value(t.value_type, string_as_binary) or _same
        return lambda v: {key(k): None if x is None else value(x) for k, x in v}
    if isinstance(t, odps_types.Struct):
        fields = {name: _python_value(ft, string_as_binary) for name, ft in t.field_types.items()}
        if not any(fields.values()):
            return None
        return lambda v: {
            name: x if x is None or fields[name] is None else fields[name](x)
            for name, x in v.items()
        }
    return None


def _same(value: Any) -> Any:
    return value


def _num_rows(batch: pa.RecordBatch) -> int:
    return batch.num_rows
