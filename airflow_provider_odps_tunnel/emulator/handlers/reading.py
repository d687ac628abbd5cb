"""What table and instance downloads share: row ranges, column selection, the body.

Both read a pinned list of data files. ``rowrange=(start,count)`` has its count clamped
to the rows that exist (only a start past the end is ``InvalidRowRange``); record bodies
number fields in the order of ``columns``, Arrow bodies carry the selected columns in table
order (protocol §6.4). Instance results on the Arrow path send TIMESTAMP values as
``struct<sec int64, nano int32>``, which is what pyodps's instance reader expects (§3.6).
Record bodies end with the metrics block (§5.7) for clients of tunnel version 6 and up,
unless ``download_metrics`` is off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.responses import Response, StreamingResponse

from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

from ..call import Call
from ..catalog import DataFile
from ..columnar import INTERVAL_STRUCT
from ..egress import (
    arrow_body,
    choose_encoding,
    compressed,
    metrics_json,
    read_range,
    record_body,
)
from ..errors import EmulatorError

__all__ = ["row_range", "selected_columns", "check_readable", "rows_response"]

_ROWRANGE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\Z")
_NANOS = 1_000_000_000
# The first tunnel version whose record downloads carry metrics (pyodps's tests ask for
# version 5 to get bodies without them).
_METRICS_VERSION = 6


def check_readable(session: dict[str, Any], label: str) -> None:
    """``StatusConflict`` for an expired session, in the service's words."""
    if session["status"] == "expired":
        raise EmulatorError.status_conflict(f"The {label} session is expired")


def row_range(call: Call, total: int) -> tuple[int, int]:
    """``(start, count)`` of the ``rowrange`` parameter, count clamped to ``total``."""
    match = _ROWRANGE.match(call.params.get("rowrange", "").strip())
    if not match:
        raise EmulatorError(
            "InvalidRowRange", f"invalid rowrange {call.params.get('rowrange')!r}", 400
        )
    start, count = int(match.group(1)), int(match.group(2))
    if start > total:
        raise EmulatorError(
            "InvalidRowRange", f"rowrange ({start},{count}) is beyond the {total} rows", 400
        )
    return start, min(count, total - start)


def selected_columns(call: Call, schema: TableSchema, label: str) -> list[str] | None:
    """The data columns named by ``columns`` (None: all); ``InvalidColumnSpec`` otherwise."""
    text = call.params.get("columns")
    if not text:
        return None
    names = []
    for name in text.split(","):
        name = name.strip()
        if name not in schema or schema.is_partition(name):
            raise EmulatorError(
                "InvalidColumnSpec", f"column {name!r} is not a data column of {label}", 400
            )
        if schema.get_column(name).name in names:  # else the body fails mid-stream
            raise EmulatorError("InvalidColumnSpec", f"column {name!r} is named twice", 400)
        names.append(schema.get_column(name).name)
    return names


def _timestamps_as_structs(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Batches whose ``timestamp[ns]`` columns are ``struct<sec, nano>`` (floor division)."""
    for batch in batches:
        columns = []
        for column in batch.columns:
            if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
                nanos = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
                sec, nano = np.divmod(nanos, _NANOS)
                mask = column.is_null().to_numpy(zero_copy_only=False)
                column = pa.StructArray.from_arrays(
                    [pa.array(sec, pa.int64()), pa.array(nano.astype(np.int32), pa.int32())],
                    fields=list(INTERVAL_STRUCT),
                    mask=pa.array(mask, pa.bool_()),
                )
            columns.append(column)
        yield pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _metrics(call: Call) -> Callable[[], bytes] | None:
    """The metrics of a record body for a client that gets them (§5.7): the JSON of the
    time from now until its last row is encoded."""
    if not call.state.config.download_metrics:
        return None
    try:
        version = int(call.header("x-odps-tunnel-version") or 0)
    except ValueError:
        version = 0
    if version < _METRICS_VERSION:
        return None
    started = time.monotonic()
    return lambda: metrics_json(int((time.monotonic() - started) * 1e6))


def rows_response(
    call: Call,
    data_dir: Path,
    files: list[DataFile],
    schema: TableSchema,
    start: int,
    count: int,
    selected: list[str] | None,
    timestamp_as_struct: bool = False,
) -> Response:
    """The streamed, optionally compressed record or Arrow body of a row range."""
    if "arrow" in call.params:
        wanted = set(selected or schema.names)
        names = [c.name for c in schema.simple_columns if c.name in wanted]
        batches = read_range(data_dir, files, start, count, names)
        if timestamp_as_struct:
            batches = _timestamps_as_structs(batches)
        body = arrow_body(batches)
    else:
        names = selected or [c.name for c in schema.simple_columns]
        columns = [schema.get_column(n) for n in names]
        rows = read_range(data_dir, files, start, count, names)
        body = record_body(rows, columns, _metrics(call))
    encoding = choose_encoding(call.header("accept-encoding"))
    headers = {"Content-Encoding": encoding} if encoding else {}
    return StreamingResponse(
        compressed(body, encoding), headers=headers, media_type="application/octet-stream"
    )
