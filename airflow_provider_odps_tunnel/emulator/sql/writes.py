"""SQL writes into stored tables: INSERT INTO / OVERWRITE, CTAS data and TRUNCATE.

A write first streams its rows from DuckDB into new data files (``.part`` until
registered), then publishes them under the table lock exactly as a tunnel commit does: one
atomic manifest rename per partition, so readers see all of a partition's new rows or none.
A dynamic-partition INSERT publishes each partition it wrote in turn, all under one lock
hold. INSERT INTO a primary-key table replaces the rows whose keys it writes (the last row
of a key wins), as upserts do. DATETIME and TIMESTAMP values are wall clock in the
statement's zone inside DuckDB and are stored as the instants they name (``zoned``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec import types as odps
from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec

from ..catalog import Catalog, DataFile, TableInfo
from ..datafiles import read_table, write_table
from ..errors import EmulatorError
from ..ingest import DataSink
from .errors import SqlError
from .statements import Insert
from .typemap import duckdb_type, quote_ident
from .zoned import to_instant

__all__ = ["insert", "publish_file", "truncate"]

_BATCH_ROWS = 8192


@dataclass
class _Target:
    """Where an INSERT's rows go: the static spec, or the dynamic partition columns."""

    static: dict[str, str]
    dynamic: list[str]


def _cast_expr(ref: str, dt: odps.DataType, zone: str) -> str:
    if isinstance(dt, odps.Char):
        return f"rpad(CAST({ref} AS VARCHAR), {dt.size}, ' ')"
    value = f"CAST({ref} AS {duckdb_type(dt)})"
    if dt in (odps.datetime, odps.timestamp):
        return to_instant(value, duckdb_type(dt), zone)
    return value


def _target(info: TableInfo, stmt: Insert) -> _Target:
    names = info.schema.partition_names
    if not names:
        if stmt.partition:
            raise SqlError.semantic(f"table {info.name} is not partitioned")
        return _Target({}, [])
    if stmt.partition is None:
        raise SqlError.semantic(
            f"table {info.name} is partitioned: INSERT needs PARTITION ({', '.join(names)})"
        )
    given = {k.lower(): v for k, v in stmt.partition.items()}
    if set(given) != {n.lower() for n in names}:
        raise SqlError.semantic(
            f"the PARTITION clause must name exactly the partition columns {', '.join(names)}"
        )
    values = [given[n.lower()] for n in names]
    first_dynamic = next((i for i, v in enumerate(values) if v is None), len(values))
    if any(v is not None for v in values[first_dynamic:]):
        raise SqlError.semantic("static partition columns must come before dynamic ones")
    static = {n: v for n, v in zip(names, values, strict=True) if v is not None}
    return _Target(static, names[first_dynamic:])  # type: ignore[arg-type]


def _select_sql(
    info: TableInfo, stmt: Insert, target: _Target, source: str, width: int, zone: str
) -> str:
    """The SELECT producing the table's data columns (and dynamic partition values)."""
    data = info.schema.simple_columns
    listed = stmt.columns or [c.name for c in data]
    for name in listed:
        if name not in info.schema or info.schema.is_partition(name):
            raise SqlError.semantic(f"{name} is not a data column of {info.name}")
    listed_lower = [n.lower() for n in listed]
    expected = len(listed) + len(target.dynamic)
    if width != expected:
        raise SqlError.semantic(
            f"the query has {width} columns but the insert into {info.name} needs {expected}"
        )
    exprs = []
    for col in data:
        if col.name.lower() in listed_lower:
            ref = f"c{listed_lower.index(col.name.lower())}"
        else:
            ref = "NULL"
        exprs.append(f"{_cast_expr(ref, col.type, zone)} AS {quote_ident(col.name)}")
    for offset, name in enumerate(target.dynamic):
        exprs.append(f"CAST(c{len(listed) + offset} AS VARCHAR) AS {quote_ident(name)}")
    aliases = ", ".join(f"c{i}" for i in range(width))
    return f"SELECT {', '.join(exprs)} FROM ({source}) AS __src({aliases})"


class _Sinks:
    """One data file per partition being written."""

    def __init__(self, catalog: Catalog, info: TableInfo, max_field_size: int):
        self.catalog = catalog
        self.info = info
        self.max_field_size = max_field_size
        self.storage = info.arrow_schema()
        self.open: dict[tuple[tuple[str, str], ...], DataSink] = {}

    def write(self, spec: dict[str, str], batch: pa.RecordBatch) -> None:
        key = tuple(spec.items())
        if key not in self.open:
            path = self.catalog.new_data_file(self.info)
            self.open[key] = DataSink(path, self.storage, self.max_field_size)
        self.open[key].write(batch)

    def close(self) -> None:
        for sink in self.open.values():
            sink.close()

    def discard(self) -> None:
        for sink in self.open.values():
            sink.discard()


