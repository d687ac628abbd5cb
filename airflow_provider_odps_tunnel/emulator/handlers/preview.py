"""Table preview (protocol §3.5): the first rows as a plain Arrow IPC stream, no session.

Partition columns are included (as their declared type), columns come in table order, and
``limit=-1`` (or any larger limit) is capped at the configured preview limit (10,000 by
default). ``Accept-Encoding`` is ignored: an uncompressed stream is always valid (inferred).
"""

from __future__ import annotations

import pyarrow as pa
from starlette.responses import Response

from ..call import Call
from ..catalog import TableInfo
from ..columnar import storage_type
from ..egress import ipc_stream_body, read_range
from ..errors import EmulatorError

__all__ = ["preview"]


def _limit(call: Call) -> int:
    cap = call.state.config.preview_limit
    text = call.params.get("limit") or "-1"
    try:
        limit = int(text)
    except ValueError:
        raise EmulatorError.invalid_argument(f"invalid limit {text!r}") from None
    return cap if limit < 0 else min(limit, cap)


def _read(call: Call, info: TableInfo, limit: int, names: list[str]) -> pa.Table:
    catalog = call.state.catalog
    if info.partitioned and not call.params.get("partition"):
        specs = catalog.partitions(info)
    else:
        specs = [call.partition(info)]
    data_names = [n for n in names if not info.schema.is_partition(n)]
    parts = []
    for spec in specs:
        if limit <= 0:
            break
        snapshot = catalog.snapshot(info, spec)
        batches = list(read_range(info.data_dir, snapshot.files, 0, limit, data_names))
        rows = sum(b.num_rows for b in batches)
        arrays = {
            n: pa.concat_arrays([b.column(n) for b in batches])
            if batches
            else pa.array([], storage_type(info.schema.get_column(n).type))
            for n in data_names
        }
        for col in info.schema.partitions:
            if col.name in names:
                arrays[col.name] = pa.array([spec[col.name]] * rows).cast(storage_type(col.type))
        parts.append(pa.table([arrays[n] for n in names], names=names))
        limit -= rows
    if not parts:
        return pa.table(
            [pa.array([], storage_type(info.schema.get_column(n).type)) for n in names], names=names
        )
    return pa.concat_tables(parts)


async def preview(call: Call) -> Response:
    """``GET .../tables/T/preview?limit=N[&columns=][&partition=]``."""
    info = call.table()
    text = call.params.get("columns")
    if text:
        wanted = {n.strip().lower() for n in text.split(",")}
        unknown = wanted - {n.lower() for n in info.schema.names}
        if unknown:
            raise EmulatorError(
                "InvalidColumnSpec", f"unknown columns {sorted(unknown)} in {info.name}", 400
            )
        names = [n for n in info.schema.names if n.lower() in wanted]
    else:
        names = info.schema.names
    table = await call.blocking(_read, call, info, _limit(call), names)
    body = await call.blocking(ipc_stream_body, table)
    return Response(body, media_type="application/octet-stream")
