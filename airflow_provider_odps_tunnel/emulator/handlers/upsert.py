"""Upsert sessions on primary-key tables (protocol §3.4).

The table's buckets are dealt round-robin to ``slotnum`` slots, all served here. A bucket
PUT carries records of the upsert schema (data columns plus five hidden columns); every row
must hash into the bucket it was sent to with the session's hasher (``upsert_hasher`` of the
config when the session was created: ``default`` or ``legacy``), which catches clients that
bucket differently from the service. Rows are stored with their operation (``U`` = 85
upsert, ``D`` = 68 delete) and their ``__value_cols`` and applied at commit in arrival
order: per key, a whole-row upsert replaces the row, a partial one (``__value_cols`` lists
``column_id``s, only when the session has ``enable_partial_update``) sets those columns of
the current row (of a new row: the others are null), a delete removes it. The partition's
new contents are published atomically. Commit answers ``committed`` at once (so clients'
polling ends on the first reload).

A PUT carrying an ``odps-tunnel-retry-trace-id`` the session already applied is a replay of
a body whose answer was lost: it is answered 200 again and not applied (the session keeps
its applied traces: ``emulator.replays``). A 308'd body was not applied, so its re-send
with the same trace is applied.

Behaviours of the service that are off by default, because pyodps cannot take them (it
treats any status below 400 as success and knows no ``committing``) or because the service's
values are not known:

* the fault kind ``move_slot`` (``faults``) moves the slot owning a PUT's bucket to another
  server and answers 308 naming it in ``odps-tunnel-routed-server``, with an error body
  whose ``Code`` is ``SlotReassigned``; the body is not applied. Later PUTs for a moved slot
  must name its current server in that header, else they are answered 308 too (a stale
  route), again without applying the body. The fault ``drop_answer`` applies a PUT and cuts
  the connection instead of answering.
* ``upsert_commit_delay`` (config): the commit publishes the data as always, but the session
  reports ``committing`` until that many seconds of the emulator's clock have passed, so
  clients have to poll.
* ``upsert_idle_timeout`` (config): a ``normal`` session that no request (create, reload,
  PUT, commit, abort) has touched for that many seconds of the emulator's clock turns
  ``expired``; the clients' keep-alive reloads (every 30 s) prevent it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import time
from typing import Any

import pyarrow as pa
from starlette.responses import Response

from airflow_provider_odps_tunnel.tunnel.codec.hasher import RowHasher
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .. import columnar, replays
from ..call import Call, json_response, metrics_header
from ..catalog import DataFile, TableInfo
from ..datafiles import read_table, write_table
from ..errors import HOST_ID, EmulatorError
from ..ingest import records_to_file
from ..sessions import check_writable

__all__ = ["create", "reload", "write", "commit", "abort"]

OP_UPSERT, OP_DELETE = 85, 68
OP_COLUMN = "__operation"
VALUE_COLS_COLUMN = "__value_cols"
#: The error code of a 308 answer (the service's is not documented; ours names the case).
SLOT_MOVED_CODE = "SlotReassigned"


def _slot_server(call: Call, session: dict[str, Any], slot: int) -> str:
    """``ip:port`` of the server a slot lives on (this one unless the slot was moved)."""
    return (session.get("slot_servers") or {}).get(str(slot), call.state.server_address)


def session_json(call: Call, session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    slots = [
        {"slot_id": str(i), "buckets": buckets, "worker_addr": _slot_server(call, session, i)}
        for i, buckets in enumerate(session["slot_buckets"])
    ]
    return {
        "id": session["id"],
        "status": session["status"],
        "schema": info.schema.to_json(),
        "hash_key": info.primary_key,
        "hasher": session.get("hasher", "default"),
        "slots": slots,
        "quota_name": session.get("quota", ""),
        "enable_partial_update": bool(session.get("partial_update", False)),
    }


async def create(call: Call) -> Response:
    """``POST T/upserts?slotnum=N[&lifecycle=H]`` on a transactional table."""
    info = call.table()
    if not info.transactional:
        raise EmulatorError.invalid_argument(
            f"table {info.name} has no primary key: upserts need a transactional table"
        )
    params = call.session_params(info, write=True, can_create=False)
    try:
        slots = int(call.params.get("slotnum") or 1)
        lifecycle = int(call.params.get("lifecycle") or 24)
    except ValueError:
        raise EmulatorError.invalid_argument("slotnum and lifecycle must be integers") from None
    if not 1 <= lifecycle <= 24:
        raise EmulatorError.invalid_argument(f"lifecycle {lifecycle} is not in 1..24 hours")
    call.limit_sessions(info, "upsert")
    nbuckets = int(info.buckets or 1)
    slots = min(max(slots, 1), nbuckets)
    slot_buckets = [list(range(i, nbuckets, slots)) for i in range(slots)]
    config = call.state.config
    session = call.new_session(
        "upsert",
        params,
        {
            "slot_buckets": slot_buckets,
            "pending": [],
            "hasher": config.upsert_hasher,
            "partial_update": config.upsert_partial_update,
            "traces": [],
            "last_seen": call.state.clock.now(),
        },
        info,
        lifetime=min(lifecycle * 3600.0, call.state.config.session_lifetime),
    )
    return json_response(session_json(call, session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    session_id = call.session_id("upsertid")
    _finish_commit(call, session_id)
    session = call.state.sessions.get("upsert", session_id, info.table_id)
    _touch(call, session)
    return session


def _touch(call: Call, session: dict[str, Any]) -> None:
    """A request reached a normal session: it expires if it was idle past
    ``upsert_idle_timeout`` (emulator clock), else this request keeps it alive."""
    state = call.state
    idle = state.config.upsert_idle_timeout
    if idle <= 0 or session["status"] != "normal":
        return
    now = state.clock.now()
    with state.sessions.locked(session["id"]):
        if now - session.get("last_seen", session["created"]) > idle:
            session["status"] = "expired"
            call.log["idle_expired"] = True
        else:
            session["last_seen"] = now
        state.sessions.save(session)


def _finish_commit(call: Call, session_id: str) -> None:
    """A ``committing`` session whose commit delay is over becomes ``committed``.

    Its data was published when the commit began, so it never turns ``expired``.
    """
    state = call.state
    session = state.sessions.find(session_id)
    if session is None or session["kind"] != "upsert" or session["status"] != "committing":
        return
    now = state.clock.now()
    if now < session.get("committing_until", 0.0) and now <= session["expires"]:
        return
    with state.sessions.locked(session_id):
        if session["status"] == "committing":
            session["status"] = "committed"
            state.sessions.save(session)


async def reload(call: Call) -> Response:
    """``GET T/upserts?upsertid=``."""
    info = call.table()
    return json_response(session_json(call, _session(call, info), info))


def upsert_wire_columns(schema: TableSchema) -> list[Column]:
    """The record schema of upsert bodies: data columns, then five hidden ones (protocol §5.10)."""
    return [Column(c.name, c.type) for c in schema.simple_columns] + [
        Column("__version", "bigint"),
        Column("__app_version", "bigint"),
        Column("__operation", "tinyint"),
        Column("__key_cols", "array<bigint>"),
        Column("__value_cols", "array<bigint>"),
    ]


def _pending_schema(info: TableInfo) -> pa.Schema:
    return (
        info.arrow_schema()
        .append(pa.field(OP_COLUMN, pa.int8(), metadata={columnar.ODPS_TYPE_KEY: b"tinyint"}))
        .append(
            pa.field(
                VALUE_COLS_COLUMN,
                pa.list_(pa.int64()),
                metadata={columnar.ODPS_TYPE_KEY: b"array<bigint>"},
            )
        )
    )


def _value_cols(row: list[Any], ncols: int, partial: bool) -> list[int]:
    """A row's ``__value_cols``: column ids 1..ncols, only if the session takes partial
    updates (an empty list or null is a whole-row write)."""
    cols = list(row[ncols + 4] or [])
    if cols and not partial:
        raise EmulatorError(
            "MalformedDataStream",
            "__value_cols lists columns but the session has no enable_partial_update",
            400,
        )
    if any(not 1 <= c <= ncols for c in cols):
        raise EmulatorError(
            "MalformedDataStream", f"__value_cols {cols} names no column (ids 1..{ncols})", 400
        )
    return cols


def _bucket_check(info: TableInfo, bucket: int, nbuckets: int, session: dict[str, Any]):
    """The batch transform of a bucket PUT: checks operations, buckets (with the session's
    hasher) and ``__value_cols``; keeps the data columns, the operation and the value cols."""
    ncols = len(info.schema.simple_columns)
    key_index = [info.schema.get_column_index(k) for k in info.primary_key]
    key_types = [info.schema.columns[i].type for i in key_index]
    name = session.get("hasher", "default")
    hasher = RowHasher(key_types, nbuckets, name, tz=_dt.UTC)
    partial = bool(session.get("partial_update", False))

    def transform(rows: list[Any]) -> list[Any]:
        out = []
        for row in rows:
            op = row[ncols + 2]
            if op not in (OP_UPSERT, OP_DELETE):
                raise EmulatorError("MalformedDataStream", f"unknown upsert operation {op!r}", 400)
            key = [row[i] for i in key_index]
            if any(v is None for v in key):
                raise EmulatorError("MalformedDataStream", "a primary key value is null", 400)
            actual = hasher.bucket(key)
            if actual != bucket:
                raise EmulatorError(
                    "MalformedDataStream",
                    f"a row with key {key!r} belongs to bucket {actual}, not {bucket} "
                    f"(hasher {name}, {nbuckets} buckets)",
                    400,
                )
            out.append(list(row[:ncols]) + [op, _value_cols(row, ncols, partial)])
        return out

    return transform


async def write(call: Call) -> Response:
    """``PUT T/upserts?upsertid=&bucketid=&slotid=&record_count=``."""
    state = call.state
    started = time.monotonic()
    info = call.table()
    session = _session(call, info)
    check_writable(session, "upsert")
    try:
        bucket = int(call.params.get("bucketid", ""))
        slot = int(call.params.get("slotid", ""))
    except ValueError:
        raise EmulatorError.invalid_argument("bucketid and slotid must be integers") from None
    slot_buckets = session["slot_buckets"]
    if not 0 <= slot < len(slot_buckets) or bucket not in slot_buckets[slot]:
        raise EmulatorError.invalid_argument(f"bucket {bucket} is not owned by slot {slot}")
    moved = await _route(call, session, slot, bucket)
    if moved is not None:
        return moved
    nbuckets = sum(len(b) for b in slot_buckets)
    out = state.catalog.new_data_file(info)
    work = functools.partial(
        records_to_file,
        content_encoding=call.header("content-encoding"),
        wire_columns=upsert_wire_columns(info.schema),
        schema=_pending_schema(info),
        out=out,
        max_field_size=state.config.max_field_size,
        transform=_bucket_check(info, bucket, nbuckets, session),
    )
    rows = await call.receive(work)
    expected = call.params.get("record_count")
    if expected and expected.isdigit() and int(expected) != rows:
        out.unlink(missing_ok=True)
        raise EmulatorError(
            "MalformedDataStream", f"record_count is {expected} but the body has {rows}", 400
        )
    trace = replays.trace_id(call)
    applied = await call.blocking(_register, call, info, session["id"], bucket, out, rows, trace)
    if not applied:
        call.log["replay"] = trace
    await replays.drop_answer(call, "upsert", session["id"])
    return Response(
        status_code=200, headers=metrics_header(int((time.monotonic() - started) * 1e6))
    )


async def _route(call: Call, session: dict[str, Any], slot: int, bucket: int) -> Response | None:
    """A 308 answer if the slot moves now (fault ``move_slot``) or the PUT names a server the
    moved slot has left; None if the PUT may be applied. A 308'd body is read and dropped."""
    fault = call.fire_fault("move_slot", "upsert", session["id"])
    if fault is not None:
        server = _move_slot(call, session["id"], slot, fault.args.get("server"))
        announce = bool(fault.args.get("announce", True))
        return await _redirect(call, slot, bucket, server, announce, "moved")
    if str(slot) in (session.get("slot_servers") or {}):
        current = _slot_server(call, session, slot)
        if call.header("odps-tunnel-routed-server") != current:
            call.log["stale_route"] = call.header("odps-tunnel-routed-server") or ""
            return await _redirect(call, slot, bucket, current, True, "is")
    return None


