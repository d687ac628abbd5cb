"""The transfers users expect, against the emulator: exports to Parquet, CSV and JSON lines
with compression (in one task and mapped, from a table, partition or SQL result); loads from
compressed text and ORC with CSV options, a column mapping and ``create_table_if_missing``;
and the single-task load's re-run rules (listing fingerprint, ``force_rerun``)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from airflow_provider_odps_tunnel.operators.export import (
    OdpsExportOperator,
    OdpsExportRangeOperator,
    OdpsPlanExportOperator,
)
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.operators.upload import (
    OdpsCommitUploadOperator,
    OdpsCreateUploadSessionOperator,
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)

from .data import SALES_COLUMNS, create_table, load_rows, read_table, sales_rows

ROWS = 300


def context(store: Any, try_number: int = 1) -> dict[str, Any]:
    return {"task_state_store": store, "ti": SimpleNamespace(try_number=try_number, stats_tags={})}


def _name(request: Any, prefix: str) -> str:
    return prefix + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]


@pytest.fixture
def sales(odps_conn, request) -> str:
    """A partitioned sales table holding ids 0..ROWS-1 in ``ds=1``."""
    name = create_table(odps_conn, _name(request, "tm_"), SALES_COLUMNS, "ds string")
    load_rows(odps_conn, name, "ds=1", sales_rows(0, ROWS))
    return name


def _decompress(path: str) -> bytes:
    data = Path(path.removeprefix("file://")).read_bytes()
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".bz2"):
        return bz2.decompress(data)
    if path.endswith(".zst"):
        return pa.CompressedInputStream(pa.BufferReader(data), "zstd").read()
    return data


def _read_back(path: str) -> pa.Table:
    if ".parquet" in path:
        return pq.read_table(path.removeprefix("file://"))
    data = _decompress(path)
    if ".csv" in path:
        return pcsv.read_csv(io.BytesIO(data))
    return pa.Table.from_pylist([json.loads(line) for line in data.decode().splitlines()])


@pytest.mark.parametrize(
    ("file_format", "compression", "suffix"),
    [
        ("csv", "gzip", ".csv.gz"),
        ("jsonl", "bz2", ".jsonl.bz2"),
        ("jsonl", "zstd", ".jsonl.zst"),
        ("csv", None, ".csv"),
        ("parquet", "zstd", ".parquet"),
    ],
)
def test_one_task_export_in_each_format(
    odps_conn, sales, state_store, tmp_path, file_format, compression, suffix
):
    result = OdpsExportOperator(
        task_id="x",
        table=sales,
        partition="ds=1",
        destination=(tmp_path / "out").as_uri(),
        rows_per_file=100,
        file_format=file_format,
        file_compression=compression,
    ).execute(context(state_store))
    assert result["rows"] == ROWS and len(result["files"]) == 3
    assert all(f["path"].endswith(suffix) for f in result["files"])
    back = pa.concat_tables([_read_back(f["path"]) for f in result["files"]])
    assert back.num_rows == ROWS
    assert sorted(back.column("id").to_pylist()) == list(range(ROWS))
    assert round(sum(back.column("amount").to_pylist()), 2) == round(ROWS * 299 * 1.25 / 2, 2)
    if file_format == "parquet":
        codec = pq.ParquetFile(result["files"][0]["path"].removeprefix("file://"))
        assert codec.metadata.row_group(0).column(0).compression == "ZSTD"


def test_mapped_export_of_a_sql_result_to_gzipped_csv(odps_conn, sales, state_store, tmp_path):
    plan = OdpsPlanExportOperator(
        task_id="p",
        sql=f"SELECT id, amount FROM {sales} WHERE ds = '1' AND id < 150",
        destination=str(tmp_path / "sql"),
        rows_per_file=50,
        file_format="csv",
        file_compression="gzip",
        clear_destination=True,
    ).execute({})
    assert len(plan) == 3 and plan[0]["path"].endswith("part-00000.csv.gz")
    results = [OdpsExportRangeOperator(task_id="r", **item).execute({}) for item in plan]
    back = pa.concat_tables([_read_back(r["path"]) for r in results])
    assert back.column_names == ["id", "amount"]
    assert sorted(back.column("id").to_pylist()) == list(range(150))


def _write_csv_variants(directory: Path) -> int:
    """Three compressed CSV files with a title line, no header, ';' and a NULL marker."""
    directory.mkdir(parents=True)
    rows = 0
    for i, (suffix, compress) in enumerate(
        [
            (".csv.gz", gzip.compress),
            (".csv.bz2", bz2.compress),
            (".csv.zst", lambda b: pa.compress(b, codec="zstd", asbytes=True)),
        ]
    ):
        lines = ["exported by the shop; do not edit"]
        for n in range(i * 100, i * 100 + 100):
            item = "\\N" if n % 10 == 0 else f'"item;{n % 7}"'
            lines.append(f"{n};{item};{n * 1.25}")
            rows += 1
        (directory / f"part-{i}{suffix}").write_bytes(compress(("\n".join(lines) + "\n").encode()))
    return rows


def test_compressed_csv_with_options_and_a_column_mapping(
    odps_conn, request, state_store, tmp_path
):
    table = create_table(
        odps_conn, _name(request, "tm_"), "sale_id bigint, item string, amount double"
    )
    rows = _write_csv_variants(tmp_path / "csv")
    result = ObjectStorageToOdpsOperator(
        task_id="t",
        table=table,
        source=(tmp_path / "csv").as_uri(),
        csv_options={
            "delimiter": ";",
            "header": False,
            "column_names": ["id", "item", "amount"],
            "skip_rows": 1,
            "null_values": ["\\N"],
        },
        column_mapping={"id": "sale_id"},
    ).execute(context(state_store))
    assert result["rows"] == rows == 300
    landed = read_table(odps_conn, table)
    assert sorted(landed.column("sale_id").to_pylist()) == list(range(300))
    ids, items = landed.column("sale_id").to_pylist(), landed.column("item").to_pylist()
    items = dict(zip(ids, items, strict=True))
    assert items[10] is None and items[11] == "item;4"


def test_the_mapped_chain_reads_compressed_csv_with_options_and_a_mapping(
    odps_conn, request, state_store, tmp_path
):
    """The same files through the mapped chain: the plan takes the stream compression, the
    writers the CSV options and the column mapping."""
    table = create_table(
        odps_conn, _name(request, "tm_chain_"), "sale_id bigint, item string, amount double"
    )
    rows = _write_csv_variants(tmp_path / "csv")
    session = OdpsCreateUploadSessionOperator(task_id="c", table=table).execute(
        context(state_store)
    )
    work = OdpsPlanUploadOperator(
        task_id="p", source=(tmp_path / "csv").as_uri(), block_size=1, max_writers=2
    ).execute({})
    options = {
        "delimiter": ";",
        "header": False,
        "column_names": ["id", "item", "amount"],
        "skip_rows": 1,
        "null_values": ["\\N"],
    }
    written = [
        OdpsWriteBlocksOperator(
            task_id="w",
            session=session,
            csv_options=options,
            column_mapping={"id": "sale_id"},
            **kwargs,
        ).execute(context(state_store))
        for kwargs in work
    ]
    committed = OdpsCommitUploadOperator(
        task_id="m", session=session, plan=work, written=written
    ).execute(context(state_store))
    assert committed["rows"] == rows == 300 and committed["blocks"] == 3
    landed = read_table(odps_conn, table)
    assert sorted(landed.column("sale_id").to_pylist()) == list(range(300))
    ids, names = landed.column("sale_id").to_pylist(), landed.column("item").to_pylist()
    items = dict(zip(ids, names, strict=True))
    assert items[10] is None and items[11] == "item;4"
    # a source named otherwise: the plan says its compression
    named = tmp_path / "named"
    named.mkdir()
    (named / "part.dat").write_bytes(gzip.compress(b"1;x;2.5\n"))
    plan = OdpsPlanUploadOperator(
        task_id="p", source=named.as_uri(), source_format="csv", source_compression="gzip"
    ).execute({})
    assert plan[0]["blocks"][0]["pieces"][0]["compression"] == "gzip"


def test_orc_and_compressed_jsonl_create_the_table_with_its_partition(
    odps_conn, request, state_store, tmp_path
):
    source = tmp_path / "mixed"
    source.mkdir()
    orc.write_table(sales_rows(0, 120), source / "a.orc")
    lines = [json.dumps(r) for r in sales_rows(120, 80).to_pylist()]
    (source / "b.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    table = _name(request, "tm_new_")
    result = ObjectStorageToOdpsOperator(
        task_id="t",
        table=table,
        partition="ds=2024-01-01",
        source=source.as_uri(),
        create_table_if_missing=True,
        create_partition=True,
    ).execute(context(state_store))
    assert result["rows"] == 200
    landed = read_table(odps_conn, table, "ds=2024-01-01")
    assert sorted(landed.column("id").to_pylist()) == list(range(200))
    schema = odps_conn.catalog.get_table(odps_conn.project, table).schema
    assert [(c.name, str(c.type)) for c in schema.columns] == [
        ("id", "bigint"),
        ("item", "string"),
        ("amount", "double"),
        ("ds", "string"),
    ]


def test_a_rerun_loads_again_only_when_the_listing_changed_or_forced(
    odps_conn, request, state_store, tmp_path
):
    table = create_table(odps_conn, _name(request, "tm_"), SALES_COLUMNS, "ds string")
    source = tmp_path / "in"
    source.mkdir()
    pq.write_table(sales_rows(0, 50), source / "a.parquet")
    kwargs = dict(
        task_id="t",
        table=table,
        partition="ds=1",
        source=source.as_uri(),
        create_partition=True,
    )
    first = ObjectStorageToOdpsOperator(**kwargs).execute(context(state_store, 1))
    # Same listing: the earlier result, nothing loaded again.
    assert ObjectStorageToOdpsOperator(**kwargs).execute(context(state_store, 2)) == first
    assert read_table(odps_conn, table, "ds=1").num_rows == 50
    # The file was replaced (same name and size, new mtime): loaded again (appended here).
    stat = (source / "a.parquet").stat()
    os.utime(source / "a.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = ObjectStorageToOdpsOperator(**kwargs).execute(context(state_store, 3))
    assert second["session_id"] != first["session_id"]
    assert read_table(odps_conn, table, "ds=1").num_rows == 100
    # force_rerun: an unchanged listing is loaded again.
    third = ObjectStorageToOdpsOperator(**kwargs, force_rerun=True).execute(context(state_store, 4))
    assert third["session_id"] != second["session_id"]
    assert read_table(odps_conn, table, "ds=1").num_rows == 150


HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto-transfers.md"


def test_the_howto_examples_run(odps_conn, tmp_path, monkeypatch):
    """Each Python block of ``docs/howto-transfers.md`` builds its DAG as written; its tasks
    then run in order against the emulator (a mapped task once per element of its input),
    on data prepared under a temporary directory standing in for ``/tmp/odps_example``."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from .conftest import FakeTaskStateStore
    from .helpers import EXAMPLES_DIR, load_dag_module

    text = HOWTO.read_text().replace("/tmp/odps_example", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    orders = tmp_path / "orders.db"
    load_dag_module(EXAMPLES_DIR / "example_odps_sql_to_odps.py").create_sqlite_source(
        orders, rows=2_000
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_HOWTO_ORDERS_DB", json.dumps({"conn_type": "sqlite", "host": str(orders)})
    )
    _write_csv_variants(tmp_path / "csv")
    with sqlite3.connect(orders) as db:
        (over_100,) = db.execute("SELECT COUNT(*) FROM orders WHERE total > 100").fetchone()

    outputs: dict[str, Any] = {}
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, str(HOWTO), "exec"), namespace)
        for task in namespace["dag"].topological_sort():
            if isinstance(task, MappedOperator):
                (upstream,) = task.upstream_task_ids
                cls = task.operator_class
                outputs[task.task_id] = [
                    cls(task_id=f"{task.task_id}_{i}", **kwargs).execute({})
                    for i, kwargs in enumerate(outputs[upstream])
                ]
            else:
                outputs[task.task_id] = task.execute(context(FakeTaskStateStore()))

    assert outputs["orders_to_odps"]["rows"] == 2_000
    landed = read_table(odps_conn, "howto_orders", "ds=2024-06-01")
    assert sorted(landed.column("id").to_pylist()) == list(range(1, 2_001))
    assert "amount" in landed.column_names
    sales = read_table(odps_conn, "howto_sales", "ds=2024-06-01")
    assert sorted(sales.column("id").to_pylist()) == list(range(300))
    assert outputs["partition_to_jsonl"]["rows"] == 2_000
    jsonl = [f["path"] for f in outputs["partition_to_jsonl"]["files"]]
    assert len(jsonl) == 1 and jsonl[0].endswith(".jsonl.zst")
    csv_rows = sum(r["rows"] for r in outputs["export_csv"])
    assert csv_rows == over_100 > 0
    back = pa.concat_tables([_read_back(r["path"]) for r in outputs["export_csv"]])
    assert back.num_rows == over_100 and min(back.column("amount").to_pylist()) > 100


