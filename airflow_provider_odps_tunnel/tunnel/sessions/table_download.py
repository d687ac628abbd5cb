"""Table download sessions: a snapshot of a table (partition) read by row ranges.

Readers resume by themselves: when a body breaks (reset, timeout, truncation, bad CRC),
the reader re-requests ``rowrange=(start + cursor, count - cursor)`` and carries on from
the first row it had not delivered yet, so no row is lost or repeated.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..codec.compression import CompressOption
from ..codec.partition import PartitionSpec
from ..codec.record import Record
from ..codec.record_codec import encode_rows
from ..codec.schema import TableSchema
from ..errors import DataStreamError, SessionStateError, TunnelTimeoutError
from ..io.metrics import TunnelMetrics
from ..io.reader_api import RecordReaderAPI
from ..io.record_reader import TunnelRecordReader
from ..options import options
from ..transport.rest import RestClient, open_body
from ..transport.retry import DOWNLOAD_INIT_POLL, poll
from .table_base import StatusEnum, TableSession

__all__ = [
    "DownloadSessionBase",
    "TableDownloadSession",
    "TableDownloadStatus",
    "BufferedRecordReader",
    "MIN_RAW_BATCH_SIZE",
    "open_body",
]

OnException = Callable[[BaseException], bool] | None
#: Smallest ``raw_size`` a buffered reader asks for (as pyodps): a byte budget below it
#: would make a request per handful of rows.
MIN_RAW_BATCH_SIZE = 1 << 20


class DownloadSessionBase(TableSession):
    """What table and instance download sessions share: creating or reattaching to the
    session, its state (``status``, ``count``, ``schema``), reloading it, and opening
    readers of row ranges that resume by themselves.

    A subclass sets what it needs for :meth:`_create` (the POST that creates the session)
    before calling ``__init__``; ``download_id`` reattaches instead.
    """

    Status: type[StatusEnum]
    _kind = "download"
    # Statuses in which the session can serve no more reads.
    _unusable_states: tuple[str, ...] = ("EXPIRED",)

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        download_id: str | None,
        compress_option: CompressOption | None,
        quota_name: str | None,
        tags: str | list[str] | None,
    ):
        super().__init__(client, table, partition_spec, compress_option, quota_name, tags)
        self.count = 0
        self.support_read_by_raw_size = False
        if download_id is None:
            self._create()
        else:
            self.id = download_id
            self.reload()

    def _create(self) -> None:
        raise NotImplementedError

    def reload(self) -> None:
        """Fetch the session's state again (status, count, schema)."""
        resp = self._request("GET", params={"downloadid": self.id})
        self._load(resp.json())

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("DownloadID", self.id)
        self.status = self.Status.parse(data.get("Status"))
        self.count = int(data.get("RecordCount") or 0)
        if data.get("Schema") is not None:
            self.schema = TableSchema.from_json(data["Schema"])
        self._quota_name = data.get("QuotaName") or self._quota_name
        self.support_read_by_raw_size = bool(data.get("SupportReadByRawSize", False))
        if self.status in self._unusable_states:
            raise SessionStateError(
                f"the {self._kind} session is {self.status.value.lower()}", **self._context()
            )

    # -- bodies ------------------------------------------------------------------------------

    def _open_stream(
        self,
        start: int,
        count: int,
        compress: bool,
        columns: list[str] | None,
        arrow: bool,
        raw_size: int | None = None,
    ) -> BinaryIO:
        if count <= 0:  # a resume at the very end: an empty, valid body
            from ..codec.arrow_framing import EMPTY_BODY

            return io.BytesIO(EMPTY_BODY if arrow else encode_rows([], []))
        flags = ["data", "arrow"] if arrow else ["data"]
        params: dict[str, Any] = {"downloadid": self.id, "rowrange": f"({start},{count})"}
        if columns:
            params["columns"] = ",".join(columns)
        if raw_size:
            params["raw_size"] = str(raw_size)
        accept = None
        if compress:
            option = self._compress_option or CompressOption()
            accept = option.algorithm.get_encoding()
        resp = self._request(
            "GET",
            *flags,
            params=params,
            headers=self._headers(content_length=0, **{"Accept-Encoding": accept}),
            stream=True,
            context={"row_range": f"({start},{count})"},
        )
        return open_body(resp)

    def _wire_names(self, columns: list[str] | None) -> list[str] | None:
        """The ``columns=`` of a request: requested data columns, in table order."""
        if not columns:
            return None
        wanted = {c.lower() for c in columns}
        return [c.name for c in self.schema.simple_columns if c.name.lower() in wanted]

    def _check_range(self, start: int, count: int) -> int:
        if start < 0 or count < 0:
            raise ValueError(f"invalid row range start={start} count={count}")
        return max(0, min(count, self.count - start))

    # -- readers ----------------------------------------------------------------------------

    def _record_reader(
        self,
        start: int,
        count: int,
        compress: bool,
        columns: list[str] | None,
        append_partitions: bool,
        buffered: bool,
        row_batch_size: int | None,
        on_exception: OnException,
        buffer_size: int | None = None,
    ) -> TunnelRecordReader | BufferedRecordReader:
        """A :class:`TunnelRecordReader` over rows ``start .. start+count`` (or, with
        ``buffered``, a :class:`BufferedRecordReader` of ``row_batch_size``-row requests),
        re-opening the body at the first undelivered row.

        A buffered reader of a session that supports it (``support_read_by_raw_size``)
        also caps each request at ``buffer_size`` bytes (``raw_size``, at least
        :data:`MIN_RAW_BATCH_SIZE`), as pyodps does; the service then answers fewer rows
        and the next request starts after the last row received."""
        count = self._check_range(start, count)
        raw_size = None
        if buffered and self.support_read_by_raw_size:
            raw_size = max(MIN_RAW_BATCH_SIZE, buffer_size or options.block_buffer_size)

        def reader_for(first: int, n: int) -> TunnelRecordReader:
            holder: list[TunnelRecordReader] = []

            def stream_creator(start_row: int) -> BinaryIO:
                wire = holder[0].wire_columns if columns else None
                names = [c.name for c in wire] if wire else None
                return self._open_stream(
                    first + start_row, n - start_row, compress, names, False, raw_size
                )

            reader = TunnelRecordReader(
                self.schema,
                stream_creator,
                columns=columns,
                partition_spec=self._partition_spec,
                append_partitions=append_partitions,
                on_exception=on_exception,
            )
            holder.append(reader)
            return reader

        if not buffered:
            return reader_for(start, count)
        return BufferedRecordReader(start, count, row_batch_size or 2048, reader_for)

    def _arrow_reader(
        self,
        start: int,
        count: int,
        compress: bool,
        columns: list[str] | None,
        on_exception: OnException,
        **reader_options: Any,
    ) -> Any:
        """A :class:`~.arrow_reader.TunnelArrowReader` over rows ``start .. start+count``,
        re-opening the body at the first undelivered row."""
        from ..io.arrow_reader import TunnelArrowReader

        count = self._check_range(start, count)
        names = self._wire_names(columns)

        def stream_creator(start_row: int) -> BinaryIO:
            return self._open_stream(start + start_row, count - start_row, compress, names, True)

        return TunnelArrowReader(
            self.schema,
            stream_creator,
            columns=columns,
            on_exception=on_exception,
            **reader_options,
        )


