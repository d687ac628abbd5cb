"""Upsert sessions of primary-key (transactional) tables, and the :class:`Upsert` stream.

Rows are routed to buckets with the service's key hash (``hasher``): every row of one key
lands in one bucket, so the order of its upserts and deletes is kept. Each bucket has its
own buffer and body; a bucket is sent when its buffer passes ``slot_buffer_size``, all
buckets when the total passes ``max_buffer_size`` and at :meth:`Upsert.flush`. Every
record carries the five hidden columns of protocol §5.10 (``__operation`` is ``U`` or
``D``). Commit is polled until the service reports it committed; a session that is no
longer found while polling has committed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..codec.compression import CompressOption, make_compressor
from ..codec.hasher import RowHasher
from ..codec.partition import PartitionSpec
from ..codec.record import Record
from ..codec.record_codec import RecordEncoder
from ..codec.schema import Column, TableSchema
from ..errors import (
    CommitTimeout,
    InternalServerError,
    SessionStateError,
    SlotReassigned,
    StreamSessionNotFound,
    TunnelConnectionError,
    TunnelError,
    UpsertSessionNotFound,
)
from ..options import options, resolve_timezone
from ..progress import Progress
from ..transport.rest import RestClient
from ..transport.retry import (
    NO_WAIT,
    UPSERT_COMMIT_POLL,
    UPSERT_SEND_ATTEMPTS,
    Attempt,
    RetryPolicy,
    poll,
)
from .table_base import SessionStatus, TableSession

__all__ = ["TableUpsertSession", "Upsert", "UPSERT_COLUMNS"]

log = logging.getLogger(__name__)

#: The hidden columns that follow the data columns of every upserted record.
UPSERT_COLUMNS = (
    Column("__version", "bigint"),
    Column("__app_version", "bigint"),
    Column("__operation", "tinyint"),
    Column("__key_cols", "array<bigint>"),
    Column("__value_cols", "array<bigint>"),
)
_UPSERT, _DELETE = ord("U"), ord("D")
_GONE = (UpsertSessionNotFound, StreamSessionNotFound)


class TableUpsertSession(TableSession):
    """An upsert session (create with :meth:`TableTunnel.create_upsert_session`).

    ``hash_keys`` and ``hasher`` say how rows are bucketed; ``buckets`` maps each bucket id
    to its ``(slot_id, server)``. ``lifecycle`` (hours, 1..24) bounds the session's life;
    ``commit_timeout`` bounds the commit poll.
    """

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        compress_option: CompressOption | None = None,
        slot_num: int = 1,
        commit_timeout: float = 120,
        lifecycle: int | None = None,
        quota_name: str | None = None,
        upsert_id: str | None = None,
        tags: str | list[str] | None = None,
    ):
        super().__init__(client, table, partition_spec, compress_option, quota_name, tags)
        self._slot_num = slot_num
        self._commit_timeout = commit_timeout
        self._lifecycle = lifecycle
        self.hash_keys: list[str] = []
        self.hasher = "default"
        self.enable_partial_update = False
        self._buckets: dict[int, tuple[str, str]] = {}
        self._lock = threading.RLock()
        if upsert_id is None:
            params = {"slotnum": slot_num}
            if lifecycle and 1 <= lifecycle <= 24:
                params["lifecycle"] = lifecycle
            resp = self._request("POST", params=params, retry_post=True)
            self._load(resp.json())
        else:
            self.id = upsert_id
            self.reload()

    def _resource(self) -> str:
        return self._table.resource() + "/upserts"

    def reload(self) -> None:
        """Fetch the session again: status and bucket routes."""
        resp = self._request("GET", params={"upsertid": self.id})
        self._load(resp.json())

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("id", self.id)
        self.status = SessionStatus.parse(data.get("status"))
        if data.get("schema") is not None:
            self.schema = TableSchema.from_json(data["schema"])
        self.hash_keys = list(data.get("hash_key") or self.hash_keys)
        self.hasher = data.get("hasher") or self.hasher
        self.enable_partial_update = bool(data.get("enable_partial_update", False))
        self._quota_name = data.get("quota_name") or self._quota_name
        buckets: dict[int, tuple[str, str]] = {}
        for slot in data.get("slots") or []:
            for bucket in slot.get("buckets") or []:
                buckets[int(bucket)] = (str(slot["slot_id"]), str(slot["worker_addr"]))
        if buckets:
            if sorted(buckets) != list(range(len(buckets))):
                raise TunnelError(
                    f"bucket ids are not 0..{len(buckets) - 1}: {sorted(buckets)}",
                    **self._context(),
                )
            with self._lock:
                self._buckets = buckets

    @property
    def buckets(self) -> dict[int, tuple[str, str]]:
        """A snapshot of bucket id -> (slot id, server)."""
        with self._lock:
            return dict(self._buckets)

    def update_bucket(self, bucket_id: int, server: str | None) -> None:
        """Route ``bucket_id`` to ``server`` (after a slot reassignment), or reload."""
        if not server:
            self.reload()
            return
        with self._lock:
            slot_id, _ = self._buckets[bucket_id]
            for bucket, (sid, _old) in list(self._buckets.items()):
                if sid == slot_id:
                    self._buckets[bucket] = (sid, server)

    def _routed(self, bucket: int = 0, **headers: Any) -> dict[str, Any]:
        return self._headers(**{"odps-tunnel-routed-server": self.buckets[bucket][1]}, **headers)

    def put_bucket(self, bucket: int, record_count: int, body: bytes, encoding: str | None) -> None:
        """Send one bucket's body, following slot reassignments (HTTP 308) at once, up to
        ``options.throttle_retry_times`` times."""

        def put(_: Attempt) -> None:
            slot_id, _server = self.buckets[bucket]
            params = {
                "upsertid": self.id,
                "bucketid": bucket,
                "slotid": slot_id,
                "record_count": record_count,
            }
            try:
                self._request(
                    "PUT",
                    params=params,
                    headers=self._routed(bucket, **{"Content-Encoding": encoding}),
                    data=body,
                    context={"block_id": bucket},
                )
            except SlotReassigned as exc:
                self.update_bucket(bucket, exc.routed_server)
                raise

        policy = RetryPolicy.single(
            "slot moved",
            lambda exc: isinstance(exc, SlotReassigned),
            retries=options.throttle_retry_times,
            backoff=NO_WAIT,
            retry_after=False,
            log_level=logging.INFO,
        )
        try:
            policy.call(put, what=f"bucket {bucket} of upsert session {self.id}")
        except SlotReassigned as exc:
            raise TunnelError(
                f"bucket {bucket} keeps moving", **self._context(block_id=bucket)
            ) from exc

    def new_record(self, values: list[Any] | None = None) -> Record:
        return Record(schema=self.schema, values=values)

    def open_upsert_stream(
        self,
        compress: bool = False,
        max_buffer_size: int | None = None,
        slot_buffer_size: int | None = None,
    ) -> Upsert:
        """An :class:`Upsert` stream writing into this session."""
        option = (self._compress_option or CompressOption()) if compress else None
        return Upsert(
            self.schema,
            self.put_bucket,
            self,
            compress_option=option,
            max_buffer_size=max_buffer_size,
            slot_buffer_size=slot_buffer_size,
        )

    def commit(self, async_: bool = False) -> None:
        """Commit and, unless ``async_``, poll until committed (at most ``commit_timeout``).

        A commit whose answer was lost is retried: the service treats a repeated commit
        of the same session as the same commit, and a session that is gone has committed.
        """
        failure: TunnelError | None = None

        def committed() -> bool:
            nonlocal failure
            failure = None
            try:
                self._request(
                    "POST",
                    params={"upsertid": self.id},
                    headers=self._routed(0, content_length=0),
                    retry_post=True,
                )
                self.reload()
            except _GONE:
                self.status = SessionStatus.Committed
            except (TunnelConnectionError, InternalServerError) as exc:
                log.warning("commit of upsert session %s: %s; checking its state", self.id, exc)
                failure = exc
            if async_ or self.status == SessionStatus.Committed:
                return True
            if self.status not in (SessionStatus.Normal, SessionStatus.Committing):
                raise SessionStateError(
                    f"upsert commit failed: session is {self.status.value}", **self._context()
                )
            return False

        def timed_out() -> CommitTimeout:
            state = (
                f"unreachable ({type(failure).__name__}: {failure.message}); last seen "
                if failure is not None
                else ""
            )
            err = CommitTimeout(
                f"upsert session {state}{self.status.value} after {self._commit_timeout} s",
                **self._context(),
            )
            err.__cause__ = failure
            return err

        poll(
            committed,
            backoff=UPSERT_COMMIT_POLL,
            timeout=self._commit_timeout,
            timeout_error=timed_out,
            what=f"commit of upsert session {self.id}",
        )

    def abort(self) -> None:
        """Abort the session: nothing written through it is committed."""
        self._request("DELETE", params={"upsertid": self.id}, headers=self._routed(0))

    def close(self) -> None:
        """Nothing to release: kept for pyodps compatibility."""


class _Bucket:
    """One bucket's pending records: an encoder and its body buffer."""

    def __init__(self, columns: list[Column], encoding: str):
        self.encoder = RecordEncoder(
            columns,
            tz=resolve_timezone(),
            encoding=encoding,
            string_as_binary=options.string_as_binary,
        )
        self.buffer = bytearray()

    def take(self) -> tuple[int, bytes]:
        count = self.encoder.count
        self.buffer += self.encoder.footer()
        body, self.buffer = bytes(self.buffer), bytearray()
        return count, body


