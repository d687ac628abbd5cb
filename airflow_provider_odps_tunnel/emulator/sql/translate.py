"""Rewriting ODPS query text as DuckDB query text, token by token.

DuckDB understands most of ODPS's SELECT syntax as it is; what differs is lexical or a
name:

* backtick names become double-quoted names, and ``"text"`` (a string in ODPS) a
  single-quoted string, with ODPS's backslash escapes already decoded by the lexer;
* type names inside ``CAST(x AS type)`` and the literals ``DATETIME '...'`` /
  ``TIMESTAMP '...'`` become the DuckDB types of ``typemap`` (``STRING`` → ``VARCHAR``,
  ``DATETIME`` → ``TIMESTAMP_MS``, ``ARRAY<T>`` → ``T[]``, ...);
* ``==`` becomes ``=``, and a few functions are renamed (:data:`FUNCTIONS`);
* ``123.45BD`` (a DECIMAL literal) becomes an exact ``DECIMAL(p,s)`` cast, and the interval
  functions and literals become DuckDB INTERVALs (``intervals``).

Table names need no rewriting: every project is a DuckDB catalog (see ``views``), so
``project.schema.table``, ``project.table`` and ``table`` resolve as they do in ODPS.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_odps_tunnel.tunnel.codec.types import parse_type

from . import intervals
from .lexer import Token
from .typemap import MAX_DUCKDB_PRECISION, duckdb_type, quote_ident

__all__ = ["translate", "FUNCTIONS", "matching_paren"]

# ODPS function name -> DuckDB function name, where only the name differs.
FUNCTIONS = {
    "ARRAY": "list_value",
    "NVL": "coalesce",
    "SIZE": "len",
    "COLLECT_LIST": "list",
    "TOLOWER": "lower",
    "TOUPPER": "upper",
}
# Functions without arguments whose DuckDB form is an expression (UTC wall clock).
_NILADIC = {"GETDATE": "CAST(now() AS TIMESTAMP_MS)"}
_TYPED_LITERALS = {"DATETIME": "TIMESTAMP_MS", "TIMESTAMP": "TIMESTAMP_NS"}


def matching_paren(tokens: Sequence[Token], open_idx: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``open_idx``; ``ValueError`` if none."""
    depth = 0
    for idx in range(open_idx, len(tokens)):
        if tokens[idx].is_op("("):
            depth += 1
        elif tokens[idx].is_op(")"):
            depth -= 1
            if depth == 0:
                return idx
    raise ValueError("unbalanced parentheses")


def _type_text(tokens: Sequence[Token]) -> str:
    """A type written in ODPS syntax, as DuckDB type text (unknown types pass through)."""
    text = "".join(t.text for t in tokens)
    try:
        return duckdb_type(parse_type(text))
    except (TypeError, ValueError):
        return " ".join(t.text for t in tokens)


def _piece(token: Token) -> str:
    if token.kind == "ident":
        return quote_ident(token.value)
    if token.kind == "string":
        return "'" + token.value.replace("'", "''") + "'"
    if token.is_op("=="):
        return "="
    return token.text


def _decimal_literal(number: str) -> str:
    """``123.45BD`` as an exact DuckDB DECIMAL of the literal's own digits."""
    whole, _, fraction = number.partition(".")
    scale = len(fraction)
    precision = min(max(len(whole.lstrip("0")) + scale, scale, 1), MAX_DUCKDB_PRECISION)
    return f"CAST('{number}' AS DECIMAL({precision},{min(scale, precision)}))"


def _special(tokens: Sequence[Token], idx: int) -> tuple[str, int] | None:
    """DuckDB text and token count of an ODPS-only form starting at ``idx``, if any."""
    token = tokens[idx]
    nxt = tokens[idx + 1] if idx + 1 < len(tokens) else None
    if (
        token.kind == "number"
        and nxt is not None
        and nxt.is_word("BD")
        and nxt.pos == token.pos + len(token.text)
        and "e" not in token.text.lower()
    ):
        return _decimal_literal(token.text), 2
    if token.upper == "INTERVAL" and nxt is not None and nxt.kind in ("string", "number"):
        found = intervals.literal_units(tokens, idx + 2)
        if found is not None:
            units, width = found
            return f"({intervals.literal_sql(nxt, units)})", 2 + width
    if token.upper in intervals.FUNCTIONS and nxt is not None and nxt.is_op("("):
        close = matching_paren(tokens, idx + 1)
        argument = tokens[idx + 2 : close]
        return intervals.function_sql(token.upper, argument, translate(argument)), close - idx + 1
    return None


def translate(tokens: Sequence[Token]) -> str:
    """DuckDB text of an ODPS query or expression given as tokens (no spaces/comments)."""
    out: list[str] = []
    idx = 0
    prev_end: int | None = None
    while idx < len(tokens):
        token = tokens[idx]
        if prev_end is not None and token.pos > prev_end:
            out.append(" ")
        special = _special(tokens, idx)
        if special is not None:
            text, width = special
            out.append(text)
            last = tokens[idx + width - 1]
            prev_end = last.pos + len(last.text)
            idx += width
            continue
        nxt = tokens[idx + 1] if idx + 1 < len(tokens) else None
        upper = token.upper
        if upper == "CAST" and nxt is not None and nxt.is_op("("):
            close = matching_paren(tokens, idx + 1)
            inner = tokens[idx + 2 : close]
            as_at = _top_level_as(inner)
            if as_at is not None:
                expr = translate(inner[:as_at])
                out.append(f"CAST({expr} AS {_type_text(inner[as_at + 1 :])})")
                prev_end = tokens[close].pos + 1
                idx = close + 1
                continue
        if upper in _TYPED_LITERALS and nxt is not None and nxt.kind == "string":
            out.append(f"CAST({_piece(nxt)} AS {_TYPED_LITERALS[upper]})")
            prev_end = nxt.pos + len(nxt.text)
            idx += 2
            continue
        if nxt is not None and nxt.is_op("("):
            after = tokens[idx + 2] if idx + 2 < len(tokens) else None
            if upper in _NILADIC and after is not None and after.is_op(")"):
                out.append(_NILADIC[upper])
                prev_end = after.pos + 1
                idx += 3
                continue
            if upper in FUNCTIONS:
                out.append(FUNCTIONS[upper])
                prev_end = token.pos + len(token.text)
                idx += 1
                continue
        out.append(_piece(token))
        prev_end = token.pos + len(token.text)
        idx += 1
    return "".join(out)


def _top_level_as(tokens: Sequence[Token]) -> int | None:
    depth = 0
    for idx, token in enumerate(tokens):
        if token.is_op("("):
            depth += 1
        elif token.is_op(")"):
            depth -= 1
        elif depth == 0 and token.is_word("AS"):
            return idx
    return None
