"""Table upload sessions: blocks written in parallel, then one atomic commit.

Guarantees beyond the bare protocol:

* a buffered writer alone on its session sends a finished block in the background while
  the next one fills, so encoding and sending overlap (an error of a background send is
  raised by the next ``write``, ``flush`` or ``close``);
* the buffered writers open on one session share one memory budget (:class:`WriterMemory`):
  one writer alone cuts at ``buffer_size`` as in pyodps; n > 1 of them cut their blocks
  at ``buffer_size / n`` (never below :data:`MIN_BLOCK_SIZE`) and send them themselves,
  so together they hold about one ``buffer_size`` however many threads write;
* a failed block PUT is re-sent whole (a block id is idempotent: the last complete PUT of
  an id wins), by the transport for connection failures, 5xx and throttling, and by the
  writer when ``on_exception`` says so; a block streamed under an explicit id is spooled
  as it goes out (``resend``), so it can be sent again too;
* buffered writers of one session draw block ids from one thread-safe generator
  (:attr:`TableUploadSession.block_id_gen`), so any number of threads can write at once;
  across processes, give each process its own ids (``initial_block_id`` or
  ``block_id_gen``, e.g. ``itertools.count(k, n).__next__`` for process k of n);
* ``commit(blocks)`` first compares ``blocks`` with the server's block list and names the
  missing and extra blocks; a commit whose answer was lost is verified by reloading the
  session (closed with the same blocks means it committed) instead of failing or
  re-uploading.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..codec.compression import CompressOption
from ..codec.partition import PartitionSpec
from ..codec.schema import TableSchema
from ..errors import (
    BlockListMismatch,
    InternalServerError,
    SessionStateError,
    StatusConflict,
    TunnelConnectionError,
    TunnelError,
)
from ..io.arrow_writer import ArrowWriter, BufferedArrowWriter, arrow_compress_option
from ..io.record_writer import MAX_BLOCK_ID, BufferedRecordWriter, RecordWriter
from ..io.resend import send_resendable
from ..transport.rest import RestClient
from ..transport.retry import NO_WAIT, Attempt, RetryPolicy
from .table_base import SessionStatus, StatusEnum, TableSession

__all__ = [
    "TableUploadSession",
    "TableUploadStatus",
    "BlockIdGenerator",
    "WriterMemory",
    "MIN_BLOCK_SIZE",
]

log = logging.getLogger(__name__)

OnException = Callable[[BaseException], bool] | None
_COMMITTED = (SessionStatus.Closed, SessionStatus.Committed)
# Smallest block a shared budget cuts: smaller blocks cost more in requests than they save,
# and a session holds at most 20,000 blocks.
MIN_BLOCK_SIZE = 1 << 20


class BlockIdGenerator:
    """Hands out block ids ``start, start+1, ...`` to any number of threads, never twice."""

    def __init__(self, start: int = 0):
        self._next = start
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            block_id = self._next
            self._next += 1
        if block_id > MAX_BLOCK_ID:
            raise TunnelError(
                f"no block ids left: the service allows 0..{MAX_BLOCK_ID} per session",
                block_id=block_id,
            )
        return block_id

    def skip_past(self, block_id: int) -> None:
        """Make sure ids up to ``block_id`` are never handed out."""
        with self._lock:
            self._next = max(self._next, block_id + 1)


class WriterMemory:
    """The memory budget that the buffered writers of one session share.

    Each open writer has ``block_limit`` (where it cuts its block) set whenever a writer
    opens or closes. One writer alone cuts at its ``buffer_size`` and sends each block in
    the background while it fills the next, as in pyodps: two blocks at most. n > 1
    writers cut at ``buffer_size / n`` (never below :data:`MIN_BLOCK_SIZE`, nor above the
    buffer size) and send their blocks themselves, while the other writers keep the
    connections busy: together they hold about one ``buffer_size``, however many threads
    write.
    """

    def __init__(self) -> None:
        self._writers: list[Any] = []
        self._lock = threading.Lock()
        self._background = threading.Semaphore(1)

    def join(self, writer: Any, buffer_size: int) -> None:
        with self._lock:
            self._writers.append((writer, buffer_size))
            self._share()

    def leave(self, writer: Any) -> None:
        with self._lock:
            self._writers = [(w, size) for w, size in self._writers if w is not writer]
            self._share()

    def _share(self) -> None:
        n = max(1, len(self._writers))
        for writer, size in self._writers:
            writer.block_limit = max(min(size, MIN_BLOCK_SIZE), size // n)

    def take_background_slot(self) -> bool:
        """Whether a finished block may be sent in the background (then call
        :meth:`release_background_slot` when it is sent): only for a writer alone."""
        return len(self._writers) <= 1 and self._background.acquire(blocking=False)

    def release_background_slot(self) -> None:
        self._background.release()


class _BlockSender:
    """Sends each finished block, in a background thread while the writer fills the next
    when the session's :class:`WriterMemory` allows it, else at once.

    Calling it with a block first waits for this writer's previous block (raising its
    error).
    """

    def __init__(self, put: Callable[[int, Any], Any], memory: WriterMemory):
        self._put = put
        #: The session's shared budget, which the writer joins.
        self.memory = memory
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tunnel-block")
        self._pending: Future | None = None

    def __call__(self, block_id: int, body: Any) -> Any:
        """Send a block; returns what the PUT returned, or its ``Future`` when the block
        goes in the background (the writer reads its metrics from either)."""
        self.wait()
        if not self.memory.take_background_slot():
            return self._put(block_id, body)
        try:
            self._pending = self._pool.submit(self._put, block_id, body)
        except BaseException:
            self.memory.release_background_slot()
            raise
        self._pending.add_done_callback(lambda _: self.memory.release_background_slot())
        return self._pending

    def wait(self) -> None:
        """Wait for the block in flight; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class _PipelinedMixin:
    """Joins a buffered writer to its session's :class:`WriterMemory` and makes its
    ``close`` wait for its block in flight."""

    _sender: _BlockSender

    def _pipeline(self, sender: _BlockSender, buffer_size: int) -> None:
        self._sender = sender
        sender.memory.join(self, buffer_size)

    def _finish(self) -> None:
        self._sender.memory.leave(self)
        self._sender.shutdown()

    def close(self) -> Any:
        try:
            result = super().close()
            self._sender.wait()
            return result
        finally:
            self._finish()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
            return
        super().__exit__(exc_type, exc, tb)
        try:
            self._sender.wait()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.debug("a block send failed while the writer was aborting", exc_info=True)
        self._finish()


