"""Request signing of the ODPS and Tunnel services (the "v2" HMAC-SHA1 scheme, protocol §2.1).

The client signs every request with it and the emulator verifies with the same code, so
the canonical string has exactly one definition. Signed: the method, ``Content-MD5``,
``Content-Type``, ``Date``, every ``x-odps-*`` header and query parameter, and the resource
path relative to the endpoint with its query parameters sorted. ``odps-tunnel-*`` headers
are not signed.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

__all__ = ["canonical_string", "signature", "authorization", "http_date"]


def http_date(timestamp: float | None = None) -> str:
    """An RFC 1123 ``Date`` header value in GMT."""
    return email.utils.formatdate(timestamp, usegmt=True)


def canonical_string(
    method: str,
    resource: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    headers: Mapping[str, str],
) -> str:
    """The text that is signed.

    ``resource`` is the URL path below the endpoint (the endpoint's own prefix, such as
    ``/api``, removed), URL-decoded. ``params`` are the decoded query parameters; a name
    with an empty value is rendered bare, and a repeated name counts once (the last wins).
    """
    items = params.items() if isinstance(params, Mapping) else params
    query = {name: value for name, value in items}
    signed: dict[str, str] = {"content-md5": "", "content-type": ""}
    for name, value in headers.items():
        lower = name.lower()
        if lower in ("content-md5", "content-type") or lower.startswith("x-odps-"):
            signed[lower] = value
    signed["date"] = next((v for k, v in headers.items() if k.lower() == "date"), "")
    for name, value in query.items():
        if name.startswith("x-odps-"):
            signed[name] = value
    lines = [method.upper()]
    for name in sorted(signed):
        lines.append(f"{name}:{signed[name]}" if name.startswith("x-odps-") else signed[name])
    path = unquote(resource)
    if query:
        path += "?" + "&".join(
            name if value == "" else f"{name}={value}" for name, value in sorted(query.items())
        )
    lines.append(path)
    return "\n".join(lines)


def signature(secret_access_key: str, canonical: str) -> str:
    """Base64 HMAC-SHA1 of the canonical string."""
    digest = hmac.new(secret_access_key.encode(), canonical.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def authorization(access_id: str, secret_access_key: str, canonical: str) -> str:
    """The ``Authorization`` header value: ``ODPS <access id>:<signature>``."""
    return f"ODPS {access_id}:{signature(secret_access_key, canonical)}"
