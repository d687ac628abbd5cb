"""Stream upload sessions (protocol §3.3): every PUT is committed when it returns.

All slots are served by this one server, so every slot's address is the emulator's own.
Each successful PUT answers with ``odps-tunnel-routed-server`` and ``odps-tunnel-slot-num``
(pyodps reads both unconditionally). Aborting closes the session and keeps what was written.

What a session remembers (its stored state, so a restart keeps it):

* ``schema`` and ``schema_version``: the table's at creation. ``ALTER TABLE ... ADD COLUMNS``
  bumps the table's version; a PUT with an older version is then ``SchemaModified`` (412,
  header ``odps-tunnel-latest-schema-version``) when it asks ``check_latest_schema=true``,
  and otherwise stored with the new columns NULL. A create naming any other version than
  the table's is ``NoSuchSchema`` (pyodps re-reads the table's version and tries again).
* ``last_batch_id`` (0 for the first batch) and ``last_batch_commit_time`` (ms since the
  epoch, emulator clock), answered once a batch was committed (pyodps's
  ``get_last_batch_id`` / ``get_last_batch_commit_time``).
* ``slots``: the slot count; the fault ``resize_slots`` changes it after a PUT, whose answer
  then names the new count (the client must reload). Slot ids below the largest count the
  session ever had stay writable, as a writer keeps its slot.
* ``traces``: the applied retry traces and their answers (``emulator.replays``). A PUT whose
  trace was applied is a replay of a batch whose answer was lost: its body is read and
  dropped, and the first answer is given again.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.responses import Response

from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

from .. import replays
from ..call import Call, json_response, metrics_header
from ..catalog import DataFile, TableInfo
from ..errors import EmulatorError
from ..ingest import records_to_file
from ..sessions import check_writable

__all__ = ["create", "reload", "write", "abort"]

MAX_SLOTS = 64
LATEST_VERSION_HEADER = "odps-tunnel-latest-schema-version"


def session_json(call: Call, session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    address = call.state.server_address
    quota = session.get("quota", "")
    body = {
        "session_name": session["id"],
        "schema": session.get("schema") or info.schema.to_json(),
        "status": session["status"],
        "slots": [[str(i), address] for i in range(session["slots"])],
        "schema_version": str(session.get("schema_version", 0)),
        "QuotaName": quota,
        "quota_name": quota,
    }
    if session.get("last_batch_id") is not None:
        body["last_batch_id"] = session["last_batch_id"]
        body["last_batch_commit_time"] = session["last_batch_commit_time"]
    return body


def _slot_count(call: Call) -> int:
    text = call.header("odps-slot-num") or call.header("odps-tunnel-slot-num") or "1"
    try:
        slots = int(text)
    except ValueError:
        raise EmulatorError.invalid_argument(f"invalid slot number {text!r}") from None
    return min(max(slots, 1), MAX_SLOTS)


def _requested_version(call: Call, default: int | None) -> int | None:
    """The ``schema_version`` parameter (``default`` when absent); unknown text is
    ``NoSuchSchema``."""
    text = call.params.get("schema_version")
    if text in (None, ""):
        return default
    if not text.isdigit():
        raise EmulatorError("NoSuchSchema", f"schema version {text} does not exist", 404)
    return int(text)


def _check_create_version(call: Call, info: TableInfo) -> None:
    version = _requested_version(call, None)
    if version is not None and version != info.schema_version:
        raise EmulatorError(
            "NoSuchSchema",
            f"schema version {version} of table {info.name} does not exist "
            f"(the latest is {info.schema_version})",
            404,
        )


def _check_write_version(call: Call, session: dict[str, Any], info: TableInfo) -> None:
    """A PUT written at an older schema version than the table's: ``SchemaModified`` when
    the client asked for the latest schema (``check_latest_schema=true``)."""
    version = _requested_version(call, session.get("schema_version", 0))
    if version == info.schema_version:
        return
    if version is not None and version > info.schema_version:
        raise EmulatorError("NoSuchSchema", f"schema version {version} does not exist", 404)
    if call.flag("check_latest_schema"):
        raise EmulatorError(
            "SchemaModified",
            f"the schema of table {info.name} changed: version {version} is not the "
            f"latest ({info.schema_version})",
            412,
            headers={LATEST_VERSION_HEADER: str(info.schema_version)},
        )


async def create(call: Call) -> Response:
    """``POST T/streams``; ``create_partition`` makes the first write create the partition."""
    info = call.table()
    _check_create_version(call, info)
    params = call.session_params(info, write=True)
    call.limit_sessions(info, "stream")
    slots = _slot_count(call)
    session = call.new_session(
        "stream",
        params,
        {
            "create_partition": params.create_partition,
            "slots": slots,
            "max_slots": slots,
            "batches": 0,
            "schema": info.schema.to_json(),
            "schema_version": info.schema_version,
            "traces": [],
        },
        info,
    )
    return json_response(session_json(call, session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("stream", call.session_id("uploadid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T/streams?uploadid=`` (pyodps adds ``read_only=true`` for its monitoring
    getters; the emulator keeps no routing state a reload could change, so it is the same)."""
    info = call.table()
    return json_response(session_json(call, _session(call, info), info))


