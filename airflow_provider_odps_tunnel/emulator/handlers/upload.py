"""Block upload sessions (protocol §3.2): create, reload, write blocks, commit.

Each block PUT becomes one durable data file referenced by the session (a rewrite of the
same block id replaces it). Commit publishes all uploaded blocks, in block id order, to the
partition's manifest in one atomic rename; the manifest remembers the session, so a commit
interrupted by a crash is completed once. A commit of a session that is already committed
is answered 409 ``StatusConflict``, as the service does (the Java SDK's
``CloseUploadSessionStatusConflict``), unless ``idempotent_commit`` is set: then the
session is answered again.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.responses import Response

from ..call import Call, json_response, metrics_header
from ..catalog import DataFile, TableInfo
from ..errors import EmulatorError
from ..ingest import arrow_to_file, records_to_file
from ..sessions import check_writable

__all__ = ["create", "reload", "write_block", "commit", "MAX_BLOCK_ID"]

MAX_BLOCK_ID = 19999


def session_json(call: Call, session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    blocks = sorted(session["blocks"], key=int)
    return {
        "UploadID": session["id"],
        "Status": session["status"],
        "UploadedBlockList": [{"BlockID": int(b)} for b in blocks],
        "Schema": info.schema.to_json(),
        "MaxFieldSize": call.state.config.max_field_size,
        "QuotaName": session.get("quota", ""),
    }


async def create(call: Call) -> Response:
    """``POST T?uploads[&overwrite=true][&create_partition=true]``.

    A missing partition is an error unless ``create_partition``; it is then created by the
    commit (nothing becomes visible before).
    """
    info = call.table()
    params = call.session_params(info, write=True)
    call.limit_sessions(info, "upload")
    session = call.new_session(
        "upload",
        params,
        {
            "overwrite": params.overwrite,
            "create_partition": params.create_partition,
            "blocks": {},
        },
        info,
    )
    return json_response(session_json(call, session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("upload", call.session_id("uploadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T?uploadid=``."""
    info = call.table()
    return json_response(session_json(call, _session(call, info), info))


def _block_id(call: Call) -> int:
    text = call.params.get("blockid", "")
    try:
        block = int(text)
    except ValueError:
        block = -1
    if not 0 <= block <= MAX_BLOCK_ID:
        raise EmulatorError("InvalidBlockID", f"block id {text!r} is not in 0..{MAX_BLOCK_ID}", 400)
    return block


async def write_block(call: Call) -> Response:
    """``PUT T?uploadid=&blockid=[&arrow]``: decode the body into the block's file."""
    state = call.state
    started = time.monotonic()
    info = call.table()
    session = _session(call, info)
    check_writable(session, "upload")
    block = _block_id(call)
    arrow = "arrow" in call.params
    out = state.catalog.new_data_file(info)
    encoding = call.header("content-encoding")
    schema = info.arrow_schema()
    if arrow:
        work = functools.partial(
            arrow_to_file,
            content_encoding=encoding,
            schema=schema,
            out=out,
            max_field_size=state.config.max_field_size,
        )
    else:
        work = functools.partial(
            records_to_file,
            content_encoding=encoding,
            wire_columns=info.schema.simple_columns,
            schema=schema,
            out=out,
            max_field_size=state.config.max_field_size,
        )
    rows = await call.receive(work)
    replaced = await call.blocking(_register_block, call, info, session["id"], block, out, rows)
    if replaced:
        await call.blocking(state.catalog.delete_files, info, [replaced])
    return Response(
        status_code=200,
        headers=metrics_header(int((time.monotonic() - started) * 1e6)),
    )


def _register_block(
    call: Call, info: TableInfo, session_id: str, block: int, out: Any, rows: int
) -> str | None:
    """Publish the block's file and record it in the session; returns a replaced file."""
    state = call.state
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upload", session_id, info.table_id)
        try:
            check_writable(session, "upload")
        except EmulatorError:
            out.unlink(missing_ok=True)
            raise
        name = state.catalog.register(info, out)
        old = session["blocks"].get(str(block))
        session["blocks"][str(block)] = {"file": name, "rows": rows}
        state.sessions.save(session)
    return old["file"] if old else None


async def commit(call: Call) -> Response:
    """``POST T?uploadid=``: publish every uploaded block, once."""
    info = call.table()
    session = _session(call, info)
    if session["status"] == "closed":
        _check_recommit(call, session)
    else:
        check_writable(session, "upload")
        call.limit_commits(info)
        session = await call.blocking(_commit, call, info, session["id"])
    return json_response(session_json(call, session, info))


def _check_recommit(call: Call, session: dict[str, Any]) -> None:
    """A commit of a committed session: ``StatusConflict`` unless ``idempotent_commit``."""
    if not call.state.config.idempotent_commit:
        raise EmulatorError.status_conflict(
            f"The upload session {session['id']} is already committed (status closed)"
        )


def _commit(call: Call, info: TableInfo, session_id: str) -> dict[str, Any]:
    state = call.state
    # The table lock before the session's, as _register_block takes them: the other order
    # deadlocked a commit racing a block PUT of its session, and with it the whole table.
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upload", session_id, info.table_id)
        if session["status"] == "closed":  # a concurrent commit got there first
            _check_recommit(call, session)
            return session
        check_writable(session, "upload")
        spec = state.catalog.normalize_spec(info, session["partition"] or None)
        blocks = sorted(session["blocks"].items(), key=lambda kv: int(kv[0]))
        files = [DataFile(b["file"], b["rows"]) for _, b in blocks]
        missing = [f.name for f in files if not (info.data_dir / f.name).exists()]
        if missing:
            raise EmulatorError(
                "InternalServerError", f"block files are missing: {', '.join(missing)}", 500
            )
        state.catalog.append(
            info,
            spec,
            files,
            session_id,
            overwrite=session["overwrite"],
            create=session["create_partition"],
        )
        session["status"] = "closed"
        state.sessions.save(session)
        return session
