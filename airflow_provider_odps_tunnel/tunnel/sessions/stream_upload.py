"""Stream upload sessions: every flushed batch is committed by the service on arrival.

The session follows pyodps 0.13.2's ``TableStreamUploadSession`` (``odps/tunnel/tabletunnel.py``):

* Each writer takes one slot (:class:`TableStreamUploadSession.Slots`, round robin from a
  random start) and sends all its batches there. The answer of every PUT names the slot's
  server and the slot count; :meth:`~TableStreamUploadSession.reload_slots` follows them
  (another count: reload the session; another server: re-route the slot).
* A batch PUT is retried by the tunnel's rules (``transport.retry.request_policy``); after a
  502 or 504 the session is reloaded first and the writer moves to the current slot.
* Every send of one batch carries the same ``odps-tunnel-retry-trace-id`` and the next
  ``odps-tunnel-retry-index``: a batch whose answer was lost (connection cut or read timeout
  after the whole body was sent) is sent again, and a service that de-duplicates by trace id
  (the emulator does; pyodps and the Java SDK send the pair for that purpose) stores it once.
  Against a service that does not, such a re-send may store the batch twice, exactly as
  pyodps's re-send would.
* ``reload(force=False)`` runs at most once per ``options.stream_reload_throttle`` seconds
  and skips while another thread reloads; ``get_last_batch_id`` and
  ``get_last_batch_commit_time`` use such a read-only reload, so they may be that stale.
* With ``allow_schema_mismatch=False`` and no ``schema_version``, the session is created at
  the table's current schema version (read from the table's metadata), again with a fresh
  version for as long as the service answers ``NoSuchSchema``. A PUT refused with
  ``SchemaModified`` (412) is raised: the writer's records follow the old schema.
"""

from __future__ import annotations

import datetime as _dt
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from ..codec.compression import CompressOption
from ..codec.partition import PartitionSpec
from ..codec.schema import TableSchema
from ..errors import NoSuchSchema, TunnelError
from ..io.record_writer import BlockBody, BufferedRecordWriter
from ..options import options
from ..transport import retry
from ..transport.rest import RestClient
from ..transport.retry import Attempt, Backoff, RetryPolicy, RetryRule, RetryTrace
from .slot import Slot
from .table_base import SessionStatus, TableSession

__all__ = ["TableStreamUploadSession", "StreamRecordWriter"]

log = logging.getLogger(__name__)

# Gateway answers after which pyodps reloads the routes before the next try.
_GATEWAY_STATUSES = (502, 504)


