"""Raw signed requests to the emulator's tunnel endpoint (as tests/emulator/emulator_helpers.py)."""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlencode

import requests

from airflow_provider_odps_tunnel.tunnel.signing import authorization, canonical_string

TIMEOUT = 10


def signed(
    emulator,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    date: float | None = None,
    secret: str | None = None,
    sign_params: dict[str, str] | None = None,
) -> requests.Response:
    """A signed request; ``sign_params`` (default ``params``) are what the signature covers."""
    params = params or {}
    headers = {"x-odps-tunnel-version": "6", **(headers or {})}
    headers["Date"] = email.utils.formatdate(date or time.time(), usegmt=True)
    canonical = canonical_string(
        method, path, params if sign_params is None else sign_params, headers
    )
    headers["Authorization"] = authorization(
        emulator.access_id, secret or emulator.secret_access_key, canonical
    )
    query = urlencode(params)
    url = f"{emulator.tunnel_endpoint}{path}" + (f"?{query}" if query else "")
    return requests.request(method, url, data=body, headers=headers, timeout=TIMEOUT)


def assert_odps_error(resp: requests.Response, status: int | None = None) -> dict:
    """A 4xx (or the given status) with the service's JSON error body."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert {"Code", "Message", "RequestId"} <= set(body), body
    assert body["Code"] and isinstance(body["Message"], str)
    return body
