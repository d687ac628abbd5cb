"""The request context handed to every handler, and helpers they share."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec

from .catalog import TableInfo
from .errors import EmulatorError
from .faults import Fault
from .ingest import check_content_md5, receive_body
from .state import EmulatorState

__all__ = [
    "Call",
    "Handler",
    "SessionParams",
    "json_response",
    "xml_response",
    "rfc822",
    "metrics_header",
]

T = TypeVar("T")

# Values of a flag parameter that mean "off"; any other value, or none (``?x``), means "on".
_FALSE = frozenset({"false", "0"})


@dataclass(frozen=True)
class SessionParams:
    """What a session-creation request asks for, read the same way for every session kind.

    pyodps sends ``create_partition=true`` for upload sessions and a bare
    ``create_partition`` (empty value) for stream sessions, ``overwrite=true``, ``quotaName``
    and the ``odps-tunnel-tags`` header; ``partition`` is normalised to the table's
    partition columns (empty for sessions not on a table).
    """

    partition: PartitionSpec
    create_partition: bool
    overwrite: bool
    quota: str
    tags: tuple[str, ...]


@dataclass
class Call:
    """One request: its parsed parts, the route's arguments and the emulator state."""

    state: EmulatorState
    request: Request
    method: str
    resource: str
    params: dict[str, str]
    request_id: str
    args: dict[str, str] = field(default_factory=dict)
    abort_request_after: int | None = None
    corrupt_request_at: int | None = None
    abort_connection: Callable[[], None] = lambda: None
    # Extra fields of this request's line in the request log (e.g. a created session's id).
    log: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def fire_fault(self, kind: str, session_kind: str, session_id: str) -> Fault | None:
        """The handler fault of ``kind`` that fires on this request of a ``session_kind``
        session, if any (matched against the path with its query, as every fault is); a
        fired fault is named in the request log."""
        query = self.request.scope.get("query_string", b"").decode("utf-8", "replace")
        target = f"{self.resource}?{query}" if query else self.resource
        fault = self.state.faults.fire(kind, self.method, target, session_kind, session_id)
        if fault is not None:
            self.log["fault"] = fault.kind
        return fault

    def flag(self, name: str) -> bool:
        """A flag parameter: present (``?x``, ``?x=`` or ``?x=true``) and not ``false``/``0``."""
        return name in self.params and self.params[name].strip().lower() not in _FALSE

    def schema_name(self) -> str | None:
        """The schema the request names: the ``/schemas/{s}/`` path segment (tunnel paths),
        else ``curr_schema`` (pyodps's REST requests), else None (the default schema)."""
        return self.args.get("schema") or self.params.get("curr_schema") or None

    def table(self) -> TableInfo:
        return self.state.catalog.get_table(
            self.args["project"], self.args["table"], self.schema_name()
        )

    def partition(self, info: TableInfo) -> PartitionSpec:
        """The ``partition=`` parameter normalised to the table's partition columns."""
        return self.state.catalog.normalize_spec(info, self.params.get("partition") or None)

    def session_params(
        self, info: TableInfo | None = None, *, write: bool = False, can_create: bool = True
    ) -> SessionParams:
        """The common parameters of a session-creation request (see ``SessionParams``).

        ``info``: the session is on this table, so ``partition`` is read. ``write``: the
        session writes that partition, which must exist (``NoSuchPartition``) unless the
        request asks for ``create_partition`` and the kind can create partitions
        (``can_create``; upserts cannot, so the flag reads as off for them).
        """
        spec = self.partition(info) if info is not None else PartitionSpec(None)
        create = can_create and self.flag("create_partition")
        if (
            write
            and info is not None
            and not create
            and not self.state.catalog.partition_exists(info, spec)
        ):
            raise EmulatorError.no_such_partition(info.name, spec.to_param())
        tags = (self.header("odps-tunnel-tags") or "").split(",")
        return SessionParams(
            partition=spec,
            create_partition=create,
            # Destructive, so only the spelling pyodps and the protocol use (§3.2).
            overwrite=self.params.get("overwrite", "").strip().lower() == "true",
            quota=self.params.get("quotaName", ""),
            tags=tuple(t.strip() for t in tags if t.strip()),
        )

    def new_session(
        self,
        kind: str,
        params: SessionParams,
        data: dict[str, Any],
        info: TableInfo | None = None,
        lifetime: float | None = None,
    ) -> dict[str, Any]:
        """Create a session of ``kind`` holding ``data`` plus the keys every kind shares
        (``quota``, ``tags``; with ``info`` the table and partition) and log its id."""
        common: dict[str, Any] = {"quota": params.quota}
        if params.tags:
            common["tags"] = list(params.tags)
        if info is not None:
            common.update(
                project=info.project,
                table=info.name,
                table_id=info.table_id,
                partition=dict(params.partition.items()),
            )
        session = self.state.sessions.create(kind, {**common, **data}, lifetime)
        self.log["session"] = session["id"]
        return session

    async def receive(self, work: Callable[[Any], T]) -> T:
        """Stream the request body to ``work`` (see ``ingest.receive_body``), applying the
        request-side faults armed for this request."""
        return await receive_body(
            self.request,
            self.state.executor,
            work,
            abort_after=self.abort_request_after,
            on_abort=self.abort_connection,
            corrupt_at=self.corrupt_request_at,
            open_pipes=self.state.open_pipes,
            content_md5=self.header("content-md5"),
        )

    async def body(self) -> bytes:
        """The whole (small) request body, checked against ``Content-MD5`` if it has one."""
        data = await self.request.body()
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        check_content_md5(self.header("content-md5"), digest)
        return data

    def limit_sessions(self, info: TableInfo, kind: str) -> None:
        """Count a session creation on the table (429 ``FlowExceeded`` over the limit)."""
        self.state.limiter.check(
            self.state.config.session_rate_limit, f"{kind} sessions", f"{info.project}.{info.name}"
        )

    def limit_commits(self, info: TableInfo) -> None:
        """Count a commit on the table (429 ``FlowExceeded`` over the limit)."""
        self.state.limiter.check(
            self.state.config.commit_rate_limit, "commits", f"{info.project}.{info.name}"
        )

    async def blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking work (disk, fsync, decoding) on the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.state.executor, func, *args)

    def session_id(self, name: str) -> str:
        value = self.params.get(name, "")
        if not value:
            raise EmulatorError.invalid_argument(f"parameter {name} is required")
        return value


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def xml_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An XML answer (the service endpoint's format) with its declaration."""
    return Response(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + body,
        status_code=status,
        headers=headers,
        media_type="application/xml",
    )


def rfc822(ts: float) -> str:
    """A time as the service writes it in XML and headers."""
    return email.utils.formatdate(ts, usegmt=True)


def metrics_header(server_micros: int) -> dict[str, str]:
    """The ``odps-tunnel-metrics`` header of a successful write (protocol §5.7)."""
    total = max(int(server_micros), 3)
    metrics = {"PanguIOCost": 1, "ServerIOCost": 1, "ServerTotalCost": total}
    return {"odps-tunnel-metrics": json.dumps(metrics)}


Handler = Callable[[Call], Awaitable[Response]]
