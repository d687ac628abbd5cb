"""Credentials, project, endpoints and pooled HTTP clients: what every request starts from.

A pyodps ``ODPS`` object is accepted wherever a connection is, duck-typed (``account``,
``project``, ``endpoint``, ``tunnel_endpoint``, ``quota_name``, ``schema``,
``namespace``); pyodps itself is never imported here.
"""

from __future__ import annotations

import threading
from typing import Any

from ..options import options
from .endpoint import discover_tunnel_endpoint
from .rest import Credentials, RestClient

__all__ = ["Connection", "as_connection", "default_quota"]


class Connection:
    """Where and as whom requests go: credentials, project, endpoints, pooled HTTP clients.

    ``endpoint`` is the service endpoint (``http://host/api``); it is only needed to
    discover the tunnel endpoint when ``tunnel_endpoint`` is not given. ``schema`` is the
    default schema (namespace level of a three-tier project); ``namespace`` is sent as
    ``x-odps-namespace-id``; ``sts_token`` turns the key pair into STS credentials.
    One pooled HTTP client is kept per endpoint and shared by every session made from
    this object, across threads. :class:`~airflow_provider_odps_tunnel.tunnel.ODPS` adds
    SQL instances on top.
    """

    def __init__(
        self,
        access_id: str | None,
        secret_access_key: str | None,
        project: str,
        endpoint: str | None = None,
        tunnel_endpoint: str | None = None,
        quota_name: str | None = None,
        schema: str | None = None,
        namespace: str | None = None,
        sts_token: str | None = None,
    ):
        if not project:
            raise ValueError("a project is required")
        if endpoint is None and tunnel_endpoint is None:
            raise ValueError("give an endpoint or a tunnel_endpoint")
        self.credentials = Credentials(access_id, secret_access_key, sts_token)
        self.project = project
        self.endpoint = endpoint
        self.tunnel_endpoint = tunnel_endpoint
        self.quota_name = quota_name
        self.schema = schema
        self.namespace = namespace
        self._clients: dict[str, RestClient] = {}
        self._lock = threading.Lock()

    @property
    def access_id(self) -> str | None:
        return self.credentials.access_id

    def __repr__(self) -> str:
        where = self.tunnel_endpoint or self.endpoint
        return f"{type(self).__name__}(project={self.project!r}, endpoint={where!r})"

    def client(self, endpoint: str, *, tunnel: bool = False) -> RestClient:
        """The pooled HTTP client for ``endpoint`` (created once, then shared).

        A ``tunnel`` client carries no default schema: pyodps sends ``curr_schema`` to the
        service endpoint only, never on tunnel requests (its tunnel client has none).
        """
        key = f"tunnel:{endpoint}" if tunnel else endpoint
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = RestClient(
                    self.credentials,
                    endpoint,
                    self.project,
                    schema=None if tunnel else self.schema,
                    namespace=self.namespace,
                    tunnel=tunnel,
                )
                self._clients[key] = found
            return found

    @property
    def rest(self) -> RestClient:
        """The client of the service endpoint."""
        if self.endpoint is None:
            raise ValueError("this entry object has no service endpoint")
        return self.client(self.endpoint)

    def tunnel_client(
        self,
        endpoint: str | None = None,
        quota_name: str | None = None,
        project: str | None = None,
    ) -> RestClient:
        """The client of the tunnel: ``endpoint`` if given, else the configured tunnel
        endpoint, else the one the service names for ``project`` (default: this entry's
        project) and quota.

        As in pyodps, a quota name ignores the configured tunnel endpoint and discovers
        the quota's own, unless an endpoint is passed explicitly.
        """
        if endpoint is None and (quota_name is None or self.endpoint is None):
            endpoint = self.tunnel_endpoint
        if endpoint is None:
            endpoint = discover_tunnel_endpoint(self.rest, project or self.project, quota_name)
        return self.client(endpoint, tunnel=True)

    def close(self) -> None:
        """Close every pooled connection of this entry object."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    @classmethod
    def from_pyodps(cls, odps: Any) -> Connection:
        """An entry object equivalent to a pyodps ``ODPS`` object (duck-typed)."""
        account = getattr(odps, "account", None)
        cred = Credentials.from_account(account)
        schema = getattr(odps, "_schema", None)
        entry = cls(
            cred.access_id,
            cred.secret_access_key,
            odps.project,
            endpoint=getattr(odps, "endpoint", None),
            tunnel_endpoint=getattr(odps, "tunnel_endpoint", None),
            quota_name=getattr(odps, "_quota_name", None) or getattr(odps, "quota_name", None),
            schema=schema if isinstance(schema, str) else None,
            namespace=getattr(odps, "namespace", None),
            sts_token=cred.sts_token,
        )
        if cred.bearer_token:
            entry.credentials = cred
        return entry


_adapted: dict[int, tuple[Any, Connection]] = {}
_adapted_lock = threading.Lock()


def as_connection(odps: Any) -> Connection:
    """The connection of ``odps``: itself, or an adapter of a pyodps ``ODPS`` object.

    The adapter is remembered per object, so tunnels built from the same pyodps object
    share one connection pool.
    """
    if isinstance(odps, Connection):
        return odps
    if not hasattr(odps, "account") or not hasattr(odps, "project"):
        raise TypeError(f"expected an ODPS entry object, got {type(odps).__name__}")
    with _adapted_lock:
        found = _adapted.get(id(odps))
        if found is None or found[0] is not odps:
            found = (odps, Connection.from_pyodps(odps))
            _adapted[id(odps)] = found
        return found[1]


def default_quota(entry: Connection, quota_name: str | None) -> str | None:
    """The quota a tunnel uses: the argument, the entry's, or the process default."""
    return quota_name or entry.quota_name or options.quota_name
