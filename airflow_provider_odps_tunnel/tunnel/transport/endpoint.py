"""Tunnel endpoint discovery: ask the service endpoint where the tunnel lives, and cache it.

``GET {service}/projects/{p}/tunnel?service[&quotaName=Q]`` answers ``host[:port]`` as plain
text; the scheme is the service endpoint's (protocol §1.1). Answers are cached per
(service endpoint, project, quota) for the life of the process, as pyodps does.
"""

from __future__ import annotations

import threading

from ..errors import TunnelError
from .resources import project_resource
from .rest import RestClient

__all__ = ["discover_tunnel_endpoint", "clear_endpoint_cache"]

_cache: dict[tuple[str, str, str | None], str] = {}
_lock = threading.Lock()


def discover_tunnel_endpoint(
    service: RestClient, project: str, quota_name: str | None = None
) -> str:
    """The tunnel endpoint URL serving ``project`` (and ``quota_name``), cached."""
    key = (service.endpoint, project, quota_name)
    with _lock:
        if key in _cache:
            return _cache[key]
    params = {"service": "", "quotaName": quota_name}
    resp = service.request("GET", project_resource(project) + "/tunnel", params=params)
    host = resp.text.strip()
    if not host or "/" in host.split("://", 1)[-1]:
        raise TunnelError(f"the service answered an invalid tunnel host {host!r}")
    endpoint = host if "://" in host else f"{service.scheme}://{host}"
    with _lock:
        _cache[key] = endpoint
    return endpoint


def clear_endpoint_cache() -> None:
    """Forget discovered endpoints (after a tunnel endpoint moved, or between tests)."""
    with _lock:
        _cache.clear()
