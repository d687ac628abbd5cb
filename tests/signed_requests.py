"""Raw signed requests to the emulator's tunnel endpoint, for the cases pyodps never produces."""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlencode

import requests

from airflow_provider_odps_tunnel.tunnel.codec.signing import authorization, canonical_string


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
    sign_headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> requests.Response:
    """A request to the tunnel endpoint signed as pyodps signs it. ``sign_params`` (default
    ``params``) are what the signature covers, and ``sign_headers`` replace headers of the
    same name in it (a header changed after signing)."""
    params = params or {}
    headers = {"x-odps-tunnel-version": "6", **(headers or {})}
    headers["Date"] = email.utils.formatdate(date or time.time(), usegmt=True)
    canonical = canonical_string(
        method,
        path,
        params if sign_params is None else sign_params,
        {**headers, **(sign_headers or {})},
    )
    headers["Authorization"] = authorization(
        emulator.access_id, secret or emulator.secret_access_key, canonical
    )
    query = urlencode(params)
    url = f"{emulator.tunnel_endpoint}{path}" + (f"?{query}" if query else "")
    return requests.request(method, url, data=body, headers=headers, timeout=timeout)