def _session_schema(session: dict[str, Any], info: TableInfo) -> TableSchema:
    return TableSchema.from_json(session["schema"]) if session.get("schema") else info.schema


def _pad_rows(extra: int) -> Any:
    """Rows of an older schema padded with NULLs for the columns added since."""
    return None if extra == 0 else (lambda rows: [list(r) + [None] * extra for r in rows])


async def write(call: Call) -> Response:
    """``PUT T/streams?uploadid=&slotid=``: decode the batch and commit it at once (or,
    for a trace already applied, drop it and answer as the first time)."""
    state = call.state
    started = time.monotonic()
    info = call.table()
    session = _session(call, info)
    check_writable(session, "stream upload")
    _check_write_version(call, session, info)
    slot = call.params.get("slotid", "")
    if not slot.isdigit() or int(slot) >= session.get("max_slots", session["slots"]):
        raise EmulatorError.invalid_argument(
            f"slot {slot!r} is not a slot of session {session['id']}"
        )
    wire = _session_schema(session, info).simple_columns
    out = state.catalog.new_data_file(info)
    work = functools.partial(
        records_to_file,
        content_encoding=call.header("content-encoding"),
        wire_columns=wire,
        schema=info.arrow_schema(),
        out=out,
        max_field_size=state.config.max_field_size,
        transform=_pad_rows(len(info.schema.simple_columns) - len(wire)),
    )
    rows = await call.receive(work)
    trace = replays.trace_id(call)
    answer = await call.blocking(_commit_batch, call, info, session["id"], out, rows, trace)
    if answer.get("replayed"):
        call.log["replay"] = trace
    await _resize_or_drop(call, session["id"])
    headers = {
        "odps-tunnel-routed-server": state.server_address,
        "odps-tunnel-slot-num": str(_current_slots(call, session["id"], answer)),
        **metrics_header(int((time.monotonic() - started) * 1e6)),
    }
    return Response(status_code=200, headers=headers)


def _current_slots(call: Call, session_id: str, answer: dict[str, Any]) -> int:
    """The slot count to announce: the first answer's for a replay, else the session's."""
    if answer.get("replayed"):
        return int(answer["slots"])
    return int(call.state.sessions.find(session_id)["slots"])


def _commit_batch(
    call: Call, info: TableInfo, session_id: str, out: Any, rows: int, trace: str | None
) -> dict[str, Any]:
    """Commit one decoded batch, unless its trace was applied: returns the answer record
    (``replayed`` for a replay). The trace check and the commit share the session lock, so
    two sends of one batch racing each other store it once."""
    state = call.state
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("stream", session_id, info.table_id)
        done = replays.applied(session, trace)
        if done is not None:
            out.unlink(missing_ok=True)
            return {**done, "replayed": True}
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
        batch_id = session["batches"]
        session["batches"] += 1
        session["last_batch_id"] = batch_id
        session["last_batch_commit_time"] = int(state.clock.now() * 1000)
        answer = {"batch_id": batch_id, "slots": session["slots"]}
        replays.remember(session, trace, answer)
        state.sessions.save(session)
        return answer


async def _resize_or_drop(call: Call, session_id: str) -> None:
    """The handler faults of a stream PUT, after its batch was applied: ``resize_slots``
    changes the session's slot count (the answer announces it); ``drop_answer`` waits
    ``seconds`` and then cuts the connection, so the client never sees the answer."""
    state = call.state
    resize = call.fire_fault("resize_slots", "stream", session_id)
    if resize is not None:
        slots = min(max(int(resize.args.get("slots", 2)), 1), MAX_SLOTS)
        with state.sessions.locked(session_id):
            session = state.sessions.find(session_id)
            session["slots"] = slots
            session["max_slots"] = max(session.get("max_slots", slots), slots)
            state.sessions.save(session)
    await replays.drop_answer(call, "stream", session_id)


async def abort(call: Call) -> Response:
    """``POST T/streams?uploadid=`` (py's abort): close the session, keep its data."""
    info = call.table()
    session = _session(call, info)
    with call.state.sessions.locked(session["id"]):
        if session["status"] == "normal":
            session["status"] = "closed"
            call.state.sessions.save(session)
    return json_response(session_json(call, session, info))
