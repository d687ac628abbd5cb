"""Table download sessions (protocol §3.1): create, reload, read row ranges.

A session pins the partition's snapshot (the manifest's file list) when it is created, so
later commits, overwrites and upserts never change what it reads, and the files it reads
are kept until it expires.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response, StreamingResponse

from ..call import Call, json_response
from ..catalog import DataFile, TableInfo
from ..egress import arrow_body, choose_encoding, compressed, read_range, record_body
from ..errors import EmulatorError

__all__ = ["create", "reload", "read"]

_ROWRANGE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\Z")


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
    spec = call.partition(info)
    with state.catalog.table_lock(info):
        snapshot = state.catalog.snapshot(info, spec)
        session = state.sessions.create(
            "download",
            {
                "project": info.project,
                "table": info.name,
                "table_id": info.table_id,
                "partition": dict(spec.items()),
                "version": snapshot.version,
                "files": [f.to_json() for f in snapshot.files],
                "rows": snapshot.rows,
                "quota": call.params.get("quotaName", ""),
            },
        )
    return json_response(session_json(session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("download", call.session_id("downloadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T?downloadid=``."""
    info = call.table()
    return json_response(session_json(_session(call, info), info))


def _columns(call: Call, info: TableInfo) -> list[str] | None:
    text = call.params.get("columns")
    if not text:
        return None
    names = []
    for name in text.split(","):
        name = name.strip()
        if name not in info.schema or info.schema.is_partition(name):
            raise EmulatorError(
                "InvalidColumnSpec", f"column {name!r} is not a data column of {info.name}", 400
            )
        names.append(info.schema.get_column(name).name)
    return names


async def read(call: Call) -> Response:
    """``GET T?data&downloadid=&rowrange=(s,c)[&columns=][&arrow]``: stream the rows.

    ``count`` is clamped to the rows that exist; only a ``start`` past the end is an error.
    Record bodies number fields in the order of ``columns``; Arrow bodies always carry the
    selected columns in table order (protocol §6.4).
    """
    info = call.table()
    session = _session(call, info)
    if session["status"] == "expired":
        raise EmulatorError.status_conflict(f"The download session {session['id']} is expired")
    match = _ROWRANGE.match(call.params.get("rowrange", "").strip())
    if not match:
        raise EmulatorError(
            "InvalidRowRange", f"invalid rowrange {call.params.get('rowrange')!r}", 400
        )
    start, count = int(match.group(1)), int(match.group(2))
    total = session["rows"]
    if start > total:
        raise EmulatorError(
            "InvalidRowRange", f"rowrange ({start},{count}) is beyond the {total} rows", 400
        )
    count = min(count, total - start)
    files = [DataFile.from_json(f) for f in session["files"]]
    selected = _columns(call, info)
    arrow = "arrow" in call.params
    if arrow:
        wanted = set(selected or info.schema.names)
        names = [c.name for c in info.schema.simple_columns if c.name in wanted]
        body = arrow_body(read_range(info.data_dir, files, start, count, names))
    else:
        names = selected or [c.name for c in info.schema.simple_columns]
        columns = [info.schema.get_column(n) for n in names]
        body = record_body(read_range(info.data_dir, files, start, count, names), columns)
    encoding = choose_encoding(call.header("accept-encoding"))
    headers = {"Content-Encoding": encoding} if encoding else {}
    return StreamingResponse(
        compressed(body, encoding), headers=headers, media_type="application/octet-stream"
    )
