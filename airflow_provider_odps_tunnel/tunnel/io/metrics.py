"""Transfer metrics of one reader or writer, as pyodps's ``TunnelMetrics``.

The server reports its costs as JSON: at the end of a download body (protocol §5.7) and in
the ``odps-tunnel-metrics`` header of a block or stream PUT (§1.3). Readers and writers
turn it into :class:`TunnelMetrics` for their ``metrics`` property. The client-side costs
(time spent in the reader or writer, and the part of it spent waiting on the network)
are measured only when ``options.enable_client_metrics`` is set, as in pyodps; otherwise
they are 0.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..options import options

__all__ = ["TunnelMetrics", "ClientClock", "TimedStream"]

_MICROS = 1_000_000


class TunnelMetrics:
    """Costs of one transfer, in microseconds, with pyodps's attribute names.

    ``storage_cost``, ``server_io_cost`` and ``server_total_cost`` are the server's
    ``PanguIOCost``, ``ServerIOCost`` and ``ServerTotalCost``; ``rate_limit_cost`` its
    optional ``RateLimitCost``. ``tunnel_process_cost`` is what remains of the total.
    ``network_wall_cost`` and ``client_process_cost`` are the client's own time. Metrics of
    the same owner add up with ``+`` (a buffered writer sums its blocks).
    """

    def __init__(
        self,
        owner: str,
        network_wall_cost: int = 0,
        client_process_cost: int = 0,
        tunnel_process_cost: int = 0,
        storage_cost: int = 0,
        server_total_cost: int = 0,
        server_io_cost: int = 0,
        rate_limit_cost: int = 0,
    ):
        self.owner = owner
        self.network_wall_cost = network_wall_cost
        self.client_process_cost = client_process_cost
        self.tunnel_process_cost = tunnel_process_cost
        self.storage_cost = storage_cost
        self.server_total_cost = server_total_cost
        self.server_io_cost = server_io_cost
        self.rate_limit_cost = rate_limit_cost

    @classmethod
    def from_server_json(
        cls,
        owner: str,
        server_json: str | bytes | dict,
        local_wall_time: int,
        network_wall_time: int,
    ) -> TunnelMetrics:
        """Metrics from the server's JSON (text or already parsed) and the client's times.

        The three keys pyodps requires must be there; a missing one raises ``KeyError``
        as in pyodps.
        """
        data = server_json if isinstance(server_json, dict) else json.loads(server_json)
        storage = data["PanguIOCost"]
        server_io = data["ServerIOCost"]
        total = data["ServerTotalCost"]
        rate_limit = data.get("RateLimitCost") or 0
        return cls(
            owner,
            network_wall_cost=network_wall_time,
            client_process_cost=local_wall_time - network_wall_time,
            tunnel_process_cost=total - server_io - storage - rate_limit,
            storage_cost=storage,
            server_total_cost=total,
            server_io_cost=server_io,
            rate_limit_cost=rate_limit,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "network_wall_cost": self.network_wall_cost,
            "client_process_cost": self.client_process_cost,
            "tunnel_process_cost": self.tunnel_process_cost,
            "storage_cost": self.storage_cost,
            "server_total_cost": self.server_total_cost,
            "server_io_cost": self.server_io_cost,
            "rate_limit_cost": self.rate_limit_cost,
        }

    def __add__(self, other: TunnelMetrics) -> TunnelMetrics:
        if not isinstance(other, TunnelMetrics):
            return NotImplemented
        if self.owner != other.owner:
            raise ValueError(f"cannot add metrics of {other.owner} to metrics of {self.owner}")
        mine, theirs = self.to_dict(), other.to_dict()
        del mine["owner"], theirs["owner"]
        return TunnelMetrics(self.owner, **{k: v + theirs[k] for k, v in mine.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TunnelMetrics) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        costs = self.to_dict()
        owner = costs.pop("owner")
        body = ", ".join(f"{k}={v}" for k, v in sorted(costs.items()))
        return f"<TunnelMetrics owner={owner}, {body}>"


class ClientClock:
    """The client's two costs, measured only when ``options.enable_client_metrics`` is on.

    ``local`` is time spent inside the reader's or writer's calls, ``network`` the part of
    it spent in the HTTP layer; both in microseconds. When off, both stay 0 and the
    timing calls cost one attribute test.
    """

    def __init__(self) -> None:
        self.enabled = bool(options.enable_client_metrics)
        self.local = 0
        self.network = 0

    def start(self) -> float:
        """A start time for :meth:`add_local` / :meth:`add_network` (0.0 when off)."""
        return time.monotonic() if self.enabled else 0.0

    def add_local(self, started: float) -> None:
        if self.enabled:
            self.local += int(_MICROS * (time.monotonic() - started))

    def add_network(self, started: float) -> None:
        if self.enabled:
            self.network += int(_MICROS * (time.monotonic() - started))

    def metrics(self, owner: str, server_json: str | bytes | dict | None) -> TunnelMetrics | None:
        """:class:`TunnelMetrics` of ``server_json`` with these costs (None without JSON)."""
        if server_json is None:
            return None
        return TunnelMetrics.from_server_json(owner, server_json, self.local, self.network)

    def reset(self) -> None:
        self.local = 0
        self.network = 0


class TimedStream:
    """A readable stream that adds the time spent in ``read`` to a clock's network cost."""

    def __init__(self, stream: Any, clock: ClientClock):
        self._stream = stream
        self._clock = clock

    def read(self, size: int = -1) -> bytes:
        started = self._clock.start()
        try:
            return self._stream.read(size)
        finally:
            self._clock.add_network(started)

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
