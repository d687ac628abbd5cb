"""Writes applied once: the retry traces that stream and upsert sessions remember.

Every attempt of a client's write carries ``odps-tunnel-retry-trace-id`` (one id per
logical write, kept across its retries; protocol §8.3). A session remembers the traces of
the last :data:`TRACE_MEMORY` writes it applied, with what it answered, in its stored
state. A PUT whose trace is remembered is a replay of a write whose answer was lost: it is
answered again and not applied a second time. The lookup and the write must happen under
the session's lock, so that two racing sends of one write are applied once.

The fault ``drop_answer`` is the other half: it lets a write be applied and then cuts the
connection, so that the client has to send it again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .call import Call
from .ingest import ConnectionAborted
from .requestlog import MAX_TRACE_LENGTH, RETRY_TRACE_HEADER

__all__ = ["TRACE_MEMORY", "trace_id", "applied", "remember", "drop_answer"]

#: Applied traces a session remembers (a retry follows its lost answer closely).
TRACE_MEMORY = 256


def trace_id(call: Call) -> str | None:
    """The write's retry trace id; None for none, a blank or an implausibly long one
    (those are applied as usual, but not remembered)."""
    trace = (call.header(RETRY_TRACE_HEADER) or "").strip()
    return trace if 0 < len(trace) <= MAX_TRACE_LENGTH else None


def applied(session: dict[str, Any], trace: str | None) -> dict[str, Any] | None:
    """What the session answered when it applied ``trace``, or None if it did not."""
    if trace is None:
        return None
    return next((t for t in session.get("traces", []) if t["trace"] == trace), None)


def remember(session: dict[str, Any], trace: str | None, answer: dict[str, Any]) -> None:
    """Record that the session applied ``trace`` and answered ``answer`` (a JSON object);
    the caller saves the session."""
    if trace is not None:
        record = {**answer, "trace": trace}
        session["traces"] = (session.get("traces", []) + [record])[-TRACE_MEMORY:]


async def drop_answer(call: Call, session_kind: str, session_id: str) -> None:
    """The fault ``drop_answer``, after the write was applied: wait ``seconds`` and cut
    the connection, so the client never sees the answer."""
    drop = call.fire_fault("drop_answer", session_kind, session_id)
    if drop is not None:
        await asyncio.sleep(float(drop.args.get("seconds", 0)))
        call.abort_connection()
        raise ConnectionAborted()