class TableDownloadSession(DownloadSessionBase):
    """A download session of a table or partition (create with
    :meth:`TableTunnel.create_download_session`).

    ``id`` reattaches to the session from anywhere; ``count`` is the number of rows of the
    snapshot; ``schema`` its schema. With ``async_mode`` the service may prepare the
    snapshot in the background: the session is polled (0.1 s doubling to 5 s) until it is
    ready, for at most ``timeout`` seconds (default ``options.async_poll_timeout``).
    ``async_`` is pyodps's other name of ``async_mode``.
    """

    class Status(StatusEnum):
        """The states of a table download session, as pyodps names them."""

        Unknown = "UNKNOWN"
        Normal = "NORMAL"
        Closes = "CLOSES"
        Expired = "EXPIRED"
        Initiating = "INITIATING"

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        download_id: str | None = None,
        compress_option: CompressOption | None = None,
        async_mode: bool = True,
        timeout: float | None = None,
        quota_name: str | None = None,
        tags: str | list[str] | None = None,
        *,
        async_: bool | None = None,
    ):
        self._async_mode = async_mode if async_ is None else async_
        self._timeout = timeout
        super().__init__(
            client, table, partition_spec, download_id, compress_option, quota_name, tags
        )

    def _create(self) -> None:
        params = {"asyncmode": "true"} if self._async_mode else {}
        resp = self._request("POST", "downloads", params=params, retry_post=True)
        self._load(resp.json())
        if self.status != self.Status.Initiating:
            return
        timeout = options.async_poll_timeout if self._timeout is None else self._timeout
        poll(
            self._reloaded_ready,
            backoff=DOWNLOAD_INIT_POLL,
            timeout=timeout,
            timeout_error=lambda: TunnelTimeoutError(
                f"download session still initiating after {timeout} s", **self._context()
            ),
            what=f"download session {self.id}",
            check_first=False,
        )

    def _reloaded_ready(self) -> bool:
        self.reload()
        return self.status != self.Status.Initiating

    def open_record_reader(
        self,
        start: int,
        count: int,
        compress: bool = False,
        columns: list[str] | None = None,
        append_partitions: bool = True,
        buffered: bool = False,
        buffer_size: int | None = None,
        row_batch_size: int | None = None,
        on_exception: OnException = None,
    ) -> TunnelRecordReader | BufferedRecordReader:
        """A reader of rows ``start .. start+count`` as :class:`Record` objects.

        ``columns`` selects and orders columns (partition columns may be named);
        ``append_partitions`` adds the partition values after the data columns when no
        columns are given. ``buffered`` reads in requests of ``row_batch_size`` rows
        (default 2048) instead of one long request; when the session supports it, each
        request is also capped at ``buffer_size`` bytes (``raw_size``).
        ``on_exception(exc)`` is asked on each failure: True raises, anything else resumes.
        """
        return self._record_reader(
            start,
            count,
            compress,
            columns,
            append_partitions,
            buffered,
            row_batch_size,
            on_exception,
            buffer_size,
        )

    def open_arrow_reader(
        self,
        start: int,
        count: int,
        compress: bool = False,
        columns: list[str] | None = None,
        append_partitions: bool = False,
        on_exception: OnException = None,
        buffered: bool = False,
    ) -> Any:
        """A reader of rows ``start .. start+count`` as Arrow record batches
        (:class:`~.arrow_reader.TunnelArrowReader`); resumes like the record reader."""
        if buffered:
            raise ValueError("the Arrow reader has no buffered mode")
        return self._arrow_reader(
            start,
            count,
            compress,
            columns,
            on_exception,
            partition_spec=self._partition_spec,
            append_partitions=append_partitions,
        )


