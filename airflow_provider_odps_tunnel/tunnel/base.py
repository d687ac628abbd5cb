"""What the three tunnels share: resolving the connection, project, quota and endpoint."""

from __future__ import annotations

from typing import Any

from .transport.connection import Connection, as_connection, default_quota
from .transport.rest import RestClient

__all__ = ["BaseTunnel"]


class BaseTunnel:
    """Base of ``TableTunnel``, ``InstanceTunnel`` and ``VolumeTunnel``.

    ``odps`` is our :class:`ODPS` or a pyodps ``ODPS`` object; ``client`` may be given
    instead as a ready :class:`RestClient` of the tunnel endpoint (with ``project``).
    ``endpoint`` overrides the tunnel endpoint; ``quota_name`` selects a tunnel quota.
    """

    def __init__(
        self,
        odps: Any = None,
        client: RestClient | None = None,
        project: str | None = None,
        endpoint: str | None = None,
        quota_name: str | None = None,
        namespace: str | None = None,
    ):
        if odps is None and client is None:
            raise TypeError(f"{type(self).__name__} needs an odps entry object or a client")
        self._entry: Connection | None = as_connection(odps) if odps is not None else None
        self._given_client = client
        if project is None:
            project = self._entry.project if self._entry is not None else client.project
        if not project:
            raise TypeError(f"{type(self).__name__} requires a project")
        self._project = getattr(project, "name", project)
        self._namespace = namespace or (self._entry.namespace if self._entry else None)
        self._quota_name = (
            default_quota(self._entry, quota_name) if self._entry is not None else quota_name
        )
        self._endpoint = endpoint
        self._schema = self._entry.schema if self._entry is not None else None

    @property
    def project(self) -> str:
        return self._project

    @property
    def endpoint(self) -> str:
        """The tunnel endpoint in use (discovered on first use when not configured)."""
        return self.tunnel_rest.endpoint

    @property
    def quota_name(self) -> str | None:
        return self._quota_name

    @property
    def tunnel_rest(self) -> RestClient:
        """The pooled HTTP client of the tunnel endpoint; a discovered endpoint is the one
        the service names for this tunnel's project (as pyodps asks for its own project)."""
        if self._given_client is not None and self._endpoint is None:
            return self._given_client
        return self._entry.tunnel_client(self._endpoint, self._quota_name, self._project)