def _move_slot(call: Call, session_id: str, slot: int, server: str | None) -> str:
    """Record that ``slot`` now lives on ``server`` (default: a new loopback address)."""
    state = call.state
    with state.sessions.locked(session_id):
        session = state.sessions.find(session_id)
        servers = session.setdefault("slot_servers", {})
        moves = session.get("slot_moves", 0)
        current = _slot_server(call, session, slot)
        if not server:
            host = 2 + moves % 250
            server = f"127.0.0.{host}:{state.port}"
            if server == current:
                server = f"127.0.0.{2 + (moves + 1) % 250}:{state.port}"
        servers[str(slot)] = server
        session["slot_moves"] = moves + 1
        state.sessions.save(session)
    return server


async def _redirect(
    call: Call, slot: int, bucket: int, server: str, announce: bool, verb: str
) -> Response:
    async for _chunk in call.request.stream():
        pass  # the body is not applied; reading it keeps the connection usable
    headers = {"odps-tunnel-routed-server": server} if announce else {}
    message = f"slot {slot} (bucket {bucket}) {verb} on {server}: send it there"
    if not announce:
        message = f"slot {slot} (bucket {bucket}) moved: reload the session to find it"
    body = {
        "Code": SLOT_MOVED_CODE,
        "Message": message,
        "RequestId": call.request_id,
        "HostId": HOST_ID,
    }
    return json_response(body, status=308, headers=headers)


