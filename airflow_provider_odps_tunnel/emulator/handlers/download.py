"""Table download sessions (protocol §3.1): create, reload, read row ranges.

A session pins the partition's snapshot (the manifest's file list) when it is created, so
later commits, overwrites and upserts never change what it reads, and the files it reads
are kept until it expires. With ``download_init_delay`` an ``asyncmode`` session is
``initiating`` (reads refused with ``StatusConflict``) until that much of the emulator's
clock has passed, as the service prepares a large snapshot in the background.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..call import Call, json_response
from ..catalog import DataFile, TableInfo
from ..errors import EmulatorError
from .reading import check_readable, row_range, rows_response, selected_columns

__all__ = ["create", "reload", "read"]


def _status(session: dict[str, Any], now: float) -> str:
    """``expired``, ``initiating`` (before its ``ready_at``) or ``normal``."""
    if session["status"] == "expired":
        return "expired"
    return "initiating" if now < session.get("ready_at", 0.0) else "normal"


def session_json(session: dict[str, Any], info: TableInfo, now: float) -> dict[str, Any]:
    return {
        "DownloadID": session["id"],
        "Status": _status(session, now),
        "RecordCount": session["rows"],
        "Schema": info.schema.to_json(),
        "QuotaName": session.get("quota", ""),
        "SupportReadByRawSize": False,
    }


async def create(call: Call) -> Response:
    """``POST T?downloads[&asyncmode=true]``: snapshot the partition. An ``asyncmode``
    session is ready at once unless ``download_init_delay`` is set."""
    state = call.state
    info = call.table()
    params = call.session_params(info)
    call.limit_sessions(info, "download")
    now = state.clock.now()
    data: dict[str, Any] = {}
    if call.flag("asyncmode") and state.config.download_init_delay > 0:
        data["ready_at"] = now + state.config.download_init_delay
    with state.catalog.table_lock(info):
        snapshot = state.catalog.snapshot(info, params.partition)
        data.update(
            version=snapshot.version,
            files=[f.to_json() for f in snapshot.files],
            rows=snapshot.rows,
        )
        session = call.new_session("download", params, data, info)
    return json_response(session_json(session, info, now))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("download", call.session_id("downloadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T?downloadid=``."""
    info = call.table()
    return json_response(session_json(_session(call, info), info, call.state.clock.now()))


async def read(call: Call) -> Response:
    """``GET T?data&downloadid=&rowrange=(s,c)[&columns=][&arrow]``: stream the rows."""
    info = call.table()
    session = _session(call, info)
    check_readable(session, "download")
    if _status(session, call.state.clock.now()) == "initiating":
        raise EmulatorError.status_conflict(
            f"The download session {session['id']} is initiating; reload until it is normal"
        )
    start, count = row_range(call, session["rows"])
    files = [DataFile.from_json(f) for f in session["files"]]
    selected = selected_columns(call, info.schema, info.name)
    return rows_response(call, info.data_dir, files, info.schema, start, count, selected)
