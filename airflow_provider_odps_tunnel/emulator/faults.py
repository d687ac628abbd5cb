"""Fault injection: make chosen requests fail the way a real network or service does.

A fault matches requests by ``method``, ``resource`` (a substring or regular expression of
the request's path and query, ``/projects/p/tables/t?data&rowrange=(0,10)...``) and
``session_kind`` (``upload``, ``download``, ``stream``, ``upsert``, ``preview``,
``volume``, ``instance`` for the instance tunnel, ``sql`` for instance submission and
status). It fires on the ``nth`` matching request and on the ``times - 1`` following ones
(``times=0``: every one from the nth on). With ``per_session=True`` the count restarts for
every session (or instance) id, e.g. "the second block PUT of every upload session".

Kinds (each works on upload and download paths alike):

``status``             answer ``status`` (500, 502, 503, ...) with ``code`` and ``message``
``throttle``           answer 429 (``code`` default ``FlowExceeded``) with
                       ``Retry-After: seconds``
``reset_after_bytes``  drop the connection after ``bytes`` body bytes of the request
                       (``direction="request"``, the default for PUT and POST) or response
``delay``              wait ``seconds`` before handling; with ``point`` (``commit:staged``,
                       ``commit:published``) wait inside a commit at that instant instead
``corrupt_crc``        flip one body byte at ``offset`` (default: the middle of the first
                       piece): of the response (the client's checksum fails), or of the
                       request with ``direction="request"`` (default for PUT and POST: the
                       server answers ``CorruptedDataStream``)
``expire_session``     expire the session the request names before handling it
``move_slot``          (upsert bucket PUTs only) move the slot that owns the bucket to
                       another server and answer 308 without applying the body: the
                       session then lists the slot at ``server`` (default: a new loopback
                       address), named in ``odps-tunnel-routed-server`` unless
                       ``announce=False`` (then the client must reload to find it). Acts in
                       the upsert handler, after authentication and the session checks.
                       pyodps treats a 308 as success, so arm it for 308-aware clients only.
``drop_answer``        (stream and upsert PUTs) apply the request, wait ``seconds`` (default 0), then cut
                       the connection without answering: an answer lost after the write
                       was stored (``seconds`` above the client's read timeout makes it a
                       read timeout). Acts in the handler, after the batch is committed.
``resize_slots``       (stream PUTs) after the batch is committed, change the session's
                       slot count to ``slots`` (default 2); the answer announces the new
                       count in ``odps-tunnel-slot-num``, so the client must reload.

Every fault that fires is logged (logger ``odps_tunnel_emulator.faults``, WARNING),
recorded in :attr:`FaultRegistry.injected`, counted in :attr:`FaultRegistry.counts` and
named in the request's line of the request log.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Fault",
    "FaultRegistry",
    "FAULT_KINDS",
    "HANDLER_KINDS",
    "SESSION_KINDS",
    "request_direction",
]

logger = logging.getLogger("odps_tunnel_emulator.faults")

FAULT_KINDS = (
    "status",
    "throttle",
    "reset_after_bytes",
    "delay",
    "corrupt_crc",
    "expire_session",
    "move_slot",
    "drop_answer",
    "resize_slots",
)
# Kinds fired by a handler (``FaultRegistry.fire``) instead of before handling.
HANDLER_KINDS = ("move_slot", "drop_answer", "resize_slots")
SESSION_KINDS = (
    "upload",
    "download",
    "stream",
    "upsert",
    "preview",
    "volume",
    "instance",
    "sql",
)
CHECKPOINTS = ("commit:staged", "commit:published")


def request_direction(fault: Fault, method: str) -> bool:
    """Whether a body fault (reset, corruption) acts on the request rather than the answer."""
    direction = fault.args.get("direction")
    if direction is None:
        return method.upper() in ("PUT", "POST")
    return direction == "request"


@dataclass
class Fault:
    """One armed fault; ``seen`` counts matching requests, ``fired`` injections."""

    id: int
    kind: str
    method: str | None = None
    resource: str | None = None
    session_kind: str | None = None
    nth: int = 1
    times: int = 1
    per_session: bool = False
    args: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0
    _per_session_seen: dict[str, int] = field(default_factory=dict, repr=False)

    def matches_request(self, method: str, path: str, session_kind: str | None) -> bool:
        """Whether the app applies this fault to the request (before handling it)."""
        if "point" in self.args or self.kind in HANDLER_KINDS:
            return False
        return self.selects(method, path, session_kind)

    def selects(self, method: str, path: str, session_kind: str | None) -> bool:
        """Whether the request passes the method, session kind and resource filters."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.session_kind is not None and self.session_kind != session_kind:
            return False
        if self.resource is not None and self.resource not in path:
            try:
                if not re.search(self.resource, path):
                    return False
            except re.error:
                return False
        return True

    def take(self, session: str | None = None) -> bool:
        """Count one match (per ``session`` with ``per_session``); True if it fires."""
        self.seen += 1
        if self.per_session:
            key = session or ""
            self._per_session_seen[key] = self._per_session_seen.get(key, 0) + 1
            position = self._per_session_seen[key]
        else:
            position = self.seen
        if position < self.nth or (self.times and self.fired >= self.times):
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_per_session_seen")
        return data


