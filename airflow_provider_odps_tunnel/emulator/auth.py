"""Verification of the v2 request signature (protocol §2.1) and of the request date.

The canonical string is built by ``tunnel.signing`` — the same code the client signs with —
from what the client signed: the raw path below the endpoint (``/api`` stripped for the
service endpoint), the query URL-decoded as a whole and then split (as pyodps does), and the
``Content-MD5``, ``Content-Type``, ``Date`` and ``x-odps-*`` headers.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote

from airflow_provider_odps_tunnel.tunnel.codec.signing import canonical_string, signature

from .errors import EmulatorError

__all__ = ["verify_request", "MAX_SKEW_SECONDS"]

MAX_SKEW_SECONDS = 15 * 60


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def verify_request(
    method: str,
    resource: str,
    raw_query: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> str:
    """Check the ``Authorization`` header; returns the access id or raises the ODPS error.

    ``credentials`` maps access ids to secrets. Bearer tokens are not supported.
    """
    auth = headers.get("authorization")
    if not auth:
        raise EmulatorError(
            "Unauthorized", "The request is not signed: the Authorization header is missing", 401
        )
    scheme, _, rest = auth.partition(" ")
    access_id, _, given = rest.rpartition(":")
    if scheme != "ODPS" or not access_id or not given:
        raise EmulatorError("Unauthorized", f"Malformed Authorization header {auth!r}", 401)
    if "/" in access_id:
        raise EmulatorError(
            "InvalidParameter",
            "ODPS-0410051: v4 signatures are not supported by the emulator; sign with v2",
            400,
        )
    secret = credentials.get(access_id)
    if secret is None:
        raise EmulatorError("Unauthorized", f"The AccessKey ID {access_id!r} does not exist", 401)
    date_text = headers.get("date")
    if not date_text:
        # Without a Date, a captured request could be replayed at any time.
        raise EmulatorError(
            "Unauthorized", "The request has no Date header: a signed request needs one", 401
        )
    try:
        sent = email.utils.parsedate_to_datetime(date_text).timestamp()
    except (TypeError, ValueError):
        raise EmulatorError("InvalidArgument", f"Invalid Date header {date_text!r}", 400) from None
    if abs(now - sent) > max_skew:
        raise EmulatorError(
            "RequestTimeTooSkewed",
            f"max_interval_date:{int(max_skew * 1000)},expire_date:{_iso(sent + max_skew)},"
            f"now_date:{_iso(now)}",
            403,
        )
    params = parse_qsl(unquote(raw_query), keep_blank_values=True)
    expected = signature(secret, canonical_string(method, resource, params, headers))
    if not hmac.compare_digest(expected, given):
        raise EmulatorError(
            "SignatureNotMatch",
            "The request signature does not match the one computed with the secret key",
            403,
        )
    return access_id