def _split(
    batch: pa.RecordBatch, target: _Target, storage: pa.Schema
) -> list[tuple[dict[str, str], pa.RecordBatch]]:
    """The rows of ``batch`` per partition (dynamic columns dropped, storage types)."""
    data = pa.RecordBatch.from_arrays(batch.columns[: len(storage)], names=storage.names).cast(
        storage
    )
    if not target.dynamic:
        return [(target.static, data)]
    keys = list(zip(*(batch.column(n).to_pylist() for n in target.dynamic), strict=True))
    groups: dict[tuple, list[int]] = {}
    for idx, key in enumerate(keys):
        if any(v is None for v in key):
            raise SqlError.runtime("a dynamic partition value is NULL")
        groups.setdefault(key, []).append(idx)
    out = []
    for key, rows in groups.items():
        spec = {**target.static, **dict(zip(target.dynamic, key, strict=True))}
        out.append((spec, data.take(pa.array(rows, pa.int64()))))
    return out


def insert(
    con: Any,
    catalog: Catalog,
    info: TableInfo,
    stmt: Insert,
    source: str,
    max_field_size: int,
    zone: str = "UTC",
) -> int:
    """Run an INSERT whose query is DuckDB text ``source``; returns the rows written.

    ``zone`` is the statement's time zone (the wall clock of its DATETIME values).
    """
    target = _target(info, stmt)
    width = len(con.sql(source).columns)
    select = _select_sql(info, stmt, target, source, width, zone)
    reader = con.sql(select).to_arrow_reader(_BATCH_ROWS)
    sinks = _Sinks(catalog, info, max_field_size)
    try:
        for batch in reader:
            for spec, part in _split(batch, target, sinks.storage):
                sinks.write(spec, part)
        if not target.dynamic and not sinks.open:
            sinks.write(target.static, pa.RecordBatch.from_pylist([], schema=sinks.storage))
        sinks.close()
    except BaseException:
        sinks.discard()
        raise
    _publish(catalog, info, sinks, stmt.overwrite)
    return sum(s.rows for s in sinks.open.values())


def _publish(catalog: Catalog, info: TableInfo, sinks: _Sinks, overwrite: bool) -> None:
    try:
        specs = {key: _spec(catalog, info, dict(key)) for key in sinks.open}
    except SqlError:
        sinks.discard()
        raise
    with catalog.table_lock(info):
        for key, sink in sinks.open.items():
            spec = specs[key]
            files = [DataFile(catalog.register(info, sink.path), sink.rows)] if sink.rows else []
            if not sink.rows:
                sink.path.unlink(missing_ok=True)
            if info.primary_key and files:
                files = [_merge_by_key(catalog, info, spec, files[0], overwrite)]
                catalog.append(info, spec, files, None, overwrite=True, create=True)
            else:
                catalog.append(info, spec, files, None, overwrite=overwrite, create=True)


def _spec(catalog: Catalog, info: TableInfo, values: dict[str, str]) -> PartitionSpec:
    try:
        return catalog.normalize_spec(info, values or None)
    except EmulatorError as exc:
        raise SqlError.semantic(exc.message) from None


def _merge_by_key(
    catalog: Catalog, info: TableInfo, spec: PartitionSpec, new: DataFile, overwrite: bool
) -> DataFile:
    """One file holding the partition after the new rows replaced their keys' old rows."""
    keys = info.primary_key
    added = read_table(info.data_dir / new.name)
    added_keys = list(zip(*(added.column(k).to_pylist() for k in keys), strict=True))
    if any(v is None for key in added_keys for v in key):
        raise SqlError.runtime(f"a primary key value ({', '.join(keys)}) is NULL")
    last = {key: idx for idx, key in enumerate(added_keys)}
    added = added.take(pa.array(sorted(last.values()), pa.int64()))
    parts = [added]
    if not overwrite and catalog.partition_exists(info, spec):
        base = catalog.read_snapshot(info, catalog.snapshot(info, spec))
        base_keys = zip(*(base.column(k).to_pylist() for k in keys), strict=True)
        parts.insert(0, base.filter(pa.array([k not in last for k in base_keys], pa.bool_())))
    merged = pa.concat_tables(parts)
    out = catalog.new_data_file(info)
    write_table(out, merged)
    (info.data_dir / new.name).unlink(missing_ok=True)
    return DataFile(catalog.register(info, out), merged.num_rows)


def publish_file(catalog: Catalog, info: TableInfo, path: Path, rows: int) -> None:
    """Move a materialised result file into a (non-partitioned) table and commit it."""
    part = catalog.new_data_file(info)
    path.replace(part)
    with catalog.table_lock(info):
        name = catalog.register(info, part)
        catalog.append(info, PartitionSpec(), [DataFile(name, rows)], None, create=True)


def truncate(catalog: Catalog, info: TableInfo, specs: list[dict[str, str]]) -> None:
    """Empty the given partitions (all of them when ``specs`` is empty), atomically each."""
    with catalog.table_lock(info):
        if specs:
            targets = [_spec(catalog, info, s) for s in specs]
        elif info.partitioned:
            targets = catalog.partitions(info)
        else:
            targets = [PartitionSpec()]
        for spec in targets:
            if not catalog.partition_exists(info, spec):
                raise SqlError.semantic(
                    f"partition {spec.to_param()} of {info.name} does not exist"
                )
            catalog.append(info, spec, [], None, overwrite=True)
