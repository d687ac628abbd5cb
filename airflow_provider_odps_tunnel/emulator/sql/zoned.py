"""The SQL time zone: which zone a statement's DATETIME and TIMESTAMP values are in.

The service computes DATETIME and TIMESTAMP values as wall clock in the project's time zone
(the project property ``odps.sql.timezone``; the service's default is ``Asia/Shanghai``),
which a job may override with the ``odps.sql.timezone`` setting (pyodps sends it in the
task's settings when ``options.local_timezone`` is set, or a script says
``set odps.sql.timezone=...;``). The wire always carries epoch instants.

The emulator stores epoch instants (as UTC wall clock). A statement's views convert them to
wall clock in its zone (:func:`from_instant`) and everything written back (query results,
INSERT rows) converts wall clock to instants again (:func:`to_instant`), so a literal
``DATETIME '2024-01-01 00:00:00'`` is midnight in the statement's zone. With ``UTC`` both
conversions are the identity and are left out of the SQL.
"""

from __future__ import annotations

import zoneinfo

from .errors import SqlError

__all__ = ["TIMEZONE_KEY", "check_zone", "from_instant", "to_instant"]

TIMEZONE_KEY = "odps.sql.timezone"
_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/GMT", "GMT"}


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone, else the service's semantic error."""
    name = name.strip().strip("'\"")
    if name in _UTC_NAMES:
        return "UTC"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SqlError.semantic(f"invalid time zone {name!r} for {TIMEZONE_KEY}") from None
    return name


def _quoted(zone: str) -> str:
    return "'" + zone.replace("'", "''") + "'"


def _shift(expr: str, duck_type: str, source: str, target: str) -> str:
    """``expr`` (wall clock in ``source``) as wall clock in ``target``, keeping its type.

    The offset is added as an INTERVAL so TIMESTAMP_NS keeps its nanoseconds.
    """
    plain = f"CAST({expr} AS TIMESTAMP)"
    moved = f"timezone({_quoted(target)}, timezone({_quoted(source)}, {plain}))"
    return f"CAST({expr} + ({moved} - {plain}) AS {duck_type})"


def from_instant(expr: str, duck_type: str, zone: str) -> str:
    """A stored instant (UTC wall clock) as wall clock in ``zone``."""
    return expr if zone == "UTC" else _shift(expr, duck_type, "UTC", zone)


def to_instant(expr: str, duck_type: str, zone: str) -> str:
    """Wall clock in ``zone`` as the instant it names (UTC wall clock), for storing."""
    return expr if zone == "UTC" else _shift(expr, duck_type, zone, "UTC")
