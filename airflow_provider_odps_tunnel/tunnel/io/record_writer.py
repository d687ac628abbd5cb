"""Writers of record bodies: one streamed block, or buffered blocks cut at a size.

Both accept a :class:`Record`, a tuple or list in schema order, or a whole
``pyarrow.RecordBatch``, ``pyarrow.Table`` or pandas DataFrame, which is encoded column-wise
without building a ``Record`` per row.

``write`` is called once per row by most callers, so its common case (a ``Record``, or a
tuple or list of the data columns, with client metrics off) goes straight to the compiled
encoder: with the compiled codec, an open and untimed writer's ``write`` is even its
compiled twin (``CDirectWrite``, installed on the instance), which does the same as the
method's first branch without a Python frame per row. Progress is told about rows per
chunk of body (or per block), not per row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from ..codec import types as _types
from ..codec.compression import CompressOption, make_compressor
from ..codec.record import Record
from ..codec.record_codec import RecordEncoder, direct_write
from ..codec.schema import TableSchema
from ..errors import RecordValidationError, TunnelError
from ..options import options, resolve_timezone
from ..progress import Progress
from .body import StreamingBody
from .metrics import ClientClock, TunnelMetrics

__all__ = ["RecordWriter", "BufferedRecordWriter", "MAX_BLOCK_ID"]

log = logging.getLogger(__name__)

MAX_BLOCK_ID = 19999


class _RowSink:
    """Turns whatever ``write`` was given into records appended to ``self._buffer``."""

    def __init__(self, schema: TableSchema, encoding: str):
        self._schema = schema
        self._encoder = RecordEncoder(
            schema.simple_columns,
            tz=resolve_timezone(),
            encoding=encoding,
            string_as_binary=options.string_as_binary,
        )
        self._buffer = bytearray()
        self._arrow_schema = None
        self._instant_schema = None
        self._n_data = len(schema.simple_columns)
        # The encoder's count when progress was last told about rows (see _report_rows).
        self._rows_reported = 0
        self.progress = Progress("upload")
        self._clock = ClientClock()
        # write()'s compiled twin, this instance's ``write`` until the writer closes; not
        # for a timed writer (timing is per call), nor without the compiled encoder, nor
        # for a subclass with a write() of its own.
        twinned = type(self).write in _TWINNED_WRITES
        self._fast = (
            direct_write(self._encoder, self) if twinned and not self._clock.enabled else None
        )
        if self._fast is not None:
            self.write = self._fast.write
        self._closed = False  # also sets _direct

    @property
    def _closed(self) -> bool:
        return self._is_closed

    @_closed.setter
    def _closed(self, closed: bool) -> None:
        self._is_closed = closed
        # write() hands a Record or a row of the data columns straight to the encoder while
        # the writer is open and its calls are not timed (timing is per call).
        self._direct = not closed and not self._clock.enabled
        if closed and self._fast is not None:
            # A write bound before closing now reaches the class's write (and its error).
            self._fast.disarm()
            del self.write
            self._fast = None

    def _arm(self, limit: int) -> None:
        """Have ``write`` encode rows straight into the current buffer until it holds
        ``limit`` bytes, then call ``_at_limit``. Call it again whenever the buffer is
        replaced or the limit moves (the compiled ``write`` keeps both)."""
        self._limit = limit
        if self._fast is not None:
            self._fast.arm(self._buffer, limit)

    @property
    def n_records(self) -> int:
        """Records in the body being written (a footer starts a new body at 0)."""
        return self._encoder.count

    @property
    def count(self) -> int:
        """pyodps's name of :attr:`n_records`: records in the block being written, 0 again
        after a block is sent or the writer closed."""
        return self._encoder.count

    def __len__(self) -> int:
        """Bytes encoded so far, as pyodps's ``len(writer)``."""
        return self.n_bytes

    def get_total_bytes(self) -> int:
        """The same as :attr:`n_bytes` (pyodps's name)."""
        return self.n_bytes

    def _encode(self, data: Any) -> None:
        """Encode ``data`` into the buffer."""
        encoder = self._encoder
        if isinstance(data, Record):
            encoder.encode(data.values, self._buffer)
        elif isinstance(data, list | tuple):
            if len(data) != self._n_data:
                self._check_partition_values(data)
            encoder.encode(data, self._buffer)
        else:
            self._encode_table(data)

    def _report_rows(self, nbytes: int) -> None:
        """Tell ``progress`` about the records encoded since it was last told, and about
        ``nbytes`` more bytes. Call it before a footer starts a new body."""
        count = self._encoder.count
        self.progress.add(count - self._rows_reported, nbytes)
        self._rows_reported = count

    def _footer(self) -> None:
        """End the body in the buffer (the encoder starts a new one)."""
        self._report_rows(0)
        self._buffer += self._encoder.footer()
        self._rows_reported = 0

    def _check_partition_values(self, row: list | tuple) -> None:
        """A row longer than the data columns must be exactly a full row, partition values
        included (as ``Record.values`` is), and those values must fit their columns: extra
        values are never dropped silently."""
        schema = self._schema
        n_data = len(schema.simple_columns)
        if len(row) < n_data:
            return  # the encoder names what is missing
        if len(row) != len(schema.columns):
            raise RecordValidationError(
                f"row has {len(row)} values but the table has {n_data} data columns"
                + (f" and {len(schema.partitions)} partition columns" if schema.partitions else ""),
                value=list(row),
                row=self._encoder.count,
            )
        for col, value in zip(schema.partitions, row[n_data:], strict=True):
            try:
                col.type.validate(value)
            except (TypeError, ValueError) as exc:
                raise RecordValidationError(
                    f"partition column {col.name!r} ({col.type}): {exc}; value {value!r}",
                    column=col.name,
                    column_type=col.type.name,
                    value=value,
                    row=self._encoder.count,
                ) from None

    def _encode_table(self, data: Any) -> None:
        from ..codec.arrow_types import conform_table, odps_schema_to_arrow_schema

        if self._arrow_schema is None:
            self._arrow_schema = odps_schema_to_arrow_schema(self._schema)
            self._instant_schema = _label_instants_utc(self._schema, self._arrow_schema)
        for batch in conform_table(data, self._arrow_schema, resolve_timezone()):
            # conform_table gives DATETIME/TIMESTAMP as naive UTC instants; the encoder
            # reads naive values as local wall clock, so say they are UTC (no copy).
            batch = batch.cast(self._instant_schema)
            self._encoder.encode_arrow(batch, self._buffer)


