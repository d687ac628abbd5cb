"""Reading an ``odps_tunnel`` Airflow connection into the settings the tunnel client needs.

``login`` is the AccessKey ID and ``password`` the AccessKey secret; the extras are
``project`` (required), ``endpoint`` (the service endpoint, ``.../api``; the standard
``host`` field is a fallback), ``tunnel_endpoint``, ``quota_name``, ``schema`` and
``sts_token``. Extras are read by their plain name or by the form's prefixed name
(``extra__odps_tunnel__project``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.log import mask_secret

__all__ = ["ConnectionSettings", "read_settings"]


@dataclass(frozen=True)
class ConnectionSettings:
    """The parts of an ``odps_tunnel`` connection the client needs (the secret is not shown)."""

    access_id: str | None
    secret_access_key: str | None = field(repr=False)
    project: str
    endpoint: str | None = None
    tunnel_endpoint: str | None = None
    quota_name: str | None = None
    schema: str | None = None
    sts_token: str | None = field(default=None, repr=False)


def _extra(extras: dict[str, Any], name: str) -> Any:
    """An extra by its plain name, or by the ``extra__odps_tunnel__`` form-prefixed name."""
    value = extras.get(name)
    if value in (None, ""):
        value = extras.get(f"extra__odps_tunnel__{name}")
    return None if value == "" else value


def read_settings(
    conn: Any, *, project: str | None = None, quota_name: str | None = None
) -> ConnectionSettings:
    """The settings of ``conn`` (an Airflow ``Connection``); ``project`` and ``quota_name``
    override the connection's. An STS token is registered with Airflow's secrets masker."""
    extras = conn.extra_dejson
    project = project or _extra(extras, "project")
    if not project:
        raise ValueError(
            f"connection {conn.conn_id!r} has no 'project' extra and no project was given"
        )
    sts_token = _extra(extras, "sts_token")
    if sts_token:
        mask_secret(sts_token)
    endpoint = _extra(extras, "endpoint") or conn.host or None
    tunnel_endpoint = _extra(extras, "tunnel_endpoint")
    if not endpoint and not tunnel_endpoint:
        raise ValueError(
            f"connection {conn.conn_id!r} needs a service endpoint ('endpoint', "
            "https://service.<region>.maxcompute.aliyun.com/api) or a tunnel endpoint "
            "('tunnel_endpoint'); it has neither"
        )
    for name in ("endpoint", "tunnel_endpoint"):
        value = _extra(extras, name)
        if value and not str(value).startswith(("http://", "https://")):
            # The form's schema declares this, but Airflow 3.3 saves the form unchecked.
            raise ValueError(
                f"connection {conn.conn_id!r}: {name} {value!r} is not an http:// or "
                "https:// URL (e.g. https://service.cn-hangzhou.maxcompute.aliyun.com/api)"
            )
    return ConnectionSettings(
        access_id=conn.login or None,
        secret_access_key=conn.password or None,
        project=project,
        endpoint=endpoint,
        tunnel_endpoint=tunnel_endpoint,
        quota_name=quota_name or _extra(extras, "quota_name"),
        schema=_extra(extras, "schema"),
        sts_token=sts_token,
    )
