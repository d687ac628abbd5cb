"""No secret leaks: run every example DAG, then scan what the runs left behind.

The connection carries a recognisable AccessKey secret and STS token (unique per run, with
characters that change under URL and base64 encoding). After ``dag.test()`` of each example
DAG against an emulator that knows that key, these are scanned for the secrets in plain,
URL-encoded, base64 (every alignment) and hex form:

* the task logs: everything written to stdout/stderr and every log record during the runs,
  and any file under ``$AIRFLOW_HOME/logs``;
* the whole metadata DB, every table and row: XComs, the task state store, rendered template
  fields, DAG run conf, task instances, the audit log, ...;
* the emulator's request log and its data directory (sessions, manifests, data files).

The scan must find something (XComs, state-store rows, rendered fields, log lines, request
log lines of these runs), so it is not vacuous.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from provider.data import load_rows  # tests/ is on sys.path, as for every test package
from provider.helpers import load_dag_module, secret_forms

from airflow_provider_odps_tunnel.emulator.server import Emulator

from .conftest import show

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags_examples"
DAY = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)
SECRET = f"S3cr3t+/{uuid.uuid4().hex}=scan"
STS_TOKEN = f"StsT0ken/{uuid.uuid4().hex}+scan"
# The secret of a connection the emulator does not know: its run fails with SignatureNotMatch,
# and the failure (exception text, traceback) must not show it either.
WRONG_SECRET = f"Wr0ng+S3cr3t/{uuid.uuid4().hex}"
EXAMPLE_DAGS = (
    "example_odps_load",
    "example_odps_export",
    "example_odps_upsert",
    "example_odps_sensor_pipeline",
)

# dag.test() runs only DAGs of a configured bundle (as tests/provider/conftest.py sets up).
os.environ.setdefault(
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    json.dumps(
        [
            {
                "name": "examples",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(EXAMPLES), "refresh_interval": 0},
            },
            {
                "name": "test-dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(REPO / "tests" / "dags"), "refresh_interval": 0},
            },
        ]
    ),
)


NEEDLES = sorted(secret_forms(SECRET) | secret_forms(STS_TOKEN) | secret_forms(WRONG_SECRET))


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return [n for n in NEEDLES if n in text]


def test_forms_detect_encoded_secrets():
    for encoded in (
        base64.b64encode(b"Basic " + SECRET.encode()).decode(),
        base64.b64encode(b"k:" + SECRET.encode()).decode(),
        quote(SECRET),
        binascii.hexlify(SECRET.encode()).decode(),
        json.dumps({"password": SECRET}),
    ):
        assert leaks(f"prefix {encoded} suffix"), encoded
    assert not leaks("S3cr3t+/ nothing else")


# ---------------------------------------------------------------------------- the runs
def _sales(start: int, count: int) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "item": [f"item-{i % 7}" for i in ids],
            "amount": [i * 1.25 for i in ids],
        }
    )


def _create(emu: Emulator, name: str, columns: str, partitions: str = "", **kw) -> str:
    from airflow_provider_odps_tunnel.tunnel import TableSchema
    from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns

    schema = TableSchema(parse_columns(columns), parse_columns(partitions))
    emu.catalog.create_table(emu.project, name, schema, **kw)
    return name


def _run_confs(emu: Emulator, tmp: Path) -> dict[str, dict]:
    """Tables and source files of each example DAG, and its run conf."""
    sales = tmp / "sales"
    sales.mkdir()
    for i in range(3):
        pq.write_table(_sales(i * 100, 100), sales / f"sales-{i}.parquet")
    load = _create(emu, "scan_sales", "id bigint, item string, amount double", "ds string")
    export = _create(emu, "scan_export", "id bigint, item string, amount double", "ds string")
    load_rows(emu, export, "ds=2024-03-01", _sales(0, 250))
    customers = _create(
        emu, "scan_customers", "id bigint, name string, tier string", primary_key=["id"], buckets=4
    )
    load_rows(
        emu, customers, None, pa.table({"id": [1, 2], "name": ["a", "b"], "tier": ["x", "y"]})
    )
    changes = tmp / "changes"
    changes.mkdir()
    pq.write_table(
        pa.table({"id": [2, 3], "name": ["b", "c"], "tier": ["g", "h"], "deleted": [True, False]}),
        changes / "changes-0.parquet",
    )
    orders = _create(emu, "scan_orders", "id bigint, item string, amount double", "ds string")
    load_rows(emu, orders, "ds=2024-03-01", _sales(0, 5))  # present: the sensor succeeds at once
    snapshot = _create(emu, "scan_snapshot", "id bigint, name string", "ds string")
    events = _create(emu, "scan_events", "event string, value bigint")
    (tmp / "customers").mkdir()
    (tmp / "customers" / "customers.csv").write_text("id,name\n1,ann\n2,bob\n")
    (tmp / "events").mkdir()
    (tmp / "events" / "events-0.jsonl").write_text(
        "\n".join(json.dumps({"event": f"e{j}", "value": j}) for j in range(4)) + "\n"
    )
    return {
        "example_odps_load": {
            "source": sales.as_uri(),
            "table": load,
            "block_size": 1,
            "max_writers": 2,
        },
        "example_odps_export": {
            "table": export,
            "destination": (tmp / "export").as_uri(),
            "rows_per_file": 100,
        },
        "example_odps_upsert": {"table": customers, "source": changes.as_uri()},
        "example_odps_sensor_pipeline": {
            "orders_table": orders,
            "customers_table": snapshot,
            "customers_source": (tmp / "customers").as_uri(),
            "events_table": events,
            "events_source": (tmp / "events").as_uri(),
        },
    }


@pytest.fixture
def scan_runs(tmp_path_factory, capfd):
    """Run every example DAG with the secret connection; what was captured during the runs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    tmp = tmp_path_factory.mktemp("secret-scan")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    with Emulator(tmp / "emulator", access_id="AKID-scan", secret_access_key=SECRET) as emu:
        conn = {
            "conn_type": "odps_tunnel",
            "login": emu.access_id,
            "password": SECRET,
            "extra": {"project": emu.project, "endpoint": emu.endpoint, "sts_token": STS_TOKEN},
        }
        confs = _run_confs(emu, tmp)
        runs = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT", json.dumps(conn))
            root.addHandler(handler)
            root.setLevel(logging.DEBUG)
            try:
                for dag_id in EXAMPLE_DAGS:
                    dag = load_dag_module(EXAMPLES / f"{dag_id}.py").dag
                    run = dag.test(logical_date=DAY, run_conf=confs[dag_id])
                    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
                    assert run.state == "success", (dag_id, states)
                    runs[dag_id] = run.run_id
                # A run whose connection has the wrong secret: its first task fails at once.
                wrong = {**conn, "password": WRONG_SECRET}
                mp.setenv("AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT", json.dumps(wrong))
                dag = load_dag_module(EXAMPLES / "example_odps_load.py").dag
                for task in dag.tasks:
                    task.retries = 0
                failed = dag.test(
                    logical_date=DAY + datetime.timedelta(days=1),
                    run_conf=confs["example_odps_load"],
                )
                assert failed.state == "failed"
                runs["example_odps_load (wrong secret)"] = failed.run_id
            finally:
                root.removeHandler(handler)
                root.setLevel(old_level)
        out, err = capfd.readouterr()
        request_log = emu.request_log_path.read_bytes()
        data_files = [p for p in emu.data_dir.rglob("*") if p.is_file()]
        data = {p: p.read_bytes() for p in data_files}
    yield {
        "runs": runs,
        "records": records,
        "console": out + err,
        "request_log": request_log,
        "data": data,
    }