@pytest.mark.usefixtures("airflow_db")
def test_load_and_exports_run_in_a_dag(odps_conn, request, tmp_path):
    """``dag.test()``: compressed CSV in, then JSON lines (zstd, one task) and gzipped CSV
    (mapped) out; every row lands once and comes back out once."""
    import datetime

    from .helpers import TEST_DAGS_DIR, load_dag_module

    rows = _write_csv_variants(tmp_path / "csv")
    table = _name(request, "tm_dag_")
    dag = load_dag_module(TEST_DAGS_DIR / "odps_test_transfers.py").dag
    conf = {
        "source": (tmp_path / "csv").as_uri(),
        "table": table,
        "destination": (tmp_path / "out").as_uri(),
    }
    run = dag.test(logical_date=datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC), run_conf=conf)
    states = {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    assert len([k for k in states if k.startswith("export_csv[")]) == 3
    landed = read_table(odps_conn, table, "ds=2024-03-01")
    assert sorted(landed.column("id").to_pylist()) == list(range(rows))
    jsonl = sorted((tmp_path / "out" / "jsonl").glob("part-*.jsonl.zst"))
    csv = sorted((tmp_path / "out" / "csv").glob("part-*.csv.gz"))
    assert (len(jsonl), len(csv)) == (3, 3)
    for files in (jsonl, csv):
        back = pa.concat_tables([_read_back(str(f)) for f in files])
        assert sorted(back.column("id").to_pylist()) == list(range(rows))
        total = round(sum(back.column("amount").to_pylist()), 2)
        assert total == round(sum(n * 1.25 for n in range(rows)), 2)


def test_create_table_names_a_column_without_a_type(odps_conn, state_store, tmp_path):
    (tmp_path / "notes.csv").write_text("id,note\n1,\n2,\n")
    op = ObjectStorageToOdpsOperator(
        task_id="t",
        table="tm_untyped",
        source=(tmp_path / "notes.csv").as_uri(),
        create_table_if_missing=True,
    )
    with pytest.raises(ValueError, match=r"tm_untyped: column 'note' \(null\)"):
        op.execute(context(state_store))


def test_source_compression_names_the_codec_of_files_named_otherwise(tmp_path):
    from airflow_provider_odps_tunnel.operators.sources import LoadSource

    (tmp_path / "rows.csv").write_bytes(gzip.compress(b"id,item\n1,a\n2,b\n"))
    source = LoadSource(source=(tmp_path / "rows.csv").as_uri(), source_compression="gzip")
    (piece,) = source.pieces()
    assert (piece.format, piece.compression) == ("csv", "gzip")
    schema = pa.schema([("id", pa.int64()), ("item", pa.string())])
    (batch,) = list(source.read([piece], schema))
    assert batch.column("id").to_pylist() == [1, 2]
    with pytest.raises(ValueError, match="only CSV and JSON lines"):
        LoadSource(
            source=(tmp_path / "rows.csv").as_uri(),
            source_format="parquet",
            source_compression="gzip",
        ).pieces()
