"""The demo behind ``make demo``: the example DAGs end to end against the embedded emulator.

It starts the emulator as a child process (temporary data directory, free port), creates the
demo tables with the emulator's catalog API, writes source files, points the
``odps_tunnel_default`` connection at the emulator through ``AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT``,
migrates a throw-away Airflow metadata DB, runs every DAG of ``dags_examples/`` with
``dag.test()``, prints the row counts and a sample of what landed, and stops the emulator.

    python scripts/demo.py [--verbose] [--keep]

``--verbose`` shows the task logs; ``--keep`` keeps the temporary directory for a look.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "dags_examples"
DAY = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)
PARTITION = "ds=2024-06-01"


def configure_airflow(home: Path, verbose: bool) -> None:
    """Airflow reads its configuration when first imported: set it all before that."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO" if verbose else "CRITICAL",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {
                        "name": "examples",
                        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                        "kwargs": {"path": str(EXAMPLES), "refresh_interval": 0},
                    }
                ]
            ),
        }
    )


def write_customer_changes(directory: Path) -> str:
    """Two Parquet files of primary-key changes (one delete) for the upsert example, in
    ``directory`` (created); returns its URI. ``make demo-distributed`` uses them too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3, 4],
                "name": ["Ann", "Bob", "Cy", "Dee"],
                "tier": ["gold", "silver", "bronze", "silver"],
                "deleted": [False, False, False, False],
            }
        ),
        directory / "changes-1.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "id": [2, 3, 5],
                "name": ["Bob", "Cy", "Eve"],
                "tier": ["gold", "bronze", "gold"],
                "deleted": [False, True, False],
            }
        ),
        directory / "changes-2.parquet",
    )
    return directory.as_uri()


def prepare(emu: Any, data: Path) -> dict[str, Any]:
    """Create the tables and write the source files; returns each DAG's run parameters."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_odps_tunnel.tunnel import ODPS, TableSchema, TableTunnel
    from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns

    def table(name: str, columns: str, partitions: str = "", **kwargs: Any) -> str:
        schema = TableSchema(parse_columns(columns), parse_columns(partitions))
        emu.catalog.create_table(emu.project, name, schema, **kwargs)
        return name

    table("sales", "id bigint, item string, amount double, sold_at datetime", "ds string")
    table("customers", "id bigint, name string, tier string", primary_key=["id"], buckets=4)
    table("orders", "id bigint, customer_id bigint, total double", "ds string")
    table("customer_snapshot", "id bigint, name string, city string", "ds string")
    table("events", "event string, value bigint")

    sales = data / "sales"
    sales.mkdir(parents=True)
    start = datetime.datetime(2024, 6, 1, 8, 0)
    for f in range(12):
        ids = range(f * 5000, (f + 1) * 5000)
        pq.write_table(
            pa.table(
                {
                    "id": list(ids),
                    "item": [f"item-{i % 40:02d}" for i in ids],
                    "amount": [round(1 + (i * 7919 % 10_000) / 100, 2) for i in ids],
                    "sold_at": [start + datetime.timedelta(seconds=i) for i in ids],
                }
            ),
            sales / f"sales-{f:02d}.parquet",
        )
    changes = write_customer_changes(data / "customer_changes")
    customers = data / "customers"
    customers.mkdir()
    (customers / "customers.csv").write_text(
        "id,name,city\n1,Ann,Hangzhou\n2,Bob,Beijing\n4,Dee,Shanghai\n5,Eve,Shenzhen\n"
    )
    events = data / "events"
    events.mkdir()
    for part in range(3):
        lines = [json.dumps({"event": f"page_view_{part}", "value": v}) for v in range(4)]
        (events / f"events-{part}.jsonl").write_text("\n".join(lines) + "\n")

    # The upstream orders partition the sensor-gated pipeline waits for.
    odps = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    session = TableTunnel(odps).create_upload_session(
        "orders", partition_spec=PARTITION, create_partition=True
    )
    with session.open_arrow_writer(0) as writer:
        writer.write(pa.table({"id": [1, 2], "customer_id": [1, 5], "total": [19.9, 42.0]}))
    session.commit([0])

    # The SQLite database the common.sql example copies into MaxCompute and back.
    shop = data / "shop.db"
    load_example("example_odps_sql_checks").create_sqlite_source(shop)
    os.environ["AIRFLOW_CONN_ODPS_EXAMPLE_SQLITE"] = json.dumps(
        {"conn_type": "sqlite", "host": str(shop)}
    )
    # The SQLite database SqlToOdpsOperator copies into MaxCompute in key ranges.
    orders_db = data / "orders.db"
    load_example("example_odps_sql_to_odps").create_sqlite_source(orders_db)
    os.environ["AIRFLOW_CONN_ODPS_EXAMPLE_ORDERS"] = json.dumps(
        {"conn_type": "sqlite", "host": str(orders_db)}
    )

    return {
        "example_odps_load": {
            "source": sales.as_uri(),
            "table": "sales",
            "block_size": 256 * 1024,
            "max_writers": 4,
        },
        "example_odps_export": {
            "table": "sales",
            "partition": PARTITION,
            "destination": (data / "export").as_uri(),
            "rows_per_file": 20_000,
        },
        "example_odps_upsert": {"table": "customers", "source": changes},
        "example_odps_sensor_pipeline": {
            "orders_table": "orders",
            "customers_table": "customer_snapshot",
            "customers_source": customers.as_uri(),
            "events_table": "events",
            "events_source": events.as_uri(),
        },
        "example_odps_sql_checks": {"table": "sql_checks_orders", "expected_rows": 4},
        "example_odps_sql_to_odps": {"sql_conn_id": "odps_example_orders", "table": "orders_copy"},
    }