def _metadata_db() -> Path:
    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn")
    assert url.startswith("sqlite:///"), url
    return Path(url[len("sqlite:///") :])


def _db_rows() -> dict[str, list[tuple]]:
    with sqlite3.connect(f"file:{_metadata_db()}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}


def _ours(rows_by_table: dict, table: str, runs: dict) -> list[tuple]:
    """Rows of ``table`` belonging to the scanned runs (matched by dag id and run id)."""
    with sqlite3.connect(f"file:{_metadata_db()}?mode=ro", uri=True) as db:
        columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
    dag_at, run_at = columns.index("dag_id"), columns.index("run_id")
    return [r for r in rows_by_table[table] if (r[dag_at], r[run_at]) in runs.items()]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def test_no_secret_in_logs_xcoms_state_store_or_request_log(request, scan_runs):
    runs = scan_runs["runs"]
    assert set(runs) == {*EXAMPLE_DAGS, "example_odps_load (wrong secret)"}
    findings: list[str] = []
    counts: dict[str, int] = {}

    # Task logs: log records of the runs, the console, and any log files.
    records = scan_runs["records"]
    for record in records:
        try:
            line = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose args do not format: scan its parts
            line = f"{record.msg!r} {record.args!r}"
        line += " " + repr(getattr(record, "__dict__", {}))
        findings += [f"log record {record.name}: {n}" for n in leaks(line)]
    counts["log records"] = len(records)
    console = scan_runs["console"]
    findings += [f"console: {n}" for n in leaks(console)]
    counts["console lines"] = console.count("\n")
    # dag.test() sends task logs to the console (structlog): "[airflow.task.<kind>.<class>]".
    task_lines = [line for line in console.splitlines() if "[airflow.task." in line]
    counts["task log lines"] = len(task_lines)
    counts["provider task log lines"] = sum("airflow_provider_odps_tunnel" in x for x in task_lines)
    counts["SignatureNotMatch mentions"] = console.count("SignatureNotMatch")
    log_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    log_files = [p for p in log_dir.rglob("*") if p.is_file()] if log_dir.exists() else []
    for path in log_files:
        findings += [f"log file {path}: {n}" for n in leaks(path.read_bytes())]
    counts["log files"] = len(log_files)

    # The whole metadata DB; XComs, state store and rendered fields of these runs counted.
    rows = _db_rows()
    for table, table_rows in rows.items():
        for row in table_rows:
            findings += [f"DB {table}: {n}" for n in leaks(" ".join(_text(v) for v in row))]
    counts["DB rows (all tables)"] = sum(len(r) for r in rows.values())
    for table in ("xcom", "task_state_store", "rendered_task_instance_fields"):
        counts[f"{table} rows of these runs"] = len(_ours(rows, table, runs))

    # The emulator's request log and everything in its data directory.
    request_log = scan_runs["request_log"]
    findings += [f"request log: {n}" for n in leaks(request_log)]
    counts["request log lines"] = request_log.count(b"\n")
    for path, data in scan_runs["data"].items():
        findings += [f"emulator file {path.name}: {n}" for n in leaks(data)]
    counts["emulator files"] = len(scan_runs["data"])

    show(request, [f"secret scan: {counts}; {len(NEEDLES)} encoded forms searched"])
    assert findings == []
    # Not vacuous: the runs left XComs, state, rendered fields, logs and requests to scan.
    for name in (
        "xcom rows of these runs",
        "task_state_store rows of these runs",
        "rendered_task_instance_fields rows of these runs",
        "provider task log lines",
        "SignatureNotMatch mentions",  # the failed run's error was logged, and scanned
        "request log lines",
    ):
        assert counts[name] > 0, (name, counts)
