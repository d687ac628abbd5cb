"""The request context handed to every handler, and helpers they share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from ..tunnel.partition import PartitionSpec
from .catalog import TableInfo
from .errors import EmulatorError
from .state import EmulatorState

__all__ = ["Call", "Handler", "json_response", "metrics_header"]

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
    abort_connection: Callable[[], None] = lambda: None

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


def metrics_header(server_micros: int) -> dict[str, str]:
    """The ``odps-tunnel-metrics`` header of a successful write (protocol §5.7)."""
    total = max(int(server_micros), 3)
    metrics = {"PanguIOCost": 1, "ServerIOCost": 1, "ServerTotalCost": total}
    return {"odps-tunnel-metrics": json.dumps(metrics)}


Handler = Callable[[Call], Awaitable[Response]]
