"""``Slot``: one route of a stream or upsert session, a slot id and the ``ip:port`` serving it.

As pyodps's ``odps.tunnel.tabletunnel.Slot``: both parts must be non-empty when a slot is
built from session JSON; :meth:`Slot.set_server` re-parses an address (an address without
exactly one ``:`` or with an empty ip or port is a ``TunnelError``, so a stale address
never lingers). Slots compare by value and, being mutable, are not hashable.
"""

from __future__ import annotations

from typing import Any

from ..errors import TunnelError

__all__ = ["Slot"]


class Slot:
    """A slot id and the server (``ip:port``) that currently serves it."""

    def __init__(self, slot: Any, server: str):
        if slot is None or slot == "" or not server:
            raise TunnelError(f"slot or routed server is empty: {slot!r}, {server!r}")
        self._slot = slot
        self._ip: str | None = None
        self._port: int | None = None
        self.set_server(server, check_empty=True)

    @property
    def slot(self) -> Any:
        return self._slot

    @property
    def ip(self) -> str | None:
        return self._ip

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def server(self) -> str:
        """``ip:port``, as the ``odps-tunnel-routed-server`` header carries it."""
        return f"{self._ip}:{self._port}"

    def set_server(self, server: str, check_empty: bool = False) -> None:
        """Route the slot to ``server`` (``ip:port``); a malformed address is refused.

        ``check_empty`` is pyodps's name for the constructor's call; in pyodps 0.13.2 an
        empty ip or port is refused either way, and so it is here."""
        parts = str(server).split(":")
        if len(parts) != 2:
            raise TunnelError(f"invalid slot server {server!r}: expected ip:port")
        ip, port = parts
        if not ip or not port:
            raise TunnelError(f"empty ip or port in slot server {server!r}")
        try:
            self._port = int(port)
        except ValueError:
            raise TunnelError(f"invalid port in slot server {server!r}") from None
        self._ip = ip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Slot):
            return NotImplemented
        return (self._slot, self._ip, self._port) == (other._slot, other._ip, other._port)

    __hash__ = None  # type: ignore[assignment]  # mutable: equal slots must not key a dict

    def __repr__(self) -> str:
        return f"Slot({self._slot!r}, {self.server!r})"