def _label_instants_utc(schema: TableSchema, arrow_schema: Any) -> Any:
    """``arrow_schema`` with every DATETIME/TIMESTAMP (not NTZ) timestamp labelled UTC."""
    import pyarrow as pa

    def relabel(t: _types.DataType, at: Any) -> Any:
        if t in (_types.datetime, _types.timestamp):
            return pa.timestamp(at.unit, tz="UTC")
        if isinstance(t, _types.Array):
            return pa.list_(relabel(t.value_type, at.value_type))
        if isinstance(t, _types.Map):
            return pa.map_(relabel(t.key_type, at.key_type), relabel(t.value_type, at.item_type))
        if isinstance(t, _types.Struct):
            return pa.struct(
                [
                    at.field(i).with_type(relabel(ft, at.field(i).type))
                    for i, ft in enumerate(t.field_types.values())
                ]
            )
        return at

    return pa.schema(
        [
            field.with_type(relabel(col.type, field.type))
            for col, field in zip(schema.simple_columns, arrow_schema, strict=True)
        ],
        metadata=arrow_schema.metadata,
    )


class RecordWriter(_RowSink):
    """Streams one block's records to ``request_callback`` while they are written.

    ``request_callback(chunks)`` receives an iterable of ``bytes`` that together form the
    request body; it runs in a background thread and its return value is what
    :meth:`close` returns. Memory stays at a few chunks whatever the block size. Leaving a
    ``with`` block by an exception aborts the request, so the server never sees a complete
    body of partial data.
    """

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Callable[[Iterable[bytes]], Any],
        compress_option: CompressOption | None = None,
        encoding: str = "utf-8",
    ):
        super().__init__(schema, encoding)
        self._chunk_size = options.chunk_size
        self._body = StreamingBody(
            request_callback, self._chunk_size, make_compressor(compress_option)
        )
        self._server_metrics: str | None = None
        self._arm(self._chunk_size)

    @property
    def n_bytes(self) -> int:
        """Uncompressed bytes encoded so far."""
        return self._body.raw_bytes + len(self._buffer)

    @property
    def metrics(self) -> TunnelMetrics | None:
        """The server's costs from the block PUT's ``odps-tunnel-metrics`` header (with
        the client's own under ``options.enable_client_metrics``); None before
        :meth:`close` or when the answer had no such header."""
        return self._clock.metrics(type(self).__name__, self._server_metrics)

    def write(self, record: Any) -> None:
        """Write a Record, a row (tuple/list), or a RecordBatch, Table or DataFrame."""
        if self._direct and self._encoder.try_encode(record, self._buffer):
            if len(self._buffer) >= self._limit:
                self._at_limit()
            return
        if self._closed:
            raise TunnelError("write to a closed RecordWriter")
        started = self._clock.start()
        self._encode(record)
        if len(self._buffer) >= self._chunk_size:
            self._send_buffer()
        else:
            self._report_rows(0)
        self._clock.add_local(started)

    def _at_limit(self) -> None:
        """A chunk is full: send it."""
        self._send_buffer()

    def _send_buffer(self) -> None:
        if not self._buffer:
            return
        self._report_rows(len(self._buffer))
        started = self._clock.start()
        self._body.write(self._buffer)
        self._clock.add_network(started)
        self._buffer = bytearray()
        self._arm(self._chunk_size)

    def flush(self) -> None:
        """Hand what is encoded to the request now instead of at the next full chunk."""
        if not self._closed:
            self._send_buffer()

    def flush_all(self) -> None:
        """The same as :meth:`flush`: the request body has no buffer of its own."""
        self.flush()

    def close(self) -> Any:
        """Send the footer, end the request, and return the callback's result."""
        if self._closed:
            return None
        started = self._clock.start()
        self._closed = True
        self._footer()
        self._send_buffer()
        network = self._clock.start()
        result = self._body.close()
        self._clock.add_network(network)
        self._clock.add_local(started)
        if isinstance(result, str):
            self._server_metrics = result
        self.progress.finish()
        return result

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the request without sending a footer: nothing written is committed."""
        if not self._closed:
            self._closed = True
            self._body.abort(reason)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


class BlockBody:
    """A finished block's body: re-iterable, so the HTTP layer can re-send it on a retry."""

    def __init__(self, raw: bytes | bytearray, chunk_size: int, compress_option: Any):
        self._raw = raw
        self._chunk_size = chunk_size
        self._compress_option = compress_option
        self.raw_size = len(raw)

    def __iter__(self) -> Iterator[bytes]:
        compressor = make_compressor(self._compress_option)
        view = memoryview(self._raw)
        size = self._chunk_size
        for start in range(0, len(view), size):
            piece = bytes(view[start : start + size])
            if compressor is None:
                yield piece
            else:
                data = compressor.compress(piece)
                if data:
                    yield data
        if compressor is not None:
            tail = compressor.flush()
            if tail:
                yield tail


