"""Exact conversions between Python date/time values and the tunnel's integer encodings.

The wire carries DATETIME as epoch milliseconds, DATE as epoch days, TIMESTAMP and
INTERVAL_DAY_TIME as (seconds, nanoseconds) with non-negative nanoseconds. All arithmetic
here is on integers (``timedelta`` floor division, nanosecond counts), so pre-1970 values
floor correctly and no value drifts by a millisecond as float arithmetic does. Naive
values are wall-clock times in ``tz``; aware values are instants. :func:`resolve_timezone`
turns a ``local_timezone`` setting into the zone the codecs take.
"""

from __future__ import annotations

import datetime as _dt
import os
import zoneinfo
from typing import Any

__all__ = [
    "resolve_timezone",
    "system_zone",
    "system_zone_name",
    "datetime_to_millis",
    "millis_to_datetime",
    "date_to_days",
    "days_to_date",
    "timestamp_to_pair",
    "pair_to_timestamp",
    "timedelta_to_pair",
    "pair_to_timedelta",
]

UTC = _dt.UTC
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = _dt.datetime(1970, 1, 1)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_MILLI = _dt.timedelta(milliseconds=1)
_NANOS = 1_000_000_000


def system_zone() -> _dt.tzinfo:
    """The process's local zone: ``$TZ`` if it names a zone, else ``/etc/localtime``, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return zoneinfo.ZoneInfo.from_file(fh, key="localtime")
    except OSError:
        return _dt.UTC


def system_zone_name() -> str | None:
    """The IANA name of the process's local zone (for a service that needs a name, not
    rules): ``$TZ``, else the zone ``/etc/localtime`` links to, else ``/etc/timezone``;
    None when none of them names one."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        return target.split("/zoneinfo/", 1)[1]
    try:
        with open("/etc/timezone", encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def resolve_timezone(setting: str | bool | _dt.tzinfo | None = None) -> _dt.tzinfo:
    """The zone naive datetimes are interpreted in, for a ``local_timezone`` setting.

    ``None`` or ``True``: the process's local zone (:func:`system_zone`); ``False`` or
    ``"UTC"``: UTC; a ``tzinfo``: itself; any other text: that IANA zone.
    """
    if isinstance(setting, _dt.tzinfo):
        return setting
    if setting is None or setting is True:
        return system_zone()
    if setting is False or setting.upper() == "UTC":
        return UTC
    return zoneinfo.ZoneInfo(setting)


def datetime_to_millis(value: _dt.datetime, tz: _dt.tzinfo) -> int:
    """Epoch milliseconds of a datetime, floored (so 1969-12-31 23:59:59.9995 → -1)."""
    if value.tzinfo is None:
        if tz is UTC:
            return (value - _EPOCH_NAIVE) // _MILLI
        value = value.replace(tzinfo=tz)
    return (value - _EPOCH) // _MILLI


def millis_to_datetime(millis: int, tz: _dt.tzinfo) -> _dt.datetime:
    """The naive wall-clock datetime in ``tz`` of an epoch-millisecond instant."""
    if tz is UTC:
        return _EPOCH_NAIVE + _dt.timedelta(milliseconds=millis)
    return (_EPOCH + _dt.timedelta(milliseconds=millis)).astimezone(tz).replace(tzinfo=None)


def date_to_days(value: _dt.date) -> int:
    return value.toordinal() - _EPOCH_ORDINAL


def days_to_date(days: int) -> _dt.date:
    return _dt.date.fromordinal(days + _EPOCH_ORDINAL)


def _timestamp_nanos(value: Any, tz: _dt.tzinfo | None) -> int:
    """Epoch nanoseconds of a pandas Timestamp; naive values are wall-clock in ``tz``."""
    if value.tzinfo is None and tz is not None and tz is not UTC:
        value = value.tz_localize(tz)
    return value.value  # pandas: ns since epoch, UTC for aware values, wall clock for naive


def timestamp_to_pair(value: Any, tz: _dt.tzinfo | None) -> tuple[int, int]:
    """(seconds, nanos) of a timestamp; ``tz`` None means NTZ (wall clock as UTC)."""
    if value.tzinfo is not None and tz is None:
        value = value.tz_localize(None)
    return divmod(_timestamp_nanos(value, tz), _NANOS)


def pair_to_timestamp(seconds: int, nanos: int, tz: _dt.tzinfo | None) -> Any:
    """A naive ``pandas.Timestamp``; for TIMESTAMP it is the wall clock in ``tz``."""
    import pandas as pd

    total = seconds * _NANOS + nanos
    if tz is None or tz is UTC:
        return pd.Timestamp(total)
    return pd.Timestamp(total, tz=UTC).tz_convert(tz).tz_localize(None)


def timedelta_to_pair(value: Any) -> tuple[int, int]:
    """(seconds, nanos) of a ``pandas.Timedelta``, nanos in [0, 1e9)."""
    return divmod(value.value, _NANOS)


def pair_to_timedelta(seconds: int, nanos: int) -> Any:
    import pandas as pd

    return pd.Timedelta(seconds * _NANOS + nanos, unit="ns")
