"""Upsert sessions on primary-key tables (protocol §3.4).

The table's buckets are dealt round-robin to ``slotnum`` slots, all served here. A bucket
PUT carries records of the upsert schema (data columns plus five hidden columns); every row
must hash into the bucket it was sent to with the service's default hasher, which catches
clients that bucket differently from the service. Rows are stored with their operation
(``U`` = 85 upsert, ``D`` = 68 delete) and applied at commit in arrival order, last writer
wins per key, by writing the partition's new contents and publishing them atomically.
Commit answers ``committed`` at once (so clients' polling ends on the first reload).
"""

from __future__ import annotations

import datetime as _dt
import functools
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from starlette.responses import Response

from ...tunnel.hasher import RowHasher
from ...tunnel.schema import Column, TableSchema
from .. import columnar
from ..call import Call, json_response, metrics_header
from ..catalog import DataFile, TableInfo
from ..errors import EmulatorError
from ..fsutil import fsync_file
from ..ingest import PARQUET_OPTIONS, records_to_parquet
from ..sessions import check_writable

__all__ = ["create", "reload", "write", "commit", "abort"]

OP_UPSERT, OP_DELETE = 85, 68
OP_COLUMN = "__operation"
HASHER = "default"


def session_json(call: Call, session: dict[str, Any], info: TableInfo) -> dict[str, Any]:
    address = call.state.server_address
    slots = [
        {"slot_id": str(i), "buckets": buckets, "worker_addr": address}
        for i, buckets in enumerate(session["slot_buckets"])
    ]
    return {
        "id": session["id"],
        "status": session["status"],
        "schema": info.schema.to_json(),
        "hash_key": info.primary_key,
        "hasher": HASHER,
        "slots": slots,
        "quota_name": session.get("quota", ""),
        "enable_partial_update": False,
    }


async def create(call: Call) -> Response:
    """``POST T/upserts?slotnum=N[&lifecycle=H]`` on a transactional table."""
    state = call.state
    info = call.table()
    if not info.transactional:
        raise EmulatorError.invalid_argument(
            f"table {info.name} has no primary key: upserts need a transactional table"
        )
    spec = call.partition(info)
    if not state.catalog.partition_exists(info, spec):
        raise EmulatorError.no_such_partition(info.name, spec.to_param())
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
    session = state.sessions.create(
        "upsert",
        {
            "project": info.project,
            "table": info.name,
            "table_id": info.table_id,
            "partition": dict(spec.items()),
            "slot_buckets": slot_buckets,
            "pending": [],
            "quota": call.params.get("quotaName", ""),
        },
        lifetime=min(lifecycle * 3600.0, call.state.config.session_lifetime),
    )
    call.log["session"] = session["id"]
    return json_response(session_json(call, session, info))


def _session(call: Call, info: TableInfo) -> dict[str, Any]:
    return call.state.sessions.get("upsert", call.session_id("upsertid"), info.table_id)


async def reload(call: Call) -> Response:
    """``GET T/upserts?upsertid=``."""
    info = call.table()
    return json_response(session_json(call, _session(call, info), info))


def upsert_wire_columns(schema: TableSchema) -> list[Column]:
    """The record schema of upsert bodies: data columns, then five hidden ones (§5.10)."""
    return [Column(c.name, c.type) for c in schema.simple_columns] + [
        Column("__version", "bigint"),
        Column("__app_version", "bigint"),
        Column("__operation", "tinyint"),
        Column("__key_cols", "array<bigint>"),
        Column("__value_cols", "array<bigint>"),
    ]


def _pending_schema(info: TableInfo) -> pa.Schema:
    return info.arrow_schema().append(
        pa.field(OP_COLUMN, pa.int8(), metadata={columnar.ODPS_TYPE_KEY: b"tinyint"})
    )


