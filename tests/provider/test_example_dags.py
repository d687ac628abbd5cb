"""Every example DAG, run with ``dag.test()`` against the emulator, checked row by row."""

from __future__ import annotations

import datetime

import pytest

from .data import SALES_COLUMNS, create_table, read_table, write_sales_files
from .helpers import EXAMPLES_DIR, load_dag_module

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)


def _states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in dag_run.get_task_instances()}


def test_load_example_writes_every_row_once(odps_conn, tmp_path):
    table = create_table(odps_conn, "example_sales", SALES_COLUMNS, "ds string")
    rows = write_sales_files(tmp_path / "sales", files=6, rows_per_file=500)
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_load.py").dag
    run = dag.test(
        logical_date=DAY,
        run_conf={
            "source": (tmp_path / "sales").as_uri(),
            "table": table,
            "block_size": 1,
            "max_writers": 3,
        },
    )
    assert run.state == "success", _states(run)
    data = read_table(odps_conn, table, "ds=2024-03-01")
    assert data.num_rows == rows
    assert sorted(data.column("id").to_pylist()) == list(range(rows))
    assert [b["block_id"] for w in _xcom(run, "plan") for b in w["blocks"]] == list(range(6))
    writers = sorted(
        (ti.map_index, ti.rendered_map_index)
        for ti in run.get_task_instances()
        if ti.task_id == "write_blocks"
    )
    assert writers == [(0, "blocks 0"), (1, "blocks 2"), (2, "blocks 4")]
    assert _asset_events(f"odps://{odps_conn.project}/default/{table}") == [
        {
            "partition": "ds=2024-03-01",
            "rows": rows,
            "session_id": _xcom(run, "create_session")["session_id"],
        }
    ]


def _xcom(run, task_id: str):
    return run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def _asset_events(uri: str) -> list[dict]:
    """The extras of the asset events recorded for ``uri`` (read from the metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
        )
        return [dict(extra) for extra in session.scalars(query)]


def test_export_example_writes_the_partition_to_parquet_files(odps_conn, tmp_path):
    import pyarrow.parquet as pq

    from .data import load_rows, sales_rows

    table = create_table(odps_conn, "export_sales", SALES_COLUMNS, "ds string")
    load_rows(odps_conn, table, "ds=2024-03-01", sales_rows(0, 2500))
    load_rows(odps_conn, table, "ds=2024-03-02", sales_rows(10_000, 10))  # not exported
    out = tmp_path / "export"
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_export.py").dag
    run = dag.test(
        logical_date=DAY,
        run_conf={"table": table, "destination": out.as_uri(), "rows_per_file": 1000},
    )
    assert run.state == "success", _states(run)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    exported = pq.read_table(out).sort_by("id")
    assert exported.num_rows == 2500
    assert exported.select(["id", "item", "amount"]).equals(sales_rows(0, 2500))


def test_upsert_example_applies_upserts_and_deletes(odps_conn, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .data import load_rows

    table = create_table(
        odps_conn, "customers", "id bigint, name string, tier string", primary_key=["id"], buckets=4
    )
    load_rows(
        odps_conn,
        table,
        None,
        pa.table({"id": [1, 2, 3], "name": ["ann", "bob", "cy"], "tier": ["a", "b", "c"]}),
    )
    source = tmp_path / "changes"
    source.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": [2, 3, 4],
                "name": ["bob", "cy", "dee"],
                "tier": ["gold", "c", "b"],
                "deleted": [False, True, False],
            }
        ),
        source / "changes-0.parquet",
    )
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_upsert.py").dag
    run = dag.test(logical_date=DAY, run_conf={"table": table, "source": source.as_uri()})
    assert run.state == "success", _states(run)
    result = run.get_task_instance("upsert_customers").xcom_pull(task_ids="upsert_customers")
    assert (result["upserted"], result["deleted"]) == (2, 1)
    rows = read_table(odps_conn, table).sort_by("id").to_pylist()
    assert rows == [
        {"id": 1, "name": "ann", "tier": "a"},
        {"id": 2, "name": "bob", "tier": "gold"},
        {"id": 4, "name": "dee", "tier": "b"},
    ]


def test_sensor_pipeline_waits_in_the_trigger_then_loads_and_appends(odps_conn, tmp_path):
    import contextlib
    import json
    import threading

    import pyarrow as pa
    from polling import wait_until

    from .data import load_rows, sales_rows

    orders = create_table(odps_conn, "orders", SALES_COLUMNS, "ds string")
    customers = create_table(odps_conn, "customer_snapshot", "id bigint, name string", "ds string")
    events = create_table(odps_conn, "events", "event string, value bigint")
    (tmp_path / "customers").mkdir()
    (tmp_path / "customers" / "customers.csv").write_text("id,name\n1,ann\n2,bob\n3,cy\n")
    (tmp_path / "events").mkdir()
    for i in range(2):
        lines = [json.dumps({"event": f"e{i}-{j}", "value": j}) for j in range(5)]
        (tmp_path / "events" / f"events-{i}.jsonl").write_text("\n".join(lines) + "\n")

    # The orders partition only arrives after the sensor has looked once and deferred.
    looked = odps_conn.faults.add(
        method="POST",
        resource=f"/tables/{orders}",
        session_kind="download",
        kind="delay",
        seconds=0,
        times=0,
    )

    def upstream_load() -> None:
        # Load anyway if the sensor never looks: the asserts below judge, the DAG never hangs.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: looked.fired, timeout=60, message="the sensor's first look")
        load_rows(odps_conn, orders, "ds=2024-03-01", sales_rows(0, 5))

    loader = threading.Thread(target=upstream_load)
    loader.start()
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_sensor_pipeline.py").dag
    run = dag.test(
        logical_date=DAY,
        run_conf={
            "orders_table": orders,
            "customers_table": customers,
            "customers_source": (tmp_path / "customers").as_uri(),
            "events_table": events,
            "events_source": (tmp_path / "events").as_uri(),
        },
    )
    loader.join(timeout=60)
    assert run.state == "success", _states(run)
    assert looked.fired >= 2  # the inline poke, then the trigger
    sensor = run.get_task_instance("wait_for_orders")
    assert sensor.try_number == 1
    assert sensor.xcom_pull(task_ids="wait_for_orders") == {"rows": 5}
    snapshot = (
        read_table(odps_conn, customers, "ds=2024-03-01").sort_by("id").select(["id", "name"])
    )
    assert snapshot.to_pydict() == {"id": [1, 2, 3], "name": ["ann", "bob", "cy"]}
    appended = read_table(odps_conn, events).sort_by("event")
    assert appended.num_rows == 10
    assert appended.column("event").to_pylist()[:2] == ["e0-0", "e0-1"]
    assert pa.compute.sum(appended.column("value")).as_py() == 2 * sum(range(5))


@pytest.mark.parametrize(
    "name",
    [
        "example_odps_load",
        "example_odps_export",
        "example_odps_upsert",
        "example_odps_sensor_pipeline",
    ],
)
def test_example_explains_itself_in_the_ui(name):
    """The DAG page shows what the DAG does, what data to prepare and how to run it against
    the emulator; the trigger form gives every parameter a title and a description."""
    dag = load_dag_module(EXAMPLES_DIR / f"{name}.py").dag
    for heading in ("### Data to prepare", "### Run it against the emulator"):
        assert heading in dag.doc_md
    assert "odps-tunnel-emulator serve" in dag.doc_md
    for key in dag.params:
        param = dag.params.get_param(key)
        assert param.schema.get("title") and param.description, key
