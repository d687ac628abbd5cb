"""Process-wide settings of the tunnel client, in the spirit of ``odps.options``.

The codecs in :mod:`.codec` do not read these: the readers, writers and sessions pass the
values to them when they are created.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from .codec.datetimes import resolve_timezone as _resolve_timezone

__all__ = ["options", "TunnelOptions", "normalize_tags", "resolve_timezone"]


@dataclass
class TunnelOptions:
    """Settings read when a reader or writer is created.

    local_timezone: how naive DATETIME and TIMESTAMP values are read and written. ``None``
        (the default, as in pyodps) means the process's local zone; ``False`` or ``"UTC"``
        mean UTC; any IANA name selects that zone.
    string_as_binary: STRING values are read as ``bytes`` and written without UTF-8 checks.
    require_stream_footer: a record body that ends without its count and checksum footer is
        an error. pyodps defaults to accepting it silently; we do not, because it hides
        lost rows.
    chunk_size: size of the chunks handed to the HTTP layer and of Arrow frames.
    block_buffer_size: bytes a buffered writer collects before it sends a block.
    retry_times: how many times a reader re-opens its stream after a failure, and how many
        times a request is retried after a failure without an answer (connection refused
        or broken, read timeout; the latter two for idempotent requests only) and, on the
        service endpoint, after a 5xx or 429 answer.
    connect_timeout, read_timeout: seconds to open a connection and between two reads.
    retry_delay, retry_max_delay: the first pause (seconds) before a request is retried
        after a failure without an answer (and, on the service endpoint, after a 5xx or
        429), doubling after each failure, and its cap.
    tunnel_retry_base_delay, tunnel_retry_max_delay: the tunnel's waits after a 308, 429,
        408 or 5xx answer: the base (1 s) doubling after each retry up to the cap (64 s),
        as pyodps 0.13.2; each wait is at least the ``Retry-After`` the service asked for.
    throttle_retry_times: how many times a tunnel request answered 308 (slot moved) or
        429 (throttled) is retried; None (the default, as pyodps) sets no count limit,
        only ``tunnel_retry_deadline``.
    server_error_retry_times: how many times a tunnel request answered 5xx or 408 is
        retried (7, as pyodps: 127 s of waits at the default delays).
    tunnel_retry_deadline: seconds from a tunnel request's first attempt after which it is
        not retried any more (no wait may end past it); None (the default, as pyodps) sets
        no deadline.
    stream_reload_throttle: the least seconds between two unforced reloads of a stream
        session (its ``get_last_batch_id`` / ``get_last_batch_commit_time``), as pyodps's
        ``options.tunnel.stream_reload_throttle`` (30).
    pool_maxsize: connections kept open per host by each entry object.
    tags: default ``odps-tunnel-tags`` of new sessions (a list or comma-separated text).
    quota_name: default tunnel quota (``quotaName``) when the entry object names none.
    async_poll_timeout: seconds a download session may stay ``initiating`` (None: no limit).
    upsert_keepalive_interval: seconds between the keep-alive reloads of an open upsert
        session (pyodps's ``options.tunnel.upsert_keepalive_interval``, 30); 0 turns them off.
    enable_client_metrics: readers and writers also measure their own time and their time
        on the network for ``metrics`` (pyodps's ``options.tunnel.enable_client_metrics``);
        off, those two costs are 0 and a buffered writer's ``metrics`` is None, as in pyodps.
    """

    local_timezone: str | bool | None = None
    string_as_binary: bool = False
    require_stream_footer: bool = True
    chunk_size: int = 65536
    block_buffer_size: int = 20 * 1024 * 1024
    retry_times: int = 4
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    retry_delay: float = 0.1
    retry_max_delay: float = 60.0
    tunnel_retry_base_delay: float = 1.0
    tunnel_retry_max_delay: float = 64.0
    throttle_retry_times: int | None = None
    server_error_retry_times: int = 7
    tunnel_retry_deadline: float | None = None
    stream_reload_throttle: float = 30.0
    pool_maxsize: int = 16
    tags: str | list[str] | None = None
    quota_name: str | None = None
    async_poll_timeout: float | None = None
    upsert_keepalive_interval: float = 30.0
    enable_client_metrics: bool = False


options = TunnelOptions()


def resolve_timezone(setting: str | bool | _dt.tzinfo | None = None) -> _dt.tzinfo:
    """The zone naive datetimes are interpreted in: ``setting``, else ``options.local_timezone``.

    The codecs take the zone as an argument; the readers and writers pass this one.
    """
    return _resolve_timezone(options.local_timezone if setting is None else setting)


def normalize_tags(tags: str | list[str] | None) -> list[str] | None:
    """Session tags as a list (``"a,b"`` or ``["a", "b"]``), falling back to ``options.tags``."""
    tags = tags or options.tags
    if not tags:
        return None
    if isinstance(tags, str):
        tags = tags.split(",")
    return [t.strip() for t in tags if t.strip()]