class TableStreamUploadSession(TableSession):
    """A stream upload session (create with
    :meth:`TableTunnel.create_stream_upload_session`); ``upload_id`` reattaches to it."""

    class Slots:
        """The session's slots, handed out round robin from a random start (as pyodps);
        :meth:`next` is thread-safe."""

        def __init__(self, slot_elements: Any, slot_idx: int | None = None):
            self._slots: list[Slot] = []
            for value in slot_elements or []:
                if len(value) != 2:
                    raise TunnelError(f"invalid slot route {value!r}")
                self._slots.append(Slot(str(value[0]), str(value[1])))
            if slot_idx is not None:
                self._idx = slot_idx
            else:
                self._idx = random.randrange(len(self._slots)) if self._slots else 0
            self._lock = threading.Lock()

        def __len__(self) -> int:
            return len(self._slots)

        def next(self) -> Slot | None:
            """The next slot in round-robin order (None when there are none)."""
            if not self._slots:
                return None
            with self._lock:
                slot = self._slots[self._idx % len(self._slots)]
                self._idx += 1
                return slot

        def __next__(self) -> Slot | None:
            return self.next()

        def current(self) -> Slot | None:
            """The slot :meth:`next` returned last."""
            if not self._slots:
                return None
            with self._lock:
                return self._slots[(self._idx - 1) % len(self._slots)]

        def find(self, slot_id: Any) -> Slot | None:
            """The slot of that id, if the session still has it."""
            return next((s for s in self._slots if s.slot == slot_id), None)

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        compress_option: CompressOption | None = None,
        quota_name: str | None = None,
        create_partition: bool = False,
        zorder_columns: str | list[str] | None = None,
        schema_version: str | None = None,
        allow_schema_mismatch: bool = True,
        upload_id: str | None = None,
        tags: str | list[str] | None = None,
        schema_version_reloader: Callable[[], Any] | None = None,
        slot_num: int = 0,
        dynamic_partition: bool = False,
    ):
        super().__init__(client, table, partition_spec, compress_option, quota_name, tags)
        self._create_partition = create_partition
        if zorder_columns is not None and not isinstance(zorder_columns, str):
            zorder_columns = ",".join(zorder_columns)
        self._zorder_columns = zorder_columns
        self.schema_version = None if schema_version is None else str(schema_version)
        self._allow_schema_mismatch = allow_schema_mismatch
        self._schema_version_reloader = schema_version_reloader
        self._slot_num = slot_num
        self._dynamic_partition = dynamic_partition
        self.slots = self.Slots([])
        self.last_batch_id: int | None = None
        self.last_batch_commit_time: _dt.datetime | None = None
        self._reloading = threading.Lock()
        self._last_reload_time: float | None = None
        if upload_id is not None:
            self.id = upload_id
            self.reload()
        elif not allow_schema_mismatch and not schema_version:
            self._create_at_latest_version()
        else:
            self._create()

    def _resource(self) -> str:
        return self._table.resource() + "/streams"

    def _write_params(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "zorder_columns": self._zorder_columns,
            "dynamic_partition": "true" if self._dynamic_partition else None,
            "check_latest_schema": str(not self._allow_schema_mismatch).lower(),
        }

    def _create(self) -> None:
        flags = ["create_partition"] if self._create_partition else []
        slots = str(self._slot_num) if self._slot_num > 0 else None
        headers = self._headers(
            content_length=0, **{"odps-slot-num": slots, "odps-tunnel-slot-num": slots}
        )
        resp = self._request(
            "POST", *flags, params=self._write_params(), headers=headers, retry_post=True
        )
        self._load(resp.json())

    def _create_at_latest_version(self) -> None:
        """Create at the table's current schema version, read again (and the create sent
        again) for as long as the service answers ``NoSuchSchema``, as pyodps does."""
        if self._schema_version_reloader is None:
            raise TunnelError(
                "allow_schema_mismatch=False needs a schema_version or a way to read the "
                "table's (create the session through TableTunnel)",
                **self._context(),
            )

        def attempt(_: Attempt) -> None:
            version = self._schema_version_reloader()
            self.schema_version = None if version is None else str(version)
            self._create()

        rule = RetryRule(
            "schema version changed",
            lambda exc: isinstance(exc, NoSuchSchema),
            None,
            Backoff(options.retry_delay, 1.0),
        )
        RetryPolicy((rule,), deadline=options.tunnel_retry_deadline).call(
            attempt, what=f"creating a stream session of {self._table}"
        )

    def reload(self, force: bool = False, readonly: bool = False) -> None:
        """Fetch the session again: status, schema, slot routes, last batch.

        Without ``force`` this runs at most once per ``options.stream_reload_throttle``
        seconds and not while another thread reloads (it then returns at once); with
        ``force`` it always fetches, waiting for a reload in progress. ``readonly`` asks
        the service not to touch the routing state (``read_only=true``), for monitoring.
        """
        if not force:
            throttle = options.stream_reload_throttle
            last = self._last_reload_time
            if last is not None and retry.clock.monotonic() - last < throttle:
                return
            if not self._reloading.acquire(blocking=False):
                return
        else:
            self._reloading.acquire()
        try:
            params = {
                "uploadid": self.id,
                "schema_version": self.schema_version,
                "read_only": "true" if readonly else None,
            }
            resp = self._request("GET", params=params)
            self._load(resp.json(), keep_position=True)
            self._last_reload_time = retry.clock.monotonic()
        finally:
            self._reloading.release()

    def _load(self, data: dict[str, Any], keep_position: bool = False) -> None:
        self.id = data.get("session_name", self.id)
        self.status = SessionStatus.parse(data.get("status") or "normal")
        if data.get("schema") is not None:
            self.schema = TableSchema.from_json(data["schema"])
        if data.get("schema_version") not in (None, ""):
            self.schema_version = str(data["schema_version"])
        self._quota_name = data.get("QuotaName") or data.get("quota_name") or self._quota_name
        if data.get("last_batch_id") not in (None, ""):
            self.last_batch_id = int(data["last_batch_id"])
        if data.get("last_batch_commit_time") not in (None, ""):
            millis = int(data["last_batch_commit_time"])
            self.last_batch_commit_time = _dt.datetime.fromtimestamp(millis / 1000.0)
        position = self.slots._idx if keep_position else None
        slots = self.Slots(data.get("slots"), position)
        if not len(slots):
            raise TunnelError("the stream session has no slots", **self._context())
        self.slots = slots

    def abort(self) -> None:
        """Close the session; batches already written stay committed."""
        slot = self.slots.next()
        headers = self._headers(content_length=0, **{"odps-tunnel-routed-server": slot.server})
        self._request("POST", params={"uploadid": self.id}, headers=headers, retry_post=True)

    def reload_slots(self, slot: Slot, server: str, slot_num: int) -> None:
        """Follow a PUT's answer: another slot count reloads the session (forced);
        otherwise another server re-routes ``slot``."""
        if len(self.slots) != slot_num:
            self.reload(force=True)
        elif slot.server != server:
            slot.set_server(server)

    def get_last_batch_id(self) -> int | None:
        """The id of the last committed batch (None before the first), from a read-only
        reload throttled by ``options.stream_reload_throttle``: up to that stale."""
        self.reload(force=False, readonly=True)
        return self.last_batch_id

    def get_last_batch_commit_time(self) -> _dt.datetime | None:
        """When the last batch was committed (local naive datetime, as pyodps), from a
        read-only reload throttled like :meth:`get_last_batch_id`."""
        self.reload(force=False, readonly=True)
        return self.last_batch_commit_time

    def _put_batch(self, writer: StreamRecordWriter, body: BlockBody, encoding: str | None) -> Any:
        """PUT one batch to the writer's slot under the tunnel's retry rules, every send
        with the batch's one retry trace; returns the answer."""
        trace = RetryTrace()

        def put(_: Attempt) -> Any:
            slot = self.slots.find(writer.slot.slot) or writer.slot
            headers = self._headers(
                chunked=True,
                **{
                    "odps-tunnel-slot-num": str(len(self.slots)),
                    "odps-tunnel-routed-server": slot.server,
                    "Content-Encoding": encoding,
                },
            )
            params = {"uploadid": self.id, "slotid": slot.slot, **self._write_params()}
            try:
                return self._request(
                    "PUT", params=params, headers=headers, data=body, retry=False, trace=trace
                )
            except TunnelError as exc:
                if exc.status in _GATEWAY_STATUSES:
                    self._move_after_gateway_error(writer)
                raise

        resp = retry.request_policy(idempotent=True).call(
            put, what=f"stream batch of session {self.id} (retry trace {trace.trace_id})"
        )
        self._follow_routes(writer.slot, resp.headers)
        return resp

    def _move_after_gateway_error(self, writer: StreamRecordWriter) -> None:
        """After a 502/504 the route is likely stale: reload (forced) and move the writer
        to the current slot; a failing reload keeps the old slot (pyodps's choice)."""
        try:
            self.reload(force=True)
        except TunnelError as exc:
            log.warning("reloading stream session %s failed: %s", self.id, exc)
            return
        writer.slot = self.slots.current() or writer.slot

    def _follow_routes(self, slot: Slot, headers: Any) -> None:
        """:meth:`reload_slots` with a PUT's routing headers. A malformed server is kept
        out (logged): the batch is stored, so failing now would invite a duplicate."""
        server = headers.get("odps-tunnel-routed-server") or slot.server
        count = headers.get("odps-tunnel-slot-num")
        slot_num = int(count) if count and count.isdigit() else len(self.slots)
        try:
            self.reload_slots(slot, server, slot_num)
        except TunnelError as exc:
            log.warning("stream session %s: route %r ignored: %s", self.id, server, exc)

    def open_record_writer(self, compress: bool = False) -> StreamRecordWriter:
        """A buffered record writer on the next slot; each flush (every
        ``options.block_buffer_size`` bytes, at ``flush()`` and at ``close()``) is one
        committed batch."""
        option = (self._compress_option or CompressOption()) if compress else None
        encoding = option.algorithm.get_encoding() if option else None
        slot = self.slots.next()

        def send(_block: int, body: BlockBody) -> str | None:
            """Send one batch; its costs (for the writer's ``metrics``) are the answer's."""
            return self._put_batch(writer, body, encoding).headers.get("odps-tunnel-metrics")

        writer = StreamRecordWriter(self.schema, send, self, slot, compress_option=option)
        return writer


class StreamRecordWriter(BufferedRecordWriter):
    """A buffered writer whose blocks are stream batches to one slot (block ids play no
    part). ``session`` and ``slot`` are pyodps's attributes of the same names."""

    def __init__(
        self,
        schema: TableSchema,
        request_callback: Any,
        session: TableStreamUploadSession,
        slot: Slot,
        compress_option: CompressOption | None = None,
        encoding: str = "utf-8",
        buffer_size: int | None = None,
    ):
        super().__init__(
            schema,
            request_callback,
            compress_option=compress_option,
            encoding=encoding,
            buffer_size=buffer_size,
            block_id=0,
            block_id_gen=lambda: 0,
        )
        self.session = session
        self.slot = slot
