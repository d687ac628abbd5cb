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
        times a request is retried after a connection failure or a 5xx answer.
    connect_timeout, read_timeout: seconds to open a connection and between two reads.
    retry_delay, retry_max_delay: the first pause between retries (doubling after each
        failure) and its cap, in seconds.
    throttle_retry_times: retries of a request the service throttled (429, FlowExceeded,
        SlotExceeded); each waits at least the ``Retry-After`` the service asked for.
    pool_maxsize: connections kept open per host by each entry object.
    tags: default ``odps-tunnel-tags`` of new sessions (a list or comma-separated text).
    quota_name: default tunnel quota (``quotaName``) when the entry object names none.
    async_poll_timeout: seconds a download session may stay ``initiating`` (None: no limit).
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
    throttle_retry_times: int = 30
    pool_maxsize: int = 16
    tags: str | list[str] | None = None
    quota_name: str | None = None
    async_poll_timeout: float | None = None


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