def _register(
    call: Call,
    info: TableInfo,
    session_id: str,
    bucket: int,
    out: Any,
    rows: int,
    trace: str | None,
) -> bool:
    """Add a received body to the session's pending writes; False (and nothing added) for
    a replay of a trace already applied. Check and add share the session lock."""
    state = call.state
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upsert", session_id, info.table_id)
        try:
            check_writable(session, "upsert")
        except EmulatorError:
            out.unlink(missing_ok=True)
            raise
        if replays.applied(session, trace) is not None:
            out.unlink(missing_ok=True)
            return False
        name = state.catalog.register(info, out)
        session["pending"].append(
            {"file": name, "bucket": bucket, "rows": rows, "seq": len(session["pending"])}
        )
        replays.remember(session, trace, {})
        state.sessions.save(session)
        return True


async def commit(call: Call) -> Response:
    """``POST T/upserts?upsertid=``: apply every pending row; idempotent once committed."""
    info = call.table()
    session = _session(call, info)
    if session["status"] not in ("committed", "committing"):
        check_writable(session, "upsert")
        call.limit_commits(info)
        session = await call.blocking(_commit, call, info, session["id"])
    return json_response(session_json(call, session, info))


def _commit(call: Call, info: TableInfo, session_id: str) -> dict[str, Any]:
    state = call.state
    catalog = state.catalog
    with catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upsert", session_id, info.table_id)
        if session["status"] in ("committed", "committing"):
            return session
        check_writable(session, "upsert")
        spec = catalog.normalize_spec(info, session["partition"] or None)
        if not catalog.applied(info, spec, session_id):
            merged = _merge(
                info, catalog.read_snapshot(info, catalog.snapshot(info, spec)), session
            )
            files = []
            if merged.num_rows:
                out = catalog.new_data_file(info)
                write_table(out, merged)
                files.append(DataFile(catalog.register(info, out), merged.num_rows))
            catalog.publish(info, spec, files, session_id)
        delay = state.config.upsert_commit_delay
        if delay > 0:
            session["status"] = "committing"
            session["committing_until"] = state.clock.now() + delay
        else:
            session["status"] = "committed"
        state.sessions.save(session)
        catalog.collect_garbage(info.project, info.name)
        return session


