"""Upsert sessions of primary-key (transactional) tables, and the :class:`Upsert` stream.

Rows are routed to buckets with the service's key hash (``hasher``): every row of one key
lands in one bucket, so the order of its upserts and deletes is kept. Each bucket has its
own buffer and body; a bucket is sent when its buffer passes ``slot_buffer_size``, all
buckets when the total passes ``max_buffer_size`` and at :meth:`Upsert.flush`. Every
record carries the five hidden columns of protocol §5.10 (``__operation`` is ``U`` or
``D``; ``__value_cols`` lists the columns of a partial update). Each bucket body keeps one
retry trace over all its sends, so a service that already applied it can tell a re-send.
While open, a session is reloaded every ``options.upsert_keepalive_interval`` seconds from
a daemon thread, as pyodps and the Java SDK do, so the service does not expire it. Commit
is polled until the service reports it committed; a session that is no longer found while
polling has committed.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
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
    UPSERT_COMMIT_POLL,
    Attempt,
    RetryTrace,
    poll,
    request_policy,
)
from .slot import Slot
from .table_base import SessionStatus, TableSession

__all__ = ["TableUpsertSession", "Upsert", "UPSERT_COLUMNS", "keepalive_wait"]

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
_LIVE = (SessionStatus.Normal, SessionStatus.Committing)
#: Answers to a bucket PUT after which the session is reloaded (pyodps: bad gateway and
#: gateway timeout may mean the slot's server went away).
_RELOAD_STATUSES = (502, 504)


def _wait(stop: threading.Event, seconds: float) -> bool:
    return stop.wait(seconds)


#: How a keep-alive thread waits ``seconds`` for its ``stop`` event: returns True once
#: stopped, False when it is time to reload. Tests swap it to tick by hand, never sleeping.
keepalive_wait: Callable[[threading.Event, float], bool] = _wait


class _KeepAlive:
    """A daemon thread reloading a session every ``interval`` seconds until stopped.

    It holds the session only weakly, so a session dropped without commit or abort ends
    its thread at the next tick. A failed reload is logged and retried at the next tick;
    a session that is no longer normal or committing stops it (as pyodps's keep-alive).
    """

    def __init__(self, session: TableUpsertSession, interval: float):
        self._stop = threading.Event()
        self._ref = weakref.ref(session)
        self.thread = threading.Thread(
            target=self._run,
            args=(interval,),
            name=f"upsert-keepalive-{session.id}",
            daemon=True,
        )
        self.thread.start()

    def _run(self, interval: float) -> None:
        while not keepalive_wait(self._stop, interval) and self._tick():
            pass

    def _tick(self) -> bool:
        """One reload; whether to go on. The session is referenced only during the reload,
        never while waiting."""
        session = self._ref()
        if session is None:
            return False
        try:
            session.reload()
        except TunnelError as exc:
            log.debug("keep-alive reload of upsert session %s failed: %s", session.id, exc)
            return True
        return session.status in _LIVE

    def stop(self) -> None:
        self._stop.set()


class TableUpsertSession(TableSession):
    """An upsert session (create with :meth:`TableTunnel.create_upsert_session`).

    As in pyodps, ``schema`` is the table's data columns followed by the five hidden
    columns (``UPSERT_*_KEY``; :attr:`data_schema` is without them), ``hash_keys`` and
    ``hasher`` say how rows are bucketed, ``slots`` lists the slots and ``buckets`` maps
    each bucket id to its :class:`Slot`. ``support_partial_update`` says whether the service
    takes partial updates (``Upsert.upsert(record, valid_columns=...)``). ``lifecycle``
    (hours, 1..24) bounds the session's life; ``commit_timeout`` bounds the commit poll.
    The session is reloaded every ``options.upsert_keepalive_interval`` seconds (0: never)
    until it is committed, aborted or closed.
    """

    UPSERT_EXTRA_COL_NUM = 5
    UPSERT_VERSION_KEY = "__version"
    UPSERT_APP_VERSION_KEY = "__app_version"
    UPSERT_OPERATION_KEY = "__operation"
    UPSERT_KEY_COLS_KEY = "__key_cols"
    UPSERT_VALUE_COLS_KEY = "__value_cols"

    class Slots:
        """The slots of a session and the slot of each bucket (pyodps's ``Slots``)."""

        def __init__(self, slot_elements: Iterable[dict[str, Any]]):
            self._slots: list[Slot] = []
            self._buckets: dict[int, Slot] = {}
            for value in slot_elements:
                slot = Slot(str(value["slot_id"]), str(value["worker_addr"]))
                self._slots.append(slot)
                self._buckets.update({int(b): slot for b in value.get("buckets") or []})

        @property
        def buckets(self) -> dict[int, Slot]:
            return self._buckets

        def __len__(self) -> int:
            return len(self._slots)

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
        self.support_partial_update = False
        self.data_schema: TableSchema | None = None
        self._column_ids: dict[str, int] = {}
        self.slots = self.Slots([])
        self._lock = threading.RLock()
        self._keepalive: _KeepAlive | None = None
        if upsert_id is None:
            params = {"slotnum": slot_num}
            if lifecycle and 1 <= lifecycle <= 24:
                params["lifecycle"] = lifecycle
            resp = self._request("POST", params=params, retry_post=True)
            self._load(resp.json())
        else:
            self.id = upsert_id
            self.reload()
        self._start_keepalive()

    @property
    def endpoint(self) -> str:
        """The tunnel endpoint the session talks to."""
        return self._client.endpoint

    def _resource(self) -> str:
        return self._table.resource() + "/upserts"

    def reload(self, init: bool = False) -> None:
        """Fetch the session again: status and bucket routes (``init`` is pyodps's, unused
        there too)."""
        resp = self._request("GET", params={"upsertid": self.id})
        self._load(resp.json())

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("id", self.id)
        self.status = SessionStatus.parse(data.get("status"))
        if data.get("schema") is not None:
            self._load_schema(data["schema"])
        self.hash_keys = list(data.get("hash_key") or self.hash_keys)
        self.hasher = data.get("hasher") or self.hasher
        self.support_partial_update = bool(data.get("enable_partial_update", False))
        self._quota_name = data.get("quota_name") or self._quota_name
        slots = self.Slots(data.get("slots") or [])
        buckets = sorted(slots.buckets)
        if buckets:
            if buckets != list(range(len(buckets))):
                raise TunnelError(
                    f"bucket ids are not 0..{len(buckets) - 1}: {buckets}", **self._context()
                )
            with self._lock:
                self.slots = slots

    def _load_schema(self, data: dict[str, Any]) -> None:
        """The data schema, the schema with the hidden columns, and the ``column_id`` of
        each data column (what partial updates list; position from 1 when not given)."""
        data_schema = TableSchema.from_json(data)
        self.data_schema = data_schema
        self.schema = TableSchema(
            list(data_schema.simple_columns) + list(UPSERT_COLUMNS), data_schema.partitions
        )
        ids = {}
        for position, column in enumerate(data.get("columns") or [], 1):
            ids[column["name"].lower()] = int(column.get("column_id") or position)
        self._column_ids = ids

    def column_ids(self, names: Iterable[str]) -> list[int]:
        """The ``column_id`` of each named data column, in table order (``__value_cols``)."""
        wanted = {n.lower() for n in names}
        unknown = wanted - set(self._column_ids)
        if unknown:
            raise TunnelError(
                f"no such columns for a partial update: {sorted(unknown)}", **self._context()
            )
        return [cid for name, cid in self._column_ids.items() if name in wanted]

    @property
    def buckets(self) -> dict[int, Slot]:
        """A snapshot of bucket id -> :class:`Slot` (a slot's buckets share its object)."""
        with self._lock:
            return dict(self.slots.buckets)

    def get_buckets(self) -> dict[int, Slot]:
        """A snapshot copy of the bucket -> slot map (pyodps's name)."""
        return self.buckets

    def update_buckets(self, bucket_id: int, new_slot_server: str | None) -> None:
        """Route the slot of ``bucket_id`` (all its buckets) to ``new_slot_server`` after a
        slot reassignment; with no server named, reload the session instead."""
        if not new_slot_server:
            self.reload()
            return
        with self._lock:
            slot = self.slots.buckets.get(bucket_id)
            if slot is not None and slot.server != new_slot_server:
                slot.set_server(new_slot_server)

    def _routed(self, bucket: int = 0, **headers: Any) -> dict[str, Any]:
        return self._headers(
            **{"odps-tunnel-routed-server": self.buckets[bucket].server}, **headers
        )

    def put_bucket(
        self,
        bucket: int,
        record_count: int,
        body: bytes,
        encoding: str | None,
        trace: RetryTrace | None = None,
    ) -> None:
        """Send one bucket's body with the tunnel's retry rules, every send carrying
        ``trace`` (protocol §8.3). As pyodps 0.13.2's ``Upsert.flush``: a 308 moves the
        bucket's slot to the server it names (or reloads the session when it names none),
        a 502 or 504 reloads the session, and the body goes out again to the new route."""
        trace = trace or RetryTrace()

        def put(_: Attempt) -> None:
            slot = self.buckets[bucket]
            params = {
                "upsertid": self.id,
                "bucketid": bucket,
                "slotid": slot.slot,
                "record_count": record_count,
            }
            try:
                self._request(
                    "PUT",
                    params=params,
                    headers=self._routed(bucket, **{"Content-Encoding": encoding}),
                    data=body,
                    context={"block_id": bucket},
                    trace=trace,
                    retry=False,
                )
            except SlotReassigned as exc:
                self._reroute(functools.partial(self.update_buckets, bucket, exc.routed_server))
                raise
            except TunnelError as exc:
                if getattr(exc, "status", None) in _RELOAD_STATUSES:
                    self._reroute(self.reload)
                raise

        try:
            request_policy(idempotent=True).call(
                put, what=f"bucket {bucket} of upsert session {self.id} (trace {trace.trace_id})"
            )
        except SlotReassigned as exc:
            raise TunnelError(
                f"bucket {bucket} keeps moving", **self._context(block_id=bucket)
            ) from exc

    def _reroute(self, update: Callable[[], object]) -> None:
        """Refresh the routes after a failed PUT; a failure to do so only waits for the next
        attempt (pyodps ignores it too)."""
        try:
            update()
        except TunnelError as exc:
            log.info("upsert session %s: routes not refreshed: %s", self.id, exc)

    def new_record(self, values: list[Any] | None = None) -> Record:
        """A record of :attr:`schema`; data values given alone get the hidden columns as
        nulls (pyodps pads them the same way)."""
        if values is not None and len(values) == len(self.schema.simple_columns) - len(
            UPSERT_COLUMNS
        ):
            values = list(values) + [None] * len(UPSERT_COLUMNS)
        return Record(schema=self.schema, values=values)

    def open_upsert_stream(
        self,
        compress: bool = False,
        *,
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

    def _start_keepalive(self) -> None:
        """Start the keep-alive reloads of a live session (not when the option is 0)."""
        interval = options.upsert_keepalive_interval
        if interval > 0 and self.status in _LIVE:
            self._keepalive = _KeepAlive(self, interval)

    def _stop_keepalive(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.stop()

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
        if not async_:
            self._stop_keepalive()

    def abort(self) -> None:
        """Abort the session: nothing written through it is committed."""
        self._request("DELETE", params={"upsertid": self.id}, headers=self._routed(0))
        self._stop_keepalive()

    def close(self) -> None:
        """Stop the keep-alive reloads (the session itself stays open on the service)."""
        self._stop_keepalive()


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
    row with that key. ``upsert(record, valid_columns=[...])`` updates only those columns
    of an existing row (a partial update; the session must ``support_partial_update``).
    ``flush()`` sends the buffered buckets in parallel (a failed bucket is re-sent with its
    retry trace, one already sent is not); ``close()`` flushes and closes the stream. Then
    call :meth:`TableUpsertSession.commit`.
    """

    DEFAULT_MAX_BUFFER_SIZE = 64 * 1024**2
    DEFAULT_SLOT_BUFFER_SIZE = 1024**2

    class Operation(enum.Enum):
        UPSERT = "UPSERT"
        DELETE = "DELETE"

    class Status(enum.Enum):
        NORMAL = "NORMAL"
        ERROR = "ERROR"
        CLOSED = "CLOSED"

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
        self._ndata = len(schema.simple_columns) - len(UPSERT_COLUMNS)
        columns = list(schema.simple_columns)
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
        self._status = Upsert.Status.NORMAL
        self.progress = Progress("upsert")

    @property
    def status(self) -> Upsert.Status:
        """``NORMAL`` while writable, ``CLOSED`` after :meth:`close`, ``ERROR`` after a
        failure inside its ``with`` block."""
        return self._status

    @property
    def n_bytes(self) -> int:
        """Bytes buffered and not sent yet."""
        return self._buffered

    def upsert(
        self, record: Record | list | tuple, *, valid_columns: list[str] | None = None
    ) -> None:
        """Insert the row, or replace the row with the same primary key; with
        ``valid_columns``, update only those columns of it."""
        self._write(record, Upsert.Operation.UPSERT, valid_columns)

    def delete(self, record: Record | list | tuple) -> None:
        """Delete the row with this record's primary key."""
        self._write(record, Upsert.Operation.DELETE)

    def _check_status(self) -> None:
        if self._status == Upsert.Status.CLOSED:
            raise TunnelError("write to a closed Upsert stream", session_id=self._session.id)
        if self._status == Upsert.Status.ERROR:
            raise TunnelError("write to an Upsert stream that failed", session_id=self._session.id)

    def _value_cols(self, valid_columns: list[str] | None) -> list[int]:
        """``__value_cols``: empty for a whole row, else the ``column_id``s to update."""
        if valid_columns is None:
            return []
        if not self._session.support_partial_update:
            raise TunnelError(
                "partial update (valid_columns) is not enabled for this upsert session",
                session_id=self._session.id,
            )
        return self._session.column_ids(valid_columns)

    def _write(
        self,
        record: Record | list | tuple,
        operation: Upsert.Operation,
        valid_columns: list[str] | None = None,
    ) -> None:
        self._check_status()
        values = record.values if isinstance(record, Record) else list(record)
        op = _UPSERT if operation == Upsert.Operation.UPSERT else _DELETE
        value_cols = self._value_cols(valid_columns)
        row = list(values[: self._ndata]) + [None, None, op, None, value_cols]
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
        self._check_status()
        limit = 0 if flush_all else self._slot_buffer_size
        self._send([i for i, b in enumerate(self._buckets) if len(b.buffer) > limit])

    def _send(self, bucket_ids: list[int]) -> None:
        """Send the buffered buckets in parallel, each with its own retry trace and loop
        (:meth:`TableUpsertSession.put_bucket`); raise the first failure once all are done."""
        pending = {}
        for i in bucket_ids:
            if self._buckets[i].encoder.count:
                pending[i] = (*self._buckets[i].take(), RetryTrace())
        if not pending:
            return
        self._buffered = sum(len(b.buffer) for b in self._buckets)
        with ThreadPoolExecutor(min(len(pending), 8)) as pool:
            futures = {i: pool.submit(self._put, i, *pending[i]) for i in pending}
        errors = []
        for i, fut in futures.items():
            exc = fut.exception()
            if exc is None:
                self.progress.add(0, len(pending[i][1]))
            else:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _put(self, bucket: int, count: int, body: bytes, trace: RetryTrace) -> None:
        compressor = make_compressor(self._compress_option)
        if compressor is not None:
            body = compressor.compress(body) + compressor.flush()
        self._callback(bucket, count, body, self._content_encoding, trace)

    def close(self) -> None:
        """Flush every bucket and close the stream."""
        if self._status == Upsert.Status.NORMAL:
            self.flush()
            self._status = Upsert.Status.CLOSED
            self.progress.finish()

    def __enter__(self) -> Upsert:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._status = Upsert.Status.ERROR