def _bucket_check(info: TableInfo, bucket: int, nbuckets: int):
    """The batch transform of a bucket PUT: checks operations and buckets, keeps data + op."""
    ncols = len(info.schema.simple_columns)
    key_index = [info.schema.get_column_index(k) for k in info.primary_key]
    key_types = [info.schema.columns[i].type for i in key_index]
    hasher = RowHasher(key_types, nbuckets, HASHER, tz=_dt.UTC)

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
                    f"(hasher {HASHER}, {nbuckets} buckets)",
                    400,
                )
            out.append(list(row[:ncols]) + [op])
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
    nbuckets = sum(len(b) for b in slot_buckets)
    out = state.catalog.new_data_file(info)
    work = functools.partial(
        records_to_parquet,
        content_encoding=call.header("content-encoding"),
        wire_columns=upsert_wire_columns(info.schema),
        schema=_pending_schema(info),
        out=out,
        max_field_size=state.config.max_field_size,
        transform=_bucket_check(info, bucket, nbuckets),
    )
    rows = await call.receive(work)
    expected = call.params.get("record_count")
    if expected and expected.isdigit() and int(expected) != rows:
        out.unlink(missing_ok=True)
        raise EmulatorError(
            "MalformedDataStream", f"record_count is {expected} but the body has {rows}", 400
        )
    await call.blocking(_register, call, info, session["id"], bucket, out, rows)
    return Response(
        status_code=200, headers=metrics_header(int((time.monotonic() - started) * 1e6))
    )


def _register(call: Call, info: TableInfo, session_id: str, bucket: int, out: Any, rows: int):
    state = call.state
    with state.catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upsert", session_id, info.table_id)
        try:
            check_writable(session, "upsert")
        except EmulatorError:
            out.unlink(missing_ok=True)
            raise
        name = state.catalog.register(info, out)
        session["pending"].append(
            {"file": name, "bucket": bucket, "rows": rows, "seq": len(session["pending"])}
        )
        state.sessions.save(session)


async def commit(call: Call) -> Response:
    """``POST T/upserts?upsertid=``: apply every pending row; idempotent once committed."""
    info = call.table()
    session = _session(call, info)
    if session["status"] != "committed":
        check_writable(session, "upsert")
        call.limit_commits(info)
        session = await call.blocking(_commit, call, info, session["id"])
    return json_response(session_json(call, session, info))


def _commit(call: Call, info: TableInfo, session_id: str) -> dict[str, Any]:
    state = call.state
    catalog = state.catalog
    with catalog.table_lock(info), state.sessions.locked(session_id):
        session = state.sessions.get("upsert", session_id, info.table_id)
        if session["status"] == "committed":
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
                pq.write_table(merged, out, row_group_size=65536, **PARQUET_OPTIONS)
                fsync_file(out)
                files.append(DataFile(catalog.register(info, out), merged.num_rows))
            catalog.publish(info, spec, files, session_id)
        session["status"] = "committed"
        state.sessions.save(session)
        catalog.collect_garbage(info.project, info.name)
        return session


def _merge(info: TableInfo, base: pa.Table, session: dict[str, Any]) -> pa.Table:
    """The partition after applying the session's operations (last writer wins per key)."""
    pending = sorted(session["pending"], key=lambda p: p["seq"])
    if not pending:
        return base
    ops = pa.concat_tables([pq.read_table(info.data_dir / p["file"]) for p in pending])
    keys = info.primary_key
    op_keys = list(zip(*(ops.column(k).to_pylist() for k in keys), strict=True))
    last: dict[tuple, int] = {}
    for idx, key in enumerate(op_keys):
        last[key] = idx
    base_keys = zip(*(base.column(k).to_pylist() for k in keys), strict=True)
    kept = base.filter(pa.array([key not in last for key in base_keys], pa.bool_()))
    operations = ops.column(OP_COLUMN).to_pylist()
    upserted = sorted(i for i in last.values() if operations[i] == OP_UPSERT)
    rows = ops.select(base.schema.names).take(pa.array(upserted, pa.int64()))
    return pa.concat_tables([kept, rows.cast(base.schema)])


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