def _merge(info: TableInfo, base: pa.Table, session: dict[str, Any]) -> pa.Table:
    """The partition after applying the session's operations (last writer wins per key)."""
    pending = sorted(session["pending"], key=lambda p: p["seq"])
    if not pending:
        return base
    ops = pa.concat_tables([_read_pending(info.data_dir / p["file"]) for p in pending])
    keys = info.primary_key
    op_keys = list(zip(*(ops.column(k).to_pylist() for k in keys), strict=True))
    value_cols = ops.column(VALUE_COLS_COLUMN).to_pylist()
    if any(value_cols):
        return _fold(base, ops, op_keys, value_cols, keys)
    last: dict[tuple, int] = {}
    for idx, key in enumerate(op_keys):
        last[key] = idx
    base_keys = zip(*(base.column(k).to_pylist() for k in keys), strict=True)
    kept = base.filter(pa.array([key not in last for key in base_keys], pa.bool_()))
    operations = ops.column(OP_COLUMN).to_pylist()
    upserted = sorted(i for i in last.values() if operations[i] == OP_UPSERT)
    rows = ops.select(base.schema.names).take(pa.array(upserted, pa.int64()))
    return pa.concat_tables([kept, rows.cast(base.schema)])


def _read_pending(path: Any) -> pa.Table:
    """A pending file; one written before ``__value_cols`` was kept gets empty lists."""
    table = read_table(path)
    if VALUE_COLS_COLUMN not in table.column_names:
        empty = pa.array([[]] * table.num_rows, pa.list_(pa.int64()))
        table = table.append_column(VALUE_COLS_COLUMN, empty)
    return table


