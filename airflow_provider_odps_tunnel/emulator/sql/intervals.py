"""ODPS interval values in SQL: ``interval_day_time()``, ``interval_year_month()`` and
``INTERVAL '...' <unit> [TO <unit>]`` literals, and their result types.

Inside DuckDB an interval is a native INTERVAL (so ``datetime + interval`` works); a
day-time value keeps microseconds (DuckDB's precision; ODPS keeps nanoseconds). A result
column of DuckDB type INTERVAL is INTERVAL_YEAR_MONTH when its values hold months, and
INTERVAL_DAY_TIME when they hold days or time; a column with neither (NULLs, zero) takes
the statement's kind (:func:`result_kind`: year-month when it builds only year-month
intervals). A value mixing both fails the statement. The result is stored with ``columnar``'s types (``struct<sec, nano>``
and int32 months), which the record codec sends as the service does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as odps

from .. import columnar
from .errors import SqlError
from .lexer import Token

__all__ = [
    "MACROS",
    "FUNCTIONS",
    "literal_sql",
    "function_sql",
    "literal_units",
    "result_kind",
    "odps_type",
    "to_storage",
    "render",
]

_DAY_TIME_UNITS = ("DAY", "HOUR", "MINUTE", "SECOND")
_YEAR_MONTH_UNITS = ("YEAR", "MONTH")
_NANOS = 1_000_000_000
_MICROS_PER = {"DAY": 86_400_000_000, "HOUR": 3_600_000_000, "MINUTE": 60_000_000}
FUNCTIONS = {"INTERVAL_DAY_TIME": "day_time", "INTERVAL_YEAR_MONTH": "year_month"}

# Fallbacks for arguments that are not string literals (columns, expressions).
MACROS = (
    "CREATE OR REPLACE TEMP MACRO odps_interval_year_month(s) AS "
    "(CASE WHEN starts_with(trim(s), '-') THEN -1 ELSE 1 END) * to_months(CAST("
    "CAST(split_part(ltrim(trim(s), '-'), '-', 1) AS BIGINT) * 12 + "
    "CAST(split_part(ltrim(trim(s), '-'), '-', 2) AS BIGINT) AS INTEGER))",
    "CREATE OR REPLACE TEMP MACRO odps_interval_day_time(s) AS "
    "(CASE WHEN starts_with(trim(s), '-') THEN -1 ELSE 1 END) * ("
    "to_days(CAST(split_part(ltrim(trim(s), '-'), ' ', 1) AS INTEGER)) + "
    "CAST(split_part(ltrim(trim(s), '-'), ' ', 2) AS INTERVAL))",
)

_YM = re.compile(r"(\d+)-(\d+)\Z")
_INT = re.compile(r"\d+\Z")


def _bad(text: str, kind: str) -> SqlError:
    name = "INTERVAL_YEAR_MONTH" if kind == "year_month" else "INTERVAL_DAY_TIME"
    return SqlError.parse(f"cannot parse {text} as a valid {name}")


def _split_sign(text: str) -> tuple[int, str]:
    text = text.strip()
    if text.startswith("-"):
        return -1, text[1:].strip()
    return 1, text.lstrip("+").strip()


def _months(text: str, units: tuple[str, str]) -> int:
    """Months of a year-month text: ``y-m`` (YEAR TO MONTH), ``y`` (YEAR), ``m`` (MONTH)."""
    sign, body = _split_sign(text)
    if units == ("YEAR", "MONTH"):
        match = _YM.match(body)
        if not match or int(match.group(2)) > 11:
            raise _bad(text, "year_month")
        return sign * (int(match.group(1)) * 12 + int(match.group(2)))
    if not _INT.match(body):
        raise _bad(text, "year_month")
    return sign * int(body) * (12 if units[0] == "YEAR" else 1)


def _micros(text: str, units: tuple[str, str]) -> int:
    """Microseconds of a day-time text whose fields run from ``units[0]`` to ``units[1]``."""
    sign, body = _split_sign(text)
    first, last = (_DAY_TIME_UNITS.index(u) for u in units)
    fields = re.split(r"[ :]", body.split(".")[0]) if body else []
    fraction = body.split(".", 1)[1] if "." in body else ""
    if (
        len(fields) != last - first + 1
        or not all(_INT.match(f) for f in fields)
        or (fraction and (last != 3 or not _INT.match(fraction) or len(fraction) > 9))
    ):
        raise _bad(text, "day_time")
    total = 0
    for unit, value in zip(_DAY_TIME_UNITS[first : last + 1], fields, strict=True):
        total += int(value) * _MICROS_PER.get(unit, 1_000_000)
    total += int(fraction.ljust(9, "0")[:6]) if fraction else 0
    return sign * total


def _interval(kind: str, text: str, units: tuple[str, str]) -> str:
    if kind == "year_month":
        return f"to_months({_months(text, units)})"
    return f"to_microseconds({_micros(text, units)})"


def literal_units(tokens: Sequence[Token], at: int) -> tuple[tuple[str, str], int] | None:
    """``(first unit, last unit)`` and the token count of the unit words after the literal
    value at ``at`` (``DAY``, ``DAY TO SECOND``, ...); None when no unit follows."""
    words = [t.upper for t in tokens[at : at + 3]]
    if not words or words[0] not in _DAY_TIME_UNITS + _YEAR_MONTH_UNITS:
        return None
    if len(words) == 3 and words[1] == "TO" and words[2] in _DAY_TIME_UNITS + _YEAR_MONTH_UNITS:
        return (words[0], words[2]), 3
    return (words[0], words[0]), 1


def literal_sql(value: Token, units: tuple[str, str]) -> str:
    """DuckDB text of ``INTERVAL <value> <units>``."""
    text = value.value if value.kind == "string" else value.text
    year_month = [u in _YEAR_MONTH_UNITS for u in units]
    if year_month[0] != year_month[1]:
        raise _bad(text, "day_time")
    if year_month[0]:
        return _interval("year_month", text, units)
    if _DAY_TIME_UNITS.index(units[0]) > _DAY_TIME_UNITS.index(units[1]):
        raise _bad(text, "day_time")
    return _interval("day_time", text, units)


def function_sql(name: str, argument: Sequence[Token], translated: str) -> str:
    """DuckDB text of ``interval_day_time(arg)`` / ``interval_year_month(arg)``."""
    kind = FUNCTIONS[name]
    if len(argument) == 1 and argument[0].kind == "string":
        units = ("YEAR", "MONTH") if kind == "year_month" else ("DAY", "SECOND")
        return f"({_interval(kind, argument[0].value, units)})"
    return f"odps_interval_{kind}({translated})"


def result_kind(tokens: Sequence[Token]) -> str:
    """``year_month`` if the statement builds only year-month intervals, else ``day_time``."""
    year_month = day_time = False
    for idx, token in enumerate(tokens):
        if token.upper in FUNCTIONS:
            year_month |= FUNCTIONS[token.upper] == "year_month"
            day_time |= FUNCTIONS[token.upper] == "day_time"
        elif token.upper == "INTERVAL" and idx + 2 < len(tokens):
            found = literal_units(tokens, idx + 2)
            if found is not None:
                year_month |= found[0][0] in _YEAR_MONTH_UNITS
                day_time |= found[0][0] in _DAY_TIME_UNITS
    return "year_month" if year_month and not day_time else "day_time"


def odps_type(kind: str) -> odps.DataType:
    """The ODPS type of an interval kind (``year_month`` or ``day_time``)."""
    return odps.interval_year_month if kind == "year_month" else odps.interval_day_time


def to_storage(array: pa.Array, kind: str) -> pa.Array:
    """A DuckDB INTERVAL column (Arrow month_day_nano) in ``columnar``'s storage type."""
    out = []
    for value in array.to_pylist():
        if value is None:
            out.append(None)
            continue
        months, days, nanos = value.months, value.days, value.nanoseconds
        if kind == "year_month":
            if days or nanos:
                raise SqlError.runtime("an INTERVAL_YEAR_MONTH value holds days or seconds")
            out.append(months)
        else:
            if months:
                raise SqlError.runtime("an INTERVAL_DAY_TIME value holds months")
            sec, nano = divmod(days * 86_400 * _NANOS + nanos, _NANOS)
            out.append({"sec": sec, "nano": nano})
    return pa.array(out, columnar.storage_type(odps_type(kind)))


def render(value: Any, kind: str) -> str:
    """The service's text of a stored interval (int months, or a ``{sec, nano}`` dict):
    ``y-m``, or ``d hh:mm:ss.nnnnnnnnn``."""
    if kind == "year_month":
        sign = "-" if value < 0 else ""
        years, months = divmod(abs(value), 12)
        return f"{sign}{years}-{months}"
    total = value["sec"] * _NANOS + value["nano"]
    sign = "-" if total < 0 else ""
    seconds, nano = divmod(abs(total), _NANOS)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"{sign}{days} {hour:02d}:{minute:02d}:{sec:02d}.{nano:09d}"