def load_example(dag_id: str) -> Any:
    """The module of the example DAG file ``dag_id``, imported once."""
    if dag_id not in sys.modules:
        spec = importlib.util.spec_from_file_location(dag_id, EXAMPLES / f"{dag_id}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[dag_id] = module
        spec.loader.exec_module(module)
    return sys.modules[dag_id]


def run_dag(dag_id: str, conf: dict[str, Any]) -> bool:
    module = load_example(dag_id)
    started = time.monotonic()
    run = module.dag.test(logical_date=DAY, run_conf=conf)
    seconds = time.monotonic() - started
    tis = run.get_task_instances()
    print(f"\n== {dag_id}: {run.state} in {seconds:.1f} s ({len(tis)} task instances)")
    for ti in sorted(tis, key=lambda t: (t.task_id, t.map_index)):
        label = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        line = f"   {label:<28} {ti.state:<8} try {ti.try_number}"
        value = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
        summary = summarize(value)
        print(line + (f"  -> {summary}" if summary else ""))
    return run.state == "success"


def summarize(value: Any) -> str:
    """The interesting part of a task's XCom, on one line."""
    if not isinstance(value, dict):
        return f"{len(value)} items" if isinstance(value, list) else ""
    keys = ("rows", "blocks", "upserted", "deleted", "path", "state", "session_id")
    parts = []
    for key in keys:
        if key not in value:
            continue
        shown = value[key]
        if key == "blocks" and isinstance(shown, list):
            shown = len(shown)
        if key == "path":
            shown = Path(str(shown)).name
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


def show_tables(emu: Any, data: Path) -> None:
    import pyarrow.parquet as pq

    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel

    tunnel = TableTunnel(
        ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    )
    print("\n== What landed (read back through the tunnel)")
    for name, partition in (
        ("sales", PARTITION),
        ("customers", None),
        ("customer_snapshot", PARTITION),
        ("events", None),
        ("sql_checks_orders", PARTITION),
        ("orders_copy", PARTITION),
    ):
        session = tunnel.create_download_session(name, partition_spec=partition)
        with session.open_arrow_reader(0, min(session.count, 5)) as reader:
            sample = reader.read().to_pandas()
        where = f"{name}/{partition}" if partition else name
        print(f"\n-- {where}: {session.count} rows; first {len(sample)}:")
        print(sample.to_string(index=False))
    files = sorted((data / "export").glob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    print(f"\n-- export of sales/{PARTITION}: {len(files)} Parquet files, {rows} rows")
    for f in files:
        print(f"   {f.name}: {pq.read_metadata(f).num_rows} rows")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the task logs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="odps-tunnel-demo-"))
    configure_airflow(work / "airflow", args.verbose)
    (work / "airflow").mkdir()

    from airflow_provider_odps_tunnel.emulator import Emulator

    emu = Emulator(work / "emulator", subprocess=True).start()
    ok = False
    try:
        print(f"Emulator running at {emu.endpoint} (project {emu.project}), data in {work}")
        os.environ["AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT"] = json.dumps(
            {
                "conn_type": "odps_tunnel",
                "login": emu.access_id,
                "password": emu.secret_access_key,
                "extra": {"project": emu.project, "endpoint": emu.endpoint},
            }
        )
        runs = prepare(emu, work / "data")
        print("Migrating a temporary Airflow metadata DB ...")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
        )
        ok = all([run_dag(dag_id, conf) for dag_id, conf in runs.items()])
        show_tables(emu, work / "data")
    finally:
        emu.stop()
        print("\nEmulator stopped.")
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        print("Some DAG runs failed: run `make demo DEMO_ARGS=--verbose` to see the task logs.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