class BufferedRecordWriter(_RowSink):
    """Collects records and sends a block whenever ``buffer_size`` uncompressed bytes are held.

    ``request_callback(block_id, body)`` is called once per block with a re-iterable
    :class:`BlockBody`. Block ids start at ``block_id`` (default 0) and continue with
    ``block_id_gen()`` when given, else the previous id + 1; ids outside 0..19999 are
    refused before anything is sent. :meth:`get_blocks_written` lists the ids to commit.
    """

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Callable[[int, BlockBody], Any],
        compress_option: CompressOption | None = None,
        encoding: str = "utf-8",
        buffer_size: int | None = None,
        block_id: int | None = None,
        block_id_gen: Callable[[], int] | None = None,
    ):
        super().__init__(schema, encoding)
        self._request_callback = request_callback
        self._compress_option = compress_option
        self._buffer_size = buffer_size or options.block_buffer_size
        self._block_limit = self._buffer_size
        self._block_id_gen = block_id_gen
        self._block_id = self._check_block_id(block_id or 0)
        self._blocks_written: list[int] = []
        self._bytes_sent = 0
        # Progress hears of rows whenever the block grows by a chunk (and at each block).
        self._report_every = options.chunk_size
        self._report_at = self._report_every
        self._metrics: TunnelMetrics | None = (
            TunnelMetrics(type(self).__name__) if self._clock.enabled else None
        )
        self._sent: list[Future] = []  # blocks in the background, for their metrics
        self._rearm()

    @property
    def block_limit(self) -> int:
        """Where the block being filled is cut: the buffer size, or less when the writer
        shares its memory with others (see sessions/upload.py, WriterMemory)."""
        return self._block_limit

    @block_limit.setter
    def block_limit(self, limit: int) -> None:
        self._block_limit = limit
        self._rearm()

    def _rearm(self) -> None:
        """Stop encoding directly at the next cut: past ``block_limit`` (the block is
        sent) or at ``_report_at`` (progress hears of the rows), whichever comes first."""
        self._arm(min(self._block_limit + 1, self._report_at))

    @property
    def metrics(self) -> TunnelMetrics | None:
        """The sum of the blocks' server costs and the client's own, collected only under
        ``options.enable_client_metrics`` (None otherwise), as pyodps. A block counts
        when its request callback returns the ``odps-tunnel-metrics`` header's text (or a
        ``Future`` of it, for a block sent in the background)."""
        if self._metrics is not None:
            self._collect_sent()
        return self._metrics

    @staticmethod
    def _check_block_id(block_id: int) -> int:
        if not isinstance(block_id, int) or not 0 <= block_id <= MAX_BLOCK_ID:
            raise TunnelError(
                f"block id {block_id!r} is outside 0..{MAX_BLOCK_ID}", block_id=block_id
            )
        return block_id

    @property
    def cur_block_id(self) -> int:
        return self._block_id

    @property
    def n_bytes(self) -> int:
        """Uncompressed bytes encoded so far, sent or buffered."""
        return self._bytes_sent + len(self._buffer)

    def write(self, record: Any) -> None:
        """Write a Record, a row (tuple/list), or a RecordBatch, Table or DataFrame."""
        if self._direct and self._encoder.try_encode(record, self._buffer):
            if len(self._buffer) >= self._limit:
                self._at_limit()
            return
        if self._closed:
            raise TunnelError("write to a closed BufferedRecordWriter")
        started = self._clock.start()
        self._encode(record)
        self._report_rows(0)
        if len(self._buffer) > self._block_limit:
            self._flush()
        self._clock.add_local(started)

    def _at_limit(self) -> None:
        """The buffer reached the limit :meth:`_rearm` set: send the block if it is past
        ``block_limit``, else tell progress about the rows of the last chunk."""
        size = len(self._buffer)
        if size > self._block_limit:
            self._flush()
        else:
            self._report_rows(0)
            self._report_at = size + self._report_every
            self._rearm()

    def _flush(self) -> None:
        self._footer()
        self._report_at = self._report_every
        body = BlockBody(self._buffer, options.chunk_size, self._compress_option)
        block_id = self._block_id
        started = self._clock.start()
        try:
            result = self._request_callback(block_id, body)
        except TunnelError as exc:
            exc.with_context(block_id=block_id)
            raise
        self._clock.add_network(started)
        self._collect_metrics(result)
        self._blocks_written.append(block_id)
        self._bytes_sent += body.raw_size
        self.progress.add(0, body.raw_size)
        log.debug("sent block %d: %d bytes", block_id, body.raw_size)
        self._buffer = bytearray()
        self._rearm()
        next_id = self._block_id_gen() if callable(self._block_id_gen) else block_id + 1
        self._block_id = self._check_block_id(next_id)

    def _collect_metrics(self, server_json: Any) -> None:
        """Add a block's costs to :attr:`metrics`; the client's costs start again at 0."""
        if self._metrics is None:
            return
        if isinstance(server_json, Future):
            self._sent.append(server_json)
        elif isinstance(server_json, str):
            self._metrics += self._clock.metrics(type(self).__name__, server_json)
            self._clock.reset()

    def _collect_sent(self) -> None:
        """Add the costs of the background blocks stored by now (a failed one's error is
        the sender's to report)."""
        waiting = []
        for sent in self._sent:
            if not sent.done():
                waiting.append(sent)
            elif not sent.cancelled() and sent.exception() is None:
                self._collect_metrics(sent.result())
        self._sent = waiting

    def flush(self) -> None:
        """Send what is buffered as a block now (no-op when nothing is buffered).

        pyodps's ``flush`` only moves its encoder's small internal buffer into the block
        buffer; ours has no such buffer, and sends the block (the rows committed are
        the same, in one more block).
        """
        if self.n_records:
            self._flush()

    def flush_all(self) -> None:
        """The same as :meth:`flush`."""
        self.flush()

    def close(self) -> None:
        """Send the last block, if any rows are buffered."""
        if not self._closed:
            self.flush()
            self._closed = True
            self.progress.finish()

    def get_blocks_written(self) -> list[int]:
        """The block ids sent so far: what :meth:`TableUploadSession.commit` needs."""
        return list(self._blocks_written)

    def __enter__(self) -> BufferedRecordWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._closed = True


#: The write() methods that CDirectWrite does the same as.
_TWINNED_WRITES = (RecordWriter.write, BufferedRecordWriter.write)