def _fold(
    base: pa.Table,
    ops: pa.Table,
    op_keys: list[tuple],
    value_cols: list[list[int] | None],
    keys: list[str],
) -> pa.Table:
    """The partition after applying operations that include partial updates, one by one
    per key: a delete removes the row, a whole upsert replaces it, a partial one sets the
    listed columns (``column_id`` = position from 1) of the current row or of a new one."""
    names = base.schema.names
    touched = set(op_keys)
    current: dict[tuple, dict[str, Any] | None] = {}
    base_keys = list(zip(*(base.column(k).to_pylist() for k in keys), strict=True))
    base_rows = base.to_pylist()
    for key, row in zip(base_keys, base_rows, strict=True):
        if key in touched:
            current[key] = row
    op_rows = ops.select(names).to_pylist()
    operations = ops.column(OP_COLUMN).to_pylist()
    for key, row, op, cols in zip(op_keys, op_rows, operations, value_cols, strict=True):
        if op == OP_DELETE:
            current[key] = None
        elif not cols:
            current[key] = row
        else:
            merged = dict(current.get(key) or dict.fromkeys(names))
            merged.update({k: row[k] for k in keys})
            merged.update({names[c - 1]: row[names[c - 1]] for c in cols})
            current[key] = merged
    kept = base.filter(pa.array([key not in touched for key in base_keys], pa.bool_()))
    rows = [row for row in current.values() if row is not None]
    return pa.concat_tables([kept, pa.Table.from_pylist(rows, schema=base.schema)])


async def abort(call: Call) -> Response:
    """``DELETE T/upserts?upsertid=``: drop what the session wrote."""
    info = call.table()
    session = _session(call, info)
    state = call.state
    with state.sessions.locked(session["id"]):
        if session["status"] == "normal":
            session["status"] = "aborted"
            state.sessions.save(session)
    await call.blocking(state.catalog.collect_garbage, info.project, info.name)
    return json_response(session_json(call, session, info))
