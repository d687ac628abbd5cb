"""Real components: ``airflow standalone`` runs the mapped load DAG while a worker is killed.

Scheduler, dag-processor, api-server and triggerer run as separate processes (LocalExecutor,
SQLite, parallelism 3), so task code only reaches Airflow through the Execution API, as in
production. The emulator holds the first block write for a few seconds; meanwhile every
running writer task process gets SIGKILL. Airflow retries those writers, and the table must
end with exactly the source rows: nothing lost, nothing twice.
"""

from __future__ import annotations

import json
import signal

import pytest
from polling import wait_until

from .conftest import connection_json
from .data import SALES_COLUMNS, create_table, read_table, write_sales_files
from .helpers import EXAMPLES_DIR, secret_forms
from .standalone import AirflowStandalone

DAG_ID = "example_odps_load"


@pytest.fixture
def standalone(odps_conn, tmp_path):
    airflow = AirflowStandalone(
        tmp_path / "airflow-home",
        EXAMPLES_DIR,
        {"AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT": connection_json(odps_conn)},
    )
    airflow.start()
    try:
        yield airflow
    finally:
        airflow.stop()


def _run_state(airflow: AirflowStandalone) -> str | None:
    rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ?", DAG_ID)
    state = rows[0][0] if rows else None
    return state if state in ("success", "failed") else None


def test_killed_writer_is_retried_and_every_row_lands_once(standalone, odps_conn, tmp_path):
    table = create_table(odps_conn, "standalone_sales", SALES_COLUMNS, "ds string")
    rows = write_sales_files(tmp_path / "source", files=8, rows_per_file=2000)
    # The first block write waits 4 s inside the emulator: a writer is mid-write meanwhile.
    held = odps_conn.faults.add(
        method="PUT", session_kind="upload", kind="delay", seconds=4, nth=1, times=1
    )
    wait_until(
        lambda: standalone.query("SELECT 1 FROM dag WHERE dag_id = ?", DAG_ID),
        timeout=150,
        interval=0.2,
        message=lambda: f"the dag-processor to parse {DAG_ID}\n{standalone.log_tail()}",
    )
    conf = {
        "source": (tmp_path / "source").as_uri(),
        "table": table,
        "block_size": 1,
        "max_writers": 4,
    }
    standalone.airflow("dags", "trigger", DAG_ID, "-c", json.dumps(conf), "-l", "2024-05-01")
    wait_until(lambda: held.fired, timeout=120, interval=0.2, message="a block write to start")

    def running_writers():
        ids = {
            row[0].replace("-", "")
            for row in standalone.query(
                "SELECT id FROM task_instance WHERE dag_id = ? AND task_id = 'write_blocks' "
                "AND state = 'running'",
                DAG_ID,
            )
        }
        return [p for ti_id, p in standalone.task_processes().items() if ti_id in ids]

    victims = wait_until(
        running_writers, timeout=30, interval=0.05, message="a running writer process"
    )
    for proc in victims:
        proc.send_signal(signal.SIGKILL)

    state = wait_until(
        lambda: _run_state(standalone),
        timeout=180,
        interval=0.5,
        message=lambda: f"the DAG run to finish\n{standalone.log_tail()}",
    )
    tries = standalone.query(
        "SELECT map_index, try_number, state FROM task_instance "
        "WHERE dag_id = ? AND task_id = 'write_blocks' ORDER BY map_index",
        DAG_ID,
    )
    assert state == "success", (tries, standalone.log_tail())
    assert len(tries) == 4 and all(s == "success" for _, _, s in tries)
    assert max(t for _, t, _ in tries) >= 2, tries  # a killed writer was retried
    data = read_table(odps_conn, table, "ds=2024-05-01")
    assert data.num_rows == rows
    assert sorted(data.column("id").to_pylist()) == list(range(rows))

    # Nothing the real components wrote holds the secret key: task logs of every try
    # (killed ones included), the components' log, the metadata DB with its XComs and
    # task state store.
    needles = secret_forms(odps_conn.secret_access_key)
    files = [p for p in standalone.home.rglob("*") if p.is_file()]
    task_logs = [p for p in files if "task_id=write_blocks" in str(p) and p.suffix == ".log"]
    assert len(task_logs) >= 5, task_logs  # four writers, one retried at least
    assert any(p.name.startswith("airflow.db") for p in files)
    leaked = {
        str(p): found
        for p in files
        if (found := [n for n in needles if n in p.read_bytes().decode("latin-1")])
    }
    assert leaked == {}

    # The commit read the mapped writers' results in one request: iterating them one by one
    # asked for one past the end, logged as an error ("XCom not found ... offset=4").
    commit_logs = [p for p in files if "task_id=commit" in str(p) and p.suffix == ".log"]
    assert commit_logs
    noisy = [
        p
        for p in [*commit_logs, standalone.home / "standalone.log"]
        if b"XCom not found" in p.read_bytes()
    ]
    assert noisy == []