class Upsert:
    """Upserts and deletes rows of a primary-key table through an upsert session.

    ``upsert(record)`` inserts or replaces by primary key; ``delete(record)`` deletes the
    row with that key. ``flush()`` sends the buffered buckets in parallel (a failed bucket
    is re-sent, one already sent is not); ``close()`` flushes and closes the stream. Then
    call :meth:`TableUpsertSession.commit`.
    """

    DEFAULT_MAX_BUFFER_SIZE = 64 * 1024**2
    DEFAULT_SLOT_BUFFER_SIZE = 1024**2

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Any,
        session: TableUpsertSession,
        compress_option: CompressOption | None = None,
        encoding: str = "utf-8",
        max_buffer_size: int | None = None,
        slot_buffer_size: int | None = None,
    ):
        self._schema = schema
        self._callback = request_callback
        self._session = session
        self._compress_option = compress_option
        self._content_encoding = (
            compress_option.algorithm.get_encoding() if compress_option else None
        )
        self._max_buffer_size = max_buffer_size or self.DEFAULT_MAX_BUFFER_SIZE
        self._slot_buffer_size = slot_buffer_size or self.DEFAULT_SLOT_BUFFER_SIZE
        self._ndata = len(schema.simple_columns)
        columns = list(schema.simple_columns) + list(UPSERT_COLUMNS)
        nbuckets = len(session.buckets)
        self._buckets = [_Bucket(columns, encoding) for _ in range(nbuckets)]
        self._key_index = [schema.get_column_index(k) for k in session.hash_keys]
        self._hasher = RowHasher(
            [schema.columns[i].type for i in self._key_index],
            nbuckets,
            session.hasher,
            tz=resolve_timezone(),
        )
        self._buffered = 0
        self._closed = False
        self.progress = Progress("upsert")

    @property
    def n_bytes(self) -> int:
        """Bytes buffered and not sent yet."""
        return self._buffered

    def upsert(self, record: Record | list | tuple) -> None:
        """Insert the row, or replace the row with the same primary key."""
        self._write(record, _UPSERT)

    def delete(self, record: Record | list | tuple) -> None:
        """Delete the row with this record's primary key."""
        self._write(record, _DELETE)

    def _write(self, record: Record | list | tuple, operation: int) -> None:
        if self._closed:
            raise TunnelError("write to a closed Upsert stream")
        values = record.values if isinstance(record, Record) else list(record)
        row = list(values[: self._ndata]) + [None, None, operation, None, []]
        bucket_id = self._hasher.bucket([values[i] for i in self._key_index])
        bucket = self._buckets[bucket_id]
        before = len(bucket.buffer)
        bucket.encoder.encode(row, bucket.buffer)
        self._buffered += len(bucket.buffer) - before
        self.progress.add(1, 0)
        if len(bucket.buffer) > self._slot_buffer_size:
            self._send([bucket_id])
        elif self._buffered > self._max_buffer_size:
            self.flush()

    def flush(self, flush_all: bool = True) -> None:
        """Send buffered buckets: all of them, or only those past ``slot_buffer_size``."""
        limit = 0 if flush_all else self._slot_buffer_size
        self._send([i for i, b in enumerate(self._buckets) if len(b.buffer) > limit])

    def _send(self, bucket_ids: list[int]) -> None:
        pending = {}
        for i in bucket_ids:
            if self._buckets[i].encoder.count:
                pending[i] = self._buckets[i].take()
        if not pending:
            return
        self._buffered = sum(len(b.buffer) for b in self._buckets)

        def send_pending(_: Attempt) -> None:
            """One round: every pending bucket in parallel; raise the first failure."""
            with ThreadPoolExecutor(min(len(pending), 8)) as pool:
                futures = {i: pool.submit(self._put, i, *pending[i]) for i in pending}
            errors = []
            for i, fut in futures.items():
                exc = fut.exception()
                if exc is None:
                    self.progress.add(0, len(pending[i][1]))
                    del pending[i]
                else:
                    errors.append(exc)
            if errors:
                raise errors[0]

        # A failed bucket is sent again after reloading the routes; one sent is not.
        RetryPolicy.single(
            "failure",
            lambda exc: isinstance(exc, TunnelError),
            retries=UPSERT_SEND_ATTEMPTS - 1,
            backoff=NO_WAIT,
            retry_after=False,
        ).call(
            send_pending,
            what=f"buckets of upsert session {self._session.id}",
            before_retry=self._session.reload,
        )

    def _put(self, bucket: int, count: int, body: bytes) -> None:
        compressor = make_compressor(self._compress_option)
        if compressor is not None:
            body = compressor.compress(body) + compressor.flush()
        self._callback(bucket, count, body, self._content_encoding)

    def close(self) -> None:
        """Flush every bucket and close the stream."""
        if not self._closed:
            self.flush()
            self._closed = True
            self.progress.finish()

    def __enter__(self) -> Upsert:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._closed = True
