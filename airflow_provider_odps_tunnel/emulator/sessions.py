"""Tunnel sessions of every kind, persisted as one JSON file each.

A session is a plain dict (what its kind's handler needs) plus the common keys ``id``,
``kind``, ``status``, ``created`` and ``expires``. Every change is written through to
``sessions/<id>.json`` atomically before the request that made it is answered, so sessions
survive a restart or a crash. The store also answers which data files live sessions still
need (download snapshots, uploaded blocks, pending upserts), which the catalog's garbage
collector must keep.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .clock import Clock
from .errors import EmulatorError
from .fsutil import atomic_write_json, read_json

__all__ = ["SessionStore", "check_writable", "new_session_id"]

# Error of an id naming no session of a kind (names read in the SDKs or inferred, protocol §8.2).
_NOT_FOUND = {
    "download": ("NoSuchDownload", "download"),
    "upload": ("NoSuchUpload", "upload"),
    "stream": ("StreamSessionNotFound", "stream upload"),
    "upsert": ("UpsertSessionNotFound", "upsert"),
    "volume_upload": ("NoSuchUpload", "volume upload"),
    "volume_download": ("NoSuchDownload", "volume download"),
    "volume_fs_write": ("NoSuchUpload", "file-system volume write"),
    "instance_download": ("NoSuchDownload", "instance download"),
}
# Statuses after which a session accepts no more data.
FINAL_STATUSES = {"closed", "committed", "aborted", "expired", "canceled"}


def new_session_id() -> str:
    """An id in the service's style: a UTC timestamp followed by random hex."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:18]


class SessionStore:
    """All sessions of one data directory, cached in memory and written through to disk."""

    def __init__(self, root: Path, clock: Clock, lifetime: float):
        self.dir = root / "sessions"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.lifetime = lifetime
        self._sessions: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._last_purge = float("-inf")
        for path in self.dir.glob("*.json"):
            data = read_json(path)
            self._sessions[data["id"]] = data

    def create(self, kind: str, data: dict[str, Any], lifetime: float | None = None) -> dict:
        """Persist a new session of ``kind`` holding ``data``; returns the session dict."""
        now = self.clock.now()
        self._purge(now)
        session = dict(data)
        session.update(
            id=new_session_id(),
            kind=kind,
            created=now,
            expires=now + (lifetime or self.lifetime),
        )
        session.setdefault("status", "normal")
        self.save(session)
        return session

    def _purge(self, now: float) -> None:
        """Forget sessions that expired more than a lifetime ago, in memory and on disk.

        Runs at most once per tenth of a lifetime of the clock (which may also be set
        back). Until a session is forgotten its use answers "expired"; afterwards, that it
        does not exist. Without this every session ever created stayed in memory, a
        download session with its snapshot's file list.
        """
        if self._last_purge <= now < self._last_purge + self.lifetime / 10:
            return
        self._last_purge = now
        cutoff = now - self.lifetime
        with self._guard:
            old = [sid for sid, s in self._sessions.items() if s["expires"] < cutoff]
            for sid in old:
                del self._sessions[sid]
                self._locks.pop(sid, None)
        for sid in old:
            (self.dir / f"{sid}.json").unlink(missing_ok=True)

    def save(self, session: dict[str, Any]) -> None:
        atomic_write_json(self.dir / f"{session['id']}.json", session)
        with self._guard:
            self._sessions[session["id"]] = session

    def find(self, session_id: str) -> dict[str, Any] | None:
        with self._guard:
            return self._sessions.get(session_id)

    def get(self, kind: str, session_id: str, table_id: str | None = None) -> dict[str, Any]:
        """The session ``session_id`` of ``kind``, marked expired if its time is up.

        ``table_id`` guards against a session of a dropped table that was created again.
        """
        session = self.find(session_id) if session_id else None
        if (
            session is None
            or session["kind"] != kind
            or (table_id is not None and session.get("table_id") != table_id)
        ):
            code, label = _NOT_FOUND[kind]
            raise EmulatorError(code, f"The {label} session {session_id!r} does not exist", 404)
        if session["status"] not in FINAL_STATUSES and self.clock.now() > session["expires"]:
            session["status"] = "expired"
            self.save(session)
        return session

    def expire(self, session_id: str) -> bool:
        """Make a session expire now (fault injection); False if there is no such session."""
        session = self.find(session_id)
        if session is None:
            return False
        session["expires"] = self.clock.now() - 1
        if session["status"] not in FINAL_STATUSES:
            session["status"] = "expired"
        self.save(session)
        return True

    @contextmanager
    def locked(self, session_id: str) -> Iterator[None]:
        """Serialises changes to one session (block registration, commit)."""
        with self._guard:
            lock = self._locks.setdefault(session_id, threading.RLock())
        with lock:
            yield

    def pinned_files(self, table_id: str) -> set[str]:
        """Data files that live sessions of a table reference and so must be kept."""
        now = self.clock.now()
        with self._guard:
            sessions = list(self._sessions.values())
        names: set[str] = set()
        for s in sessions:
            if s.get("table_id") != table_id:
                continue
            if s["kind"] == "download" and now <= s["expires"]:
                names.update(f["name"] for f in s["files"])
            elif s["kind"] in ("upload", "upsert") and s["status"] == "normal":
                names.update(b["file"] for b in s.get("blocks", {}).values())
                names.update(p["file"] for p in s.get("pending", []))
        return names


def check_writable(session: dict[str, Any], label: str) -> None:
    """``StatusConflict`` unless the session still takes data (protocol §8.2)."""
    status = session["status"]
    if status == "expired":
        raise EmulatorError.status_conflict(f"The {label} session is expired")
    if status != "normal":
        raise EmulatorError.status_conflict(
            f"The {label} session {session['id']} is {status} and takes no more data"
        )
