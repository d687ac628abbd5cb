"""OpenLineage: the ``odps://`` asset URI, and the events a DAG run emits.

``tests/dags/odps_test_lineage.py`` runs with ``dag.test()`` in a child process that has the
OpenLineage provider configured with the ``file`` transport (and emission in a thread, not
a fork); the test reads the COMPLETE events from the file. The OpenLineage configuration
is read once per process, so it lives in the child only: the other tests run with the
provider installed but not configured, which ``test_unconfigured_openlineage_is_silent``
checks.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import urllib.parse

import pytest

from airflow_provider_odps_tunnel.hooks import assets

from .data import SALES_COLUMNS, create_table, write_sales_files
from .helpers import TEST_DAGS_DIR

pytestmark = pytest.mark.usefixtures("airflow_db")

_RUN_DAG = textwrap.dedent(
    """
    import datetime, json, sys
    sys.path.insert(0, {tests!r})
    from provider.helpers import load_dag_module
    dag = load_dag_module(__import__("pathlib").Path({dag_file!r})).dag
    run = dag.test(
        logical_date=datetime.datetime({year}, 1, 1, tzinfo=datetime.UTC),
        run_conf=json.loads({conf!r}),
    )
    states = {{f"{{t.task_id}}[{{t.map_index}}]": t.state for t in run.get_task_instances()}}
    print("DAG-RUN " + json.dumps({{"state": run.state, "tasks": states}}), flush=True)
    """
)


def _run_dag(conf: dict, env: dict[str, str], year: int) -> tuple[dict, str]:
    """Run the lineage DAG in a child process; returns its summary and its output."""
    code = _RUN_DAG.format(
        tests=str(TEST_DAGS_DIR.parent),
        dag_file=str(TEST_DAGS_DIR / "odps_test_lineage.py"),
        conf=json.dumps(conf),
        year=year,
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    (summary,) = [s for s in done.stdout.splitlines() if s.startswith("DAG-RUN ")]
    return json.loads(summary.removeprefix("DAG-RUN ")), done.stdout + done.stderr


def _errors(output: str) -> list[str]:
    """The error lines of a child's output (for a failed run's message)."""
    return [line for line in output.splitlines() if "error" in line.lower()][-20:]


def _prepare(emu, tmp_path, prefix: str) -> tuple[dict, dict[str, str]]:
    """The tables, files and SQLite source of the DAG; returns its run conf and the
    environment of its SQLite connection."""
    create_table(emu, f"{prefix}_sales", SALES_COLUMNS, "ds string")
    create_table(emu, f"{prefix}_copy", SALES_COLUMNS)
    create_table(emu, f"{prefix}_keys", "k bigint, v string", primary_key=["k"], buckets=1)
    create_table(emu, f"{prefix}_stream", "k bigint, v string")
    create_table(emu, f"{prefix}_orders", "id bigint, customer string, total double")
    write_sales_files(tmp_path / "sales", files=3, rows_per_file=100)
    with sqlite3.connect(tmp_path / "source.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, "c", 1.5) for i in range(7)])
    source_db = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "source.db")})
    env = {"AIRFLOW_CONN_LINEAGE_SQLITE": source_db}
    conf = {
        "prefix": prefix,
        "source": (tmp_path / "sales").as_uri(),
        "destination": (tmp_path / "export").as_uri(),
    }
    return conf, env


# -- the asset URI -------------------------------------------------------------------------


def test_uri_handler_normalizes_case_and_default_schema():
    from airflow.sdk import Asset

    assert Asset("odps://Proj/Sales").uri == "odps://proj/default/sales"
    assert Asset("odps://proj/Mart/Sales/").uri == "odps://proj/mart/sales"
    for bad in ("odps://proj", "odps://proj/a/b/c", "odps://proj/sal-es", "odps://proj/t?x=1"):
        with pytest.raises(ValueError, match="odps://"):
            Asset(bad)


def test_factory_and_converter_agree_with_the_operators_uri():
    asset = assets.create_asset(project="P", table="Sales")
    assert (asset.uri, asset.name, asset.group) == (
        "odps://p/default/sales",
        "odps://p/default/sales",
        "odps_table",
    )
    assert assets.table_uri("p.mart.sales") == "odps://p/mart/sales"
    dataset = assets.convert_asset_to_openlineage(asset, None)
    assert (dataset.namespace, dataset.name) == ("odps://p", "default.sales")
    assert assets.openlineage_name("p.sales") == ("odps://p", "default.sales")


def test_provider_info_registers_the_scheme():
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    from airflow_provider_odps_tunnel.get_provider_info import get_provider_info

    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["odps"]
    dataset = translate_airflow_asset(Asset("odps://proj/sales"), None)
    assert (dataset.namespace, dataset.name) == ("odps://proj", "default.sales")


# -- events of a DAG run ---------------------------------------------------------------------


def _complete_events(path) -> dict[str, list[dict]]:
    """COMPLETE events of task runs by task id (one per map index)."""
    found: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] != "COMPLETE" or "." not in event["job"]["name"]:
            continue  # the DAG run's own event
        task_id = event["job"]["name"].split(".", 1)[1]
        found.setdefault(task_id, []).append(event)
    return found


def _datasets(event: dict, side: str) -> dict[tuple[str, str], dict]:
    return {(d["namespace"], d["name"]): d for d in event[side]}


def _schema(dataset: dict) -> list[tuple[str, str]]:
    return [(f["name"], f["type"]) for f in dataset["facets"]["schema"]["fields"]]


def _stats(dataset: dict) -> dict:
    stats = dataset["outputFacets"]["outputStatistics"]
    return {k: stats.get(k) for k in ("rowCount", "size")}


def test_dag_run_emits_tables_files_schemas_and_statistics(odps_conn, tmp_path):
    conf, env = _prepare(odps_conn, tmp_path, "lineage")
    events_file = tmp_path / "events.jsonl"
    summary, output = _run_dag(
        conf,
        {
            **env,
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(events_file), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "odps_tests",
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        },
        year=2024,
    )
    assert summary["state"] == "success", (summary, _errors(output))
    failures = ("Failed to extract", "OpenLineage method failed", "No OpenLineage")
    assert [line for line in output.splitlines() if any(f in line for f in failures)] == []
    events = _complete_events(events_file)
    project = f"odps://{odps_conn.project}"
    sales = (project, "default.lineage_sales")
    sales_schema = [("id", "bigint"), ("item", "string"), ("amount", "double"), ("ds", "string")]
    source_dir = urllib.parse.urlsplit(conf["source"]).path

    (load,) = events["load"]
    assert list(_datasets(load, "inputs")) == [("file", source_dir)]
    out = _datasets(load, "outputs")[sales]
    assert _schema(out) == sales_schema
    assert _stats(out)["rowCount"] == 300

    (plan,) = events["plan"]
    assert list(_datasets(plan, "inputs")) == [("file", source_dir)]
    writers = events["write"]
    assert len(writers) == 2
    written = [_stats(_datasets(w, "outputs")[sales]) for w in writers]
    assert all(_schema(_datasets(w, "outputs")[sales]) == sales_schema for w in writers)
    assert sum(s["rowCount"] for s in written) == 300
    assert all(s["size"] > 0 for s in written)
    inputs = sorted(name for w in writers for _, name in _datasets(w, "inputs"))
    assert [n.rsplit("/", 1)[1] for n in inputs] == [f"sales-{i:03d}.parquet" for i in range(3)]
    (commit,) = events["commit"]
    committed = _stats(_datasets(commit, "outputs")[sales])
    assert _schema(_datasets(commit, "outputs")[sales]) == sales_schema
    assert committed == {"rowCount": 300, "size": sum(s["size"] for s in written)}

    (sql,) = events["sql"]
    assert "INSERT INTO lineage_copy" in sql["job"]["facets"]["sql"]["query"]
    assert list(_datasets(sql, "inputs")) == [sales]
    assert list(_datasets(sql, "outputs")) == [(project, "default.lineage_copy")]

    (upsert,) = events["upsert"]
    keys = _datasets(upsert, "outputs")[(project, "default.lineage_keys")]
    assert _schema(keys) == [("k", "bigint"), ("v", "string")]
    assert _stats(keys)["rowCount"] == 3
    assert upsert["inputs"] == []  # a callable is no dataset
    (stream,) = events["stream"]
    assert (
        _stats(_datasets(stream, "outputs")[(project, "default.lineage_stream")])["rowCount"] == 3
    )

    (from_sqlite,) = events["from_sqlite"]
    assert from_sqlite["job"]["facets"]["sql"]["query"] == "SELECT id, customer, total FROM orders"
    orders = _datasets(from_sqlite, "outputs")[(project, "default.lineage_orders")]
    assert _stats(orders)["rowCount"] == 7
    assert from_sqlite["inputs"] == []  # SQLite's hook names no OpenLineage datasets

    export_dir = urllib.parse.urlsplit(conf["destination"]).path
    (export_plan,) = events["export_plan"]
    assert _schema(_datasets(export_plan, "inputs")[sales]) == sales_schema
    assert list(_datasets(export_plan, "outputs")) == [("file", export_dir)]
    (export,) = events["export"]
    assert list(_datasets(export, "inputs")) == [sales]
    ((name, file_out),) = _datasets(export, "outputs").items()
    assert name == ("file", f"{export_dir}/part-00000.parquet")
    assert _stats(file_out) == {
        "rowCount": 300,
        "size": (tmp_path / "export" / "part-00000.parquet").stat().st_size,
    }


def test_unconfigured_openlineage_is_silent(odps_conn, tmp_path):
    """Installed but not configured, the OpenLineage provider emits nothing and logs no
    warning about our operators (no transport: its listener is not even registered)."""
    conf, env = _prepare(odps_conn, tmp_path, "quiet")
    summary, output = _run_dag(conf, env, year=2025)
    assert summary["state"] == "success", (summary, _errors(output))
    # (The configured run logs "Successfully emitted OpenLineage ..." per event.)
    noise = [
        line
        for line in output.splitlines()
        if "OpenLineage" in line or "providers.openlineage" in line
    ]
    assert noise == []


# -- naming, without a run -----------------------------------------------------------------


def test_paths_are_named_as_openlineage_names_files():
    from airflow_provider_odps_tunnel.operators.lineage import _path_dataset

    def named(uri: str) -> tuple[str, str]:
        dataset = _path_dataset(uri)
        return dataset.namespace, dataset.name

    assert named("file:///data/sales/") == ("file", "/data/sales")
    assert named("/data/sales/*.parquet") == ("file", "/data/sales")
    assert named("s3://bucket/in/2024-*/x.csv") == ("s3://bucket", "in")
    assert named("oss://bucket/key.parquet") == ("oss://bucket", "key.parquet")


def test_sql_tables_are_placed_in_the_connections_project():
    from types import SimpleNamespace

    from airflow_provider_odps_tunnel.operators.lineage import sql_facets

    operator = SimpleNamespace(
        hook=SimpleNamespace(project="proj", settings=SimpleNamespace(schema=None))
    )
    lineage = sql_facets(
        operator,
        "INSERT OVERWRITE TABLE other.sales PARTITION (ds='1') "
        "SELECT a.id FROM orders a JOIN p3.mart.items b ON a.id = b.id;",
    )
    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        ("odps://p3", "mart.items"),
        ("odps://proj", "default.orders"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("odps://other", "default.sales")]
    assert "INSERT OVERWRITE TABLE other.sales" in lineage.job_facets["sql"].query
    unparsed = sql_facets(operator, "THIS IS NOT SQL")
    assert (unparsed.inputs, unparsed.outputs) == ([], [])
    assert unparsed.job_facets["sql"].query == "THIS IS NOT SQL"
