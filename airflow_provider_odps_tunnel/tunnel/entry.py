"""The entry object: a connection to a project that also runs SQL instances.

``TableTunnel(ODPS(...))`` works as with pyodps. A pyodps ``ODPS`` object is accepted by
every tunnel too (see :func:`.transport.connection.as_connection`).
"""

from __future__ import annotations

from typing import Any

from .sql import Instance, execute_sql, run_sql
from .transport.connection import Connection

__all__ = ["ODPS"]


class ODPS(Connection):
    """Where and as whom the tunnel client works, with pyodps's ``run_sql`` and
    ``execute_sql``; see :class:`.transport.connection.Connection` for the arguments."""

    def run_sql(self, sql: str, hints: dict[str, Any] | None = None) -> Instance:
        """Submit ``sql`` as a SQL instance on the service endpoint; returns at once."""
        return run_sql(self, sql, hints)

    def execute_sql(
        self, sql: str, hints: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Instance:
        """Submit ``sql`` and wait until it succeeded; raises ``SQLTaskError`` (with the
        instance id and the service's error text) if it failed."""
        return execute_sql(self, sql, hints, timeout)