class FaultRegistry:
    """The armed faults of one emulator and the log of those that fired."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._injected: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._next_id = 1

    def add(
        self,
        method: str | None = None,
        resource: str | None = None,
        session_kind: str | None = None,
        nth: int = 1,
        times: int = 1,
        kind: str = "status",
        per_session: bool = False,
        **args: Any,
    ) -> Fault:
        """Arm a fault (see the module docstring for kinds and their arguments)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if session_kind is not None and session_kind not in SESSION_KINDS:
            raise ValueError(
                f"unknown session kind {session_kind!r}; use one of {', '.join(SESSION_KINDS)}"
            )
        if "point" in args and (kind != "delay" or args["point"] not in CHECKPOINTS):
            raise ValueError(f"'point' needs kind 'delay' and one of {', '.join(CHECKPOINTS)}")
        if kind == "move_slot" and (
            session_kind not in (None, "upsert") or (method or "PUT").upper() != "PUT"
        ):
            raise ValueError("kind 'move_slot' acts on upsert bucket PUTs only")
        if kind == "drop_answer" and (
            session_kind not in (None, "stream", "upsert") or (method or "PUT").upper() != "PUT"
        ):
            raise ValueError("kind 'drop_answer' acts on stream and upsert PUTs only")
        if kind == "resize_slots" and (
            session_kind not in (None, "stream") or (method or "PUT").upper() != "PUT"
        ):
            raise ValueError("kind 'resize_slots' acts on stream PUTs only")
        if args.get("direction") not in (None, "request", "response"):
            raise ValueError("direction must be 'request' or 'response'")
        if nth < 1 or times < 0:
            raise ValueError("nth must be >= 1 and times >= 0 (0 = every match)")
        with self._lock:
            fault = Fault(
                self._next_id, kind, method, resource, session_kind, nth, times, per_session, args
            )
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault and forget the log and the counts."""
        with self._lock:
            self._faults.clear()
            self._injected.clear()
            self._counts.clear()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def injected(self) -> list[dict[str, Any]]:
        """What fired, oldest first: fault id, kind, method, path, args, time."""
        with self._lock:
            return list(self._injected)

    @property
    def counts(self) -> dict[str, int]:
        """How many faults fired, per kind."""
        with self._lock:
            return dict(self._counts)

    def _record(self, fault: Fault, method: str, path: str) -> None:
        entry = {
            "fault": fault.id,
            "kind": fault.kind,
            "method": method,
            "path": path,
            "args": dict(fault.args),
            "time": time.time(),
        }
        self._injected.append(entry)
        self._counts[fault.kind] += 1
        logger.warning(
            "injected fault %s (%s) on %s %s %s", fault.id, fault.kind, method, path, fault.args
        )

    def match(
        self, method: str, path: str, session_kind: str | None, session: str | None = None
    ) -> Fault | None:
        """The fault that fires on this request, if any (at most one per request)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches_request(method, path, session_kind) and fault.take(session):
                    self._record(fault, method, path)
                    return fault
        return None

    def fire(
        self,
        kind: str,
        method: str,
        path: str,
        session_kind: str | None,
        session: str | None = None,
    ) -> Fault | None:
        """The fault of handler kind ``kind`` that fires on this request, if any."""
        with self._lock:
            for fault in self._faults:
                if (
                    fault.kind == kind
                    and fault.selects(method, path, session_kind)
                    and fault.take(session)
                ):
                    self._record(fault, method, path)
                    return fault
        return None

    def checkpoint(self, name: str) -> None:
        """Called by the catalog at a commit instant: sleeps if a delay fault targets it."""
        delay = 0.0
        with self._lock:
            for fault in self._faults:
                if fault.args.get("point") == name and fault.take():
                    self._record(fault, "-", name)
                    delay = float(fault.args.get("seconds", 1.0))
                    break
        if delay:
            time.sleep(delay)