class BufferedRecordReader(RecordReaderAPI):
    """Reads a row range as consecutive requests of at most ``batch`` rows each.

    Short requests keep every connection well below the service's 300 s limit; each
    request resumes on failure like an ordinary reader. A request may answer fewer rows
    than asked (a ``raw_size`` byte cap): the next one starts after the last row received.
    It has pyodps's record-reader surface (:class:`~..io.reader_api.RecordReaderAPI`);
    ``n_bytes`` adds up the requests, and ``metrics`` sums theirs under
    ``options.enable_client_metrics`` (None otherwise), as pyodps's.
    """

    def __init__(
        self,
        start: int,
        count: int,
        batch: int,
        reader_for: Callable[[int, int], TunnelRecordReader],
    ):
        self._next = start
        self._end = start + count
        self._batch = batch
        self._reader_for = reader_for
        self._current: TunnelRecordReader | None = None
        self._done = 0
        probe = reader_for(start, 0)
        self.columns = probe.columns
        self._schema = probe.schema
        self._past_bytes = 0
        self._metrics = (
            TunnelMetrics(type(self).__name__) if options.enable_client_metrics else None
        )

    @property
    def schema(self) -> TableSchema:
        """The table's schema (pyodps's ``reader.schema``)."""
        return self._schema

    @property
    def n_bytes(self) -> int:
        """Body bytes decoded so far, over every request."""
        return self._past_bytes + (self._current.n_bytes if self._current else 0)

    def get_total_bytes(self) -> int:
        """The same as :attr:`n_bytes` (pyodps's name)."""
        return self.n_bytes

    @property
    def metrics(self) -> TunnelMetrics | None:
        """The finished requests' metrics, summed (see the class)."""
        return self._metrics

    def _finish_request(self, reader: TunnelRecordReader) -> None:
        self._past_bytes += reader.n_bytes
        request = reader.metrics
        if self._metrics is not None and request is not None:
            request.owner = self._metrics.owner  # the request's costs count for this reader
            self._metrics += request

    @property
    def count(self) -> int:
        """Rows delivered so far."""
        return self._done + (self._current.count if self._current else 0)

    def _advance(self) -> bool:
        """Open the reader of the next request; False when the range is read."""
        if self._current is not None:
            got = self._current.count
            if got == 0:  # a complete body without rows: going on would loop forever
                raise DataStreamError(
                    f"the service answered no rows for ({self._next},"
                    f"{min(self._batch, self._end - self._next)})",
                    row_range=f"({self._next},{self._end - self._next})",
                )
            self._done += got
            self._next += got
            self._finish_request(self._current)
        self._current = None
        if self._next >= self._end:
            return False
        self._current = self._reader_for(self._next, min(self._batch, self._end - self._next))
        return True

    def _readers(self) -> Iterator[TunnelRecordReader]:
        while self._advance():
            yield self._current

    def read(self) -> Record | None:
        """The next record, or None at the end."""
        while True:
            if self._current is not None:
                record = self._current.read()
                if record is not None:
                    return record
            if not self._advance():
                return None

    def iter_tuples(self) -> Iterator[tuple]:
        """Rows as tuples: the fast path, with no Record per row."""
        if self._current is not None:
            yield from self._current.iter_tuples()
        for reader in self._readers():
            yield from reader.iter_tuples()

    def _frame_rows(self, start: int | None, end: int | None, step: int | None) -> Iterator[tuple]:
        """Every remaining row takes the tuple path, with no Record per row."""
        if not start and end is None and (step or 1) == 1:
            return self.iter_tuples()
        return super()._frame_rows(start, end, step)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        self._next = self._end
        self._current = None

    def __enter__(self) -> BufferedRecordReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: pyodps's module-level name of the download session states.
TableDownloadStatus = TableDownloadSession.Status