class PipelinedRecordWriter(_PipelinedMixin, BufferedRecordWriter):
    """A :class:`BufferedRecordWriter` that sends each block while the next one fills."""

    def __init__(self, schema: TableSchema, sender: _BlockSender, **kw: Any):
        super().__init__(schema, sender, **kw)
        self._pipeline(sender, self._buffer_size)

    def flush(self) -> None:
        """Send what is buffered as a block now and wait until it is stored."""
        super().flush()
        self._sender.wait()


class PipelinedArrowWriter(_PipelinedMixin, BufferedArrowWriter):
    """A :class:`BufferedArrowWriter` that sends each block while the next one fills."""

    def __init__(self, schema: TableSchema, sender: _BlockSender, **kw: Any):
        super().__init__(schema, sender, **kw)
        self._pipeline(sender, self.buffer_size)


class TableUploadSession(TableSession):
    """A block upload session (create with :meth:`TableTunnel.create_upload_session`).

    ``id`` reattaches to the session; ``blocks`` are the block ids the server holds (as of
    the last reload); ``overwrite`` replaces the table or partition at commit;
    ``create_partition`` creates the partition if it does not exist.
    """

    class Status(StatusEnum):
        """The states of a block upload session, as pyodps names them."""

        Unknown = "UNKNOWN"
        Normal = "NORMAL"
        Closing = "CLOSING"
        Closed = "CLOSED"
        Canceled = "CANCELED"
        Expired = "EXPIRED"
        Critical = "CRITICAL"

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        upload_id: str | None = None,
        compress_option: CompressOption | None = None,
        create_partition: bool | None = None,
        overwrite: bool = False,
        quota_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        super().__init__(client, table, partition_spec, compress_option, quota_name, tags)
        self._create_partition = bool(create_partition)
        self._overwrite = overwrite
        self.blocks: list[int] = []
        self.max_field_size: int | None = None
        self.block_id_gen = BlockIdGenerator()
        # The memory and the background send slot its buffered writers share.
        self._writer_memory = WriterMemory()
        if upload_id is None:
            resp = self._session_request("POST", reload=False, retry_post=True)
            self._load(resp.json())
        else:
            self.id = upload_id
            self.reload()

    def reload(self) -> None:
        """Fetch the session again: status and the server's block list."""
        resp = self._session_request("GET", reload=True)
        self._load(resp.json())

    def _session_request(self, method: str, reload: bool, **kw: Any) -> Any:
        """Create (POST) or reload (GET) the session with pyodps's parameters, in its order:
        ``reload=False|True``, ``quotaName``, ``partition``, ``create_partition=true`` (both
        ways, when asked), ``overwrite=true`` (create only, when asked), then ``uploads=1``
        or ``uploadid``."""
        params: list[tuple[str, Any]] = [("reload", str(reload))]
        if self._quota_name:
            params.append(("quotaName", self._quota_name))
        if self._partition_spec:
            params.append(("partition", self._partition_spec.to_param()))
        if self._create_partition:
            params.append(("create_partition", "true"))
        if not reload and self._overwrite:
            params.append(("overwrite", "true"))
        params.append(("uploadid", self.id) if reload else ("uploads", "1"))
        return self._client.request(
            method,
            self._resource(),
            params=params,
            headers=self._headers(content_length=0),
            context=self._context(),
            **kw,
        )

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("UploadID", self.id)
        self.status = self.Status.parse(data.get("Status"))
        self.blocks = sorted(int(b["BlockID"]) for b in data.get("UploadedBlockList") or [])
        if data.get("Schema") is not None:
            self.schema = TableSchema.from_json(data["Schema"])
        self.max_field_size = data.get("MaxFieldSize") or self.max_field_size
        self._quota_name = data.get("QuotaName") or self._quota_name
        if self.blocks:
            self.block_id_gen.skip_past(self.blocks[-1])

    def get_block_list(self) -> list[int]:
        """The block ids the server holds now."""
        self.reload()
        return list(self.blocks)

    # -- writing ------------------------------------------------------------------------------

    def _put_block(
        self, block_id: int, body: Any, arrow: bool, encoding: str | None, on_exception: OnException
    ) -> Any:
        """PUT one block; a re-iterable ``body`` is re-sent at once after a failure that
        ``on_exception(exc)`` does not want raised (``options.retry_times`` times)."""
        flags = ["arrow"] if arrow else []
        headers = self._headers(chunked=True, **{"Content-Encoding": encoding})

        def put(_: Attempt) -> Any:
            try:
                resp = self._request(
                    "PUT",
                    *flags,
                    params={"uploadid": self.id, "blockid": block_id},
                    headers=headers,
                    data=body,
                    context={"block_id": block_id},
                )
            except TunnelError as exc:
                exc.with_context(block_id=block_id)
                raise
            return resp.headers.get("odps-tunnel-metrics")

        policy = RetryPolicy.single(
            "resend", lambda exc: isinstance(exc, Exception), backoff=NO_WAIT, retry_after=False
        )
        return policy.call(
            put,
            what=f"block {block_id} of upload session {self.id}",
            allowed=lambda exc: on_exception is not None and not on_exception(exc),
        )

    def _put_streamed(
        self, block_id: int, chunks: Iterable[bytes], arrow: bool, encoding: str | None
    ) -> Any:
        """PUT a block streamed as it is written; after a broken connection or a 5xx, send
        it again whole from a spooled copy."""
        return send_resendable(
            chunks,
            lambda body, _repeatable: self._put_block(block_id, body, arrow, encoding, None),
            f"block {block_id}",
        )

    def _writer_ids(
        self,
        initial_block_id: int | None,
        block_id_gen: Callable[[], int] | None,
    ) -> tuple[int, Callable[[], int] | None]:
        if block_id_gen is not None:
            return block_id_gen(), block_id_gen
        if initial_block_id is not None:
            return initial_block_id, None
        return self.block_id_gen(), self.block_id_gen

    def _compress(self, compress: bool) -> CompressOption | None:
        if not compress:
            return None
        return self._compress_option or CompressOption()

    def open_record_writer(
        self,
        block_id: int | None = None,
        compress: bool = False,
        buffer_size: int | None = None,
        on_exception: OnException = None,
        initial_block_id: int | None = None,
        block_id_gen: Callable[[], int] | None = None,
    ) -> RecordWriter | BufferedRecordWriter:
        """A record writer: streaming into ``block_id``, or buffered when no id is given.

        A buffered writer cuts a block every ``buffer_size`` bytes (default
        ``options.block_buffer_size``, shared among the session's buffered writers open at
        the same time: see :class:`WriterMemory`). It takes ids from ``block_id_gen``, else
        from ``initial_block_id`` upwards, else from the session's shared generator (which
        never hands out an id this session object wrote explicitly or saw on the server).
        Commit :meth:`~.BufferedRecordWriter.get_blocks_written` (or all writers' lists).
        """
        return self._open_writer(
            False, block_id, compress, buffer_size, on_exception, initial_block_id, block_id_gen
        )

    def open_arrow_writer(
        self,
        block_id: int | None = None,
        compress: bool = False,
        buffer_size: int | None = None,
        on_exception: OnException = None,
        initial_block_id: int | None = None,
        block_id_gen: Callable[[], int] | None = None,
    ) -> Any:
        """An Arrow writer (RecordBatch, Table or DataFrame): streaming into ``block_id``,
        or buffered with the same block-id rules as :meth:`open_record_writer`."""
        return self._open_writer(
            True, block_id, compress, buffer_size, on_exception, initial_block_id, block_id_gen
        )

    def _open_writer(
        self,
        arrow: bool,
        block_id: int | None,
        compress: bool,
        buffer_size: int | None,
        on_exception: OnException,
        initial_block_id: int | None,
        block_id_gen: Callable[[], int] | None,
    ) -> Any:
        """The record or Arrow writer behind the two ``open_*_writer`` methods."""
        option = self._compress(compress)
        if arrow:
            option = arrow_compress_option(option)
        encoding = option.algorithm.get_encoding() if option else None
        if block_id is not None:
            self.block_id_gen.skip_past(block_id)
            streaming = ArrowWriter if arrow else RecordWriter
            return streaming(
                self.schema,
                lambda chunks: self._put_streamed(block_id, chunks, arrow, encoding),
                compress_option=option,
            )
        first, gen = self._writer_ids(initial_block_id, block_id_gen)
        pipelined = PipelinedArrowWriter if arrow else PipelinedRecordWriter
        return pipelined(
            self.schema,
            _BlockSender(
                lambda bid, body: self._put_block(bid, body, arrow, encoding, on_exception),
                self._writer_memory,
            ),
            compress_option=option,
            buffer_size=buffer_size,
            block_id=first,
            block_id_gen=gen,
        )

    # -- commit -------------------------------------------------------------------------------

    def commit(self, blocks: Iterable[int] | int | None) -> None:
        """Commit ``blocks`` (a list, or one block id): they must be exactly the blocks the
        server holds.

        The service answers a second commit with ``StatusConflict``; this method reloads
        first, so calling it again after a success (or after a commit whose answer was
        lost) returns quietly once the server shows the session committed with these
        blocks.
        """
        if isinstance(blocks, int):
            blocks = [blocks]
        expected = sorted({int(b) for b in (blocks or [])})
        self.reload()
        if self.status in _COMMITTED:
            self._check_blocks(expected)
            log.debug("upload session %s was already committed", self.id)
            return
        if self.status != SessionStatus.Normal:
            raise SessionStateError(
                f"cannot commit an upload session in state {self.status.value}",
                **self._context(),
            )
        self._check_blocks(expected)

        def commit_once(_: Attempt) -> None:
            try:
                resp = self._request("POST", params={"uploadid": self.id})
            except (TunnelConnectionError, InternalServerError, StatusConflict) as exc:
                if self._verify_committed(expected, exc):
                    return
                raise
            self._load(resp.json())
            log.debug("committed upload session %s: %d blocks", self.id, len(expected))

        # The transport already retried 5xx answers (protocol §8.3); a broken connection,
        # which it does not retry for a POST, is verified above and, when the commit did not
        # happen, sent again. A conflict is final.
        RetryPolicy.single("connection", lambda exc: isinstance(exc, TunnelConnectionError)).call(
            commit_once, what=f"commit of upload session {self.id}"
        )

    def _check_blocks(self, expected: list[int]) -> None:
        server = set(self.blocks)
        missing = sorted(set(expected) - server)
        extra = sorted(server - set(expected))
        if missing or extra:
            raise BlockListMismatch(
                f"blocks to commit differ from the server's: missing on the server {missing}, "
                f"extra on the server {extra}",
                missing=missing,
                extra=extra,
                **self._context(),
            )

    def _verify_committed(self, expected: list[int], exc: Exception) -> bool:
        """After a failed commit request: did the commit happen anyway?"""
        try:
            self.reload()
        except TunnelError as reload_exc:
            log.warning("cannot verify the commit of %s: %s", self.id, reload_exc)
            return False
        if self.status in _COMMITTED and self.blocks == expected:
            log.warning(
                "commit of upload session %s answered %s, but the session is committed "
                "with the expected %d blocks: done",
                self.id,
                type(exc).__name__,
                len(expected),
            )
            return True
        return False


#: pyodps's module-level name of the upload session states.
TableUploadStatus = TableUploadSession.Status
