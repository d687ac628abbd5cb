"""Table download sessions (protocol §3.1): create, reload, read row ranges.

A session pins the partition's snapshot (the manifest's file list) when it is created, so
later commits, overwrites and upserts never change what it reads, and the files it reads
are kept until it expires.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..call import Call, json_response
from ..catalog import DataFile, TableInfo
from .reading import check_readable, row_range, rows_response, selected_columns

__all__ = ["create", "reload", "read"]


def session_json(session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    return {
        "DownloadID": session["id"],
        "Status": "expired" if session["status"] == "expired" else "normal",
        "RecordCount": session["rows"],
        "Schema": info.schema.to_json(),
        "QuotaName": session.get("quota", ""),
        "SupportReadByRawSize": False,
    }


async def create(call: Call) -> Response:
    """``POST T?downloads``: snapshot the partition. ``asyncmode`` sessions are ready at
    once (status ``normal``), which every client accepts."""
    state = call.state
    info = call.table()
    params = call.session_params(info)
    call.limit_sessions(info, "download")
    with state.catalog.table_lock(info):
        snapshot = state.catalog.snapshot(info, params.partition)
        session = call.new_session(
            "download",
            params,
            {
                "version": snapshot.version,
                "files": [f.to_json() for f in snapshot.files],
                "rows": snapshot.rows,
            },
            info,
        )
    return json_response(session_json(session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("download", call.session_id("downloadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T?downloadid=``."""
    info = call.table()
    return json_response(session_json(_session(call, info), info))


async def read(call: Call) -> Response:
    """``GET T?data&downloadid=&rowrange=(s,c)[&columns=][&arrow]``: stream the rows."""
    info = call.table()
    session = _session(call, info)
    check_readable(session, "download")
    start, count = row_range(call, session["rows"])
    files = [DataFile.from_json(f) for f in session["files"]]
    selected = selected_columns(call, info.schema, info.name)
    return rows_response(call, info.data_dir, files, info.schema, start, count, selected)
