"""Stream upload sessions (protocol §3.3): every PUT is committed when it returns.

All slots are served by this one server, so every slot's address is the emulator's own.
Each successful PUT answers with ``odps-tunnel-routed-server`` and ``odps-tunnel-slot-num``
(pyodps reads both unconditionally). Aborting closes the session and keeps what was written.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.responses import Response

from ..call import Call, json_response, metrics_header
from ..catalog import DataFile, TableInfo
from ..errors import EmulatorError
from ..ingest import records_to_parquet
from ..sessions import check_writable

__all__ = ["create", "reload", "write", "abort", "SCHEMA_VERSION"]

# The emulator has no schema evolution: every table is at schema version 0.
SCHEMA_VERSION = "0"
MAX_SLOTS = 64


def session_json(call: Call, session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    address = call.state.server_address
    quota = session.get("quota", "")
    return {
        "session_name": session["id"],
        "schema": info.schema.to_json(),
        "status": session["status"],
        "slots": [[str(i), address] for i in range(session["slots"])],
        "schema_version": SCHEMA_VERSION,
        "QuotaName": quota,
        "quota_name": quota,
    }


def _slot_count(call: Call) -> int:
    text = call.header("odps-slot-num") or call.header("odps-tunnel-slot-num") or "1"
    try:
        slots = int(text)
    except ValueError:
        raise EmulatorError.invalid_argument(f"invalid slot number {text!r}") from None
    return min(max(slots, 1), MAX_SLOTS)


def _check_schema_version(call: Call) -> None:
    version = call.params.get("schema_version")
    if version not in (None, "", SCHEMA_VERSION):
        raise EmulatorError("NoSuchSchema", f"schema version {version} does not exist", 404)


async def create(call: Call) -> Response:
    """``POST T/streams``; ``create_partition`` makes the first write create the partition."""
    info = call.table()
    _check_schema_version(call)
    params = call.session_params(info, write=True)
    call.limit_sessions(info, "stream")
    session = call.new_session(
        "stream",
        params,
        {"create_partition": params.create_partition, "slots": _slot_count(call), "batches": 0},
        info,
    )
    return json_response(session_json(call, session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("stream", call.session_id("uploadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T/streams?uploadid=``."""
    info = call.table()
    return json_response(session_json(call, _session(call, info), info))


async def write(call: Call) -> Response:
    """``PUT T/streams?uploadid=&slotid=``: decode the batch and commit it at once."""
    state = call.state
    started = time.monotonic()
    info = call.table()
    session = _session(call, info)
    check_writable(session, "stream upload")
    _check_schema_version(call)
    slot = call.params.get("slotid", "")
    if not slot.isdigit() or int(slot) >= session["slots"]:
        raise EmulatorError.invalid_argument(
            f"slot {slot!r} is not a slot of session {session['id']}"
        )
    out = state.catalog.new_data_file(info)
    work = functools.partial(
        records_to_parquet,
        content_encoding=call.header("content-encoding"),
        wire_columns=info.schema.simple_columns,
        schema=info.arrow_schema(),
        out=out,
        max_field_size=state.config.max_field_size,
    )
    rows = await call.receive(work)
    await call.blocking(_commit_batch, call, info, session["id"], out, rows)
    headers = {
        "odps-tunnel-routed-server": state.server_address,
        "odps-tunnel-slot-num": str(session["slots"]),
        **metrics_header(int((time.monotonic() - started) * 1e6)),
    }
    return Response(status_code=200, headers=headers)


def _commit_batch(call: Call, info: TableInfo, session_id: str, out: Any, rows: int) -> None:
    state = call.state
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("stream", session_id, info.table_id)
        try:
            check_writable(session, "stream upload")
        except EmulatorError:
            out.unlink(missing_ok=True)
            raise
        name = state.catalog.register(info, out)
        spec = state.catalog.normalize_spec(info, session["partition"] or None)
        state.catalog.append(
            info, spec, [DataFile(name, rows)], None, create=session["create_partition"]
        )
        session["batches"] += 1
        session["last_batch_commit_time"] = int(time.time() * 1000)
        state.sessions.save(session)


async def abort(call: Call) -> Response:
    """``POST T/streams?uploadid=`` (py's abort): close the session, keep its data."""
    info = call.table()
    session = _session(call, info)
    with call.state.sessions.locked(session["id"]):
        if session["status"] == "normal":
            session["status"] = "closed"
            call.state.sessions.save(session)
    return json_response(session_json(call, session, info))
