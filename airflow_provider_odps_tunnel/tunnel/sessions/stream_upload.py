"""Stream upload sessions: every flushed batch is committed by the service on arrival.

Each writer sends its batches to one slot (round robin over the session's slots); the
answer of every PUT names the slot's current server and the slot count, and the session
follows them. A failed PUT is retried after reloading the session's routes, unless it was
sent whole and then not answered within the read timeout: the service commits each PUT on
arrival and a batch has no idempotency key, so sending it again could store it twice. That
case raises a ``TunnelTimeoutError`` saying the batch may have been stored.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

from ..codec.compression import CompressOption
from ..codec.partition import PartitionSpec
from ..codec.schema import TableSchema
from ..errors import TunnelError, TunnelTimeoutError
from ..io.record_writer import BlockBody, BufferedRecordWriter
from ..transport.rest import RestClient, sent_but_unanswered
from ..transport.retry import Attempt, RetryPolicy
from .table_base import SessionStatus, TableSession

__all__ = ["TableStreamUploadSession", "StreamRecordWriter"]

log = logging.getLogger(__name__)

# Answers that another attempt cannot change.
_FINAL_STATUSES = (400, 401, 403, 404, 412)


def _retryable(exc: BaseException) -> bool:
    """A failed batch PUT that may be sent again: not refused for good, and not sent whole
    and then left unanswered (the service may have stored it)."""
    return (
        isinstance(exc, TunnelError)
        and exc.status not in _FINAL_STATUSES
        and not sent_but_unanswered(exc)
    )


class TableStreamUploadSession(TableSession):
    """A stream upload session (create with
    :meth:`TableTunnel.create_stream_upload_session`); ``id`` reattaches to it."""

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
        schema_version_reloader: Any = None,
        slot_num: int = 0,
        dynamic_partition: bool = False,
    ):
        super().__init__(client, table, partition_spec, compress_option, quota_name, tags)
        self._create_partition = create_partition
        if zorder_columns is not None and not isinstance(zorder_columns, str):
            zorder_columns = ",".join(zorder_columns)
        self._zorder_columns = zorder_columns
        self.schema_version = schema_version
        self._allow_schema_mismatch = allow_schema_mismatch
        self._schema_version_reloader = schema_version_reloader
        self._slot_num = slot_num
        self._dynamic_partition = dynamic_partition
        self.slots: list[list[str]] = []
        self._next_slot = itertools.count()
        self._lock = threading.Lock()
        if upload_id is None:
            if self.schema_version is None and self._schema_version_reloader is not None:
                self.schema_version = self._schema_version_reloader()
            self._create()
        else:
            self.id = upload_id
            self.reload()

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

    def reload(self) -> None:
        """Fetch the session again: status, schema and slot routes."""
        params = {"uploadid": self.id, "schema_version": self.schema_version}
        resp = self._request("GET", params=params)
        self._load(resp.json())

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("session_name", self.id)
        self.status = SessionStatus.parse(data.get("status") or "normal")
        if data.get("schema") is not None:
            self.schema = TableSchema.from_json(data["schema"])
        if data.get("schema_version") not in (None, ""):
            self.schema_version = str(data["schema_version"])
        self._quota_name = data.get("QuotaName") or data.get("quota_name") or self._quota_name
        slots = [[str(s[0]), str(s[1])] for s in data.get("slots") or []]
        if not slots:
            raise TunnelError("the stream session has no slots", **self._context())
        with self._lock:
            self.slots = slots

    def _slot(self, index: int) -> list[str]:
        with self._lock:
            return self.slots[index % len(self.slots)]

    def abort(self) -> None:
        """Close the session; batches already written stay committed."""
        server = self._slot(0)[1]
        headers = self._headers(content_length=0, **{"odps-tunnel-routed-server": server})
        self._request("POST", params={"uploadid": self.id}, headers=headers, retry_post=True)

    def _put_batch(self, index: int, body: BlockBody, encoding: str | None) -> None:
        """PUT one batch to the writer's slot; on failure reload the routes and retry."""
        sent_to = ""

        def put(_: Attempt) -> Any:
            nonlocal sent_to
            sent_to, server = self._slot(index)
            with self._lock:
                nslots = len(self.slots)
            headers = self._headers(
                chunked=True,
                **{
                    "odps-tunnel-slot-num": str(nslots),
                    "odps-tunnel-routed-server": server,
                    "Content-Encoding": encoding,
                },
            )
            params = {"uploadid": self.id, "slotid": sent_to, **self._write_params()}
            return self._request("PUT", params=params, headers=headers, data=body, retry=False)

        try:
            resp = RetryPolicy.single("failure", _retryable).call(
                put, what=f"stream batch of session {self.id}", before_retry=self.reload
            )
        except TunnelError as exc:
            if sent_but_unanswered(exc):
                raise TunnelTimeoutError(
                    f"stream batch to slot {sent_to} was sent but not answered in time; "
                    "it may have been stored, so it is not sent again (that could store "
                    f"it twice): {exc.message}",
                    **self._context(),
                ) from exc
            raise
        self._follow_routes(sent_to, resp.headers)

    def _follow_routes(self, slot_id: str, headers: Any) -> None:
        server = headers.get("odps-tunnel-routed-server")
        count = headers.get("odps-tunnel-slot-num")
        with self._lock:
            known = len(self.slots)
        if count and count.isdigit() and int(count) != known:
            self.reload()
            return
        if server and ":" in server and all(server.split(":", 1)):
            with self._lock:
                for slot in self.slots:
                    if slot[0] == slot_id:
                        slot[1] = server

    def open_record_writer(self, compress: bool = False) -> StreamRecordWriter:
        """A buffered record writer; each flush (every ``options.block_buffer_size``
        bytes, at ``flush()`` and at ``close()``) is one committed batch."""
        option = (self._compress_option or CompressOption()) if compress else None
        encoding = option.algorithm.get_encoding() if option else None
        index = next(self._next_slot)
        return StreamRecordWriter(
            self.schema,
            lambda _block, body: self._put_batch(index, body, encoding),
            compress_option=option,
        )


class StreamRecordWriter(BufferedRecordWriter):
    """A buffered writer whose blocks are stream batches (block ids play no part)."""

    def __init__(self, schema: TableSchema, request_callback: Any, **kw: Any):
        super().__init__(schema, request_callback, block_id=0, block_id_gen=lambda: 0, **kw)
