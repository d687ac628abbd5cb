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
from .ingest import check_content_md5, receive_body
from .state import EmulatorState

__all__ = ["Call", "Handler", "json_response", "xml_response", "rfc822", "metrics_header"]

T = TypeVar("T")


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

    def flag(self, name: str) -> bool:
        """A flag parameter: present (``?x`` or ``?x=``) and not ``false``."""
        return name in self.params and self.params[name].lower() != "false"

    def table(self) -> TableInfo:
        return self.state.catalog.get_table(self.args["project"], self.args["table"])

    def partition(self, info: TableInfo) -> PartitionSpec:
        """The ``partition=`` parameter normalised to the table's partition columns."""
        return self.state.catalog.normalize_spec(info, self.params.get("partition") or None)

    async def receive(self, work: Callable[[Any], T]) -> T:
        """Stream the request body to ``work`` (see ``ingest.receive_body``), applying the
        request-side faults armed for this request."""
        return await receive_body(
            self.request,
            self.state.staging_dir,
            self.state.executor,
            work,
            abort_after=self.abort_request_after,
            on_abort=self.abort_connection,
            corrupt_at=self.corrupt_request_at,
            open_spools=self.state.open_spools,
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
