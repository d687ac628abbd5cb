"""Retries in real DAG runs: each task of the chain and the upsert fail once and recover.

The failures are real: the emulator breaks a block write in mid-body, fails upsert writes,
or a task dies right after its work succeeded. Each test then checks that nothing was done
twice (one session, finished blocks not re-sent) and that the table holds exactly the source.
"""

from __future__ import annotations

import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_odps_tunnel.tunnel import options as tunnel_options

from .data import SALES_COLUMNS, create_table, read_table, write_sales_files
from .helpers import TEST_DAGS_DIR, load_dag_module

pytestmark = pytest.mark.usefixtures("airflow_db")

DAY = datetime.datetime(2024, 4, 2, tzinfo=datetime.UTC)


def _tries(run, task_id: str) -> list[int]:
    return [ti.try_number for ti in run.get_task_instances() if ti.task_id == task_id]


@pytest.fixture(scope="module")
def chain_run(emulator, tmp_path_factory, airflow_db):
    """One run of the retry chain; its create, second block write and commit fail on try 1."""
    from .conftest import connection_json

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT", connection_json(emulator))
        emulator.faults.clear()
        source = tmp_path_factory.mktemp("chain") / "sales"
        rows = write_sales_files(source, files=3, rows_per_file=400)
        table = create_table(emulator, "retry_chain_sales", SALES_COLUMNS, "ds string")
        # Every PUT of block 1 loses its connection after 64 bytes of body, until the
        # writer's second try starts: the client's own re-sends cannot cure it, so the
        # writer's first try fails mid-block. Two never-firing faults count block PUTs.
        puts = {
            block: emulator.faults.add(
                method="PUT",
                session_kind="upload",
                resource=rf"[?&]blockid={block}(&|$)",
                kind="delay",
                seconds=0,
                nth=10**9,
            )
            for block in (0, 1, 2)
        }
        breaker = emulator.faults.add(
            method="PUT",
            session_kind="upload",
            resource=r"[?&]blockid=1(&|$)",
            kind="reset_after_bytes",
            bytes=64,
            times=0,
        )
        module = load_dag_module(TEST_DAGS_DIR / "odps_test_retry_chain.py")
        module.EVENTS.clear()

        def on_writer_try(try_number: int) -> None:
            module.EVENTS.append(("write", try_number, breaker.fired))
            if try_number == 2:
                breaker.times = breaker.fired  # disarm

        module.ON_WRITER_TRY = on_writer_try
        run = module.dag.test(
            logical_date=DAY, run_conf={"source": source.as_uri(), "table": table}
        )
        emulator.faults.clear()
        yield {
            "run": run,
            "events": list(module.EVENTS),
            "puts": {block: fault.seen for block, fault in puts.items()},
            "broken": breaker.fired,
            "rows": rows,
            "data": read_table(emulator, table, "ds=2024-04-02"),
        }


def test_chain_run_succeeds_with_exactly_the_source_rows(chain_run):
    assert chain_run["run"].state == "success"
    data = chain_run["data"]
    assert data.num_rows == chain_run["rows"]
    assert sorted(data.column("id").to_pylist()) == list(range(chain_run["rows"]))


def test_block_write_broken_mid_body_is_retried_without_resending_finished_blocks(chain_run):
    assert _tries(chain_run["run"], "write_blocks") == [2]
    writes = [e for e in chain_run["events"] if e[0] == "write"]
    assert [e[1] for e in writes] == [1, 2]
    broken = chain_run["broken"]
    assert broken >= 1 and writes[1][2] == broken  # block 1 only broke during try 1
    # Block 0 was sent once (try 1) and block 2 once (try 2); block 1 was tried on try 1
    # (the client re-sent it too) and sent once more, whole, on try 2.
    assert chain_run["puts"] == {0: 1, 1: broken + 1, 2: 1}
    written = (
        chain_run["run"]
        .get_task_instance("write_blocks", map_index=0)
        .xcom_pull(task_ids="write_blocks", map_indexes=0)
    )
    assert [(b["block_id"], b["skipped"]) for b in written["blocks"]] == [
        (0, True),
        (1, False),
        (2, False),
    ]


def test_retried_create_task_reattaches_to_its_session(chain_run):
    creates = [e for e in chain_run["events"] if e[0] == "create"]
    assert [e[1] for e in creates] == [1, 2]
    assert creates[0][2] == creates[1][2]


def test_commit_retried_after_a_successful_commit_still_succeeds(chain_run):
    commits = [e for e in chain_run["events"] if e[0] == "commit"]
    assert [(e[1], e[2]["committed"]) for e in commits] == [(1, True), (2, False)]
    assert commits[1][2]["rows"] == chain_run["rows"]
    assert commits[1][2]["blocks"] == 3


def test_retried_upsert_resumes_its_session_after_the_last_finished_piece(
    odps_conn, tmp_path, monkeypatch
):
    table = create_table(
        odps_conn, "retry_upsert", "id bigint, name string", primary_key=["id"], buckets=1
    )
    source = tmp_path / "changes"
    source.mkdir()
    pieces = [
        {"id": [1, 2, 3], "name": ["a", "b", "c"], "deleted": [False, False, False]},
        {"id": [2, 4], "name": ["b2", "d"], "deleted": [False, False]},
        {"id": [3, 5], "name": ["c", "e"], "deleted": [True, False]},
    ]
    for i, piece in enumerate(pieces):
        pq.write_table(pa.table(piece), source / f"change-{i}.parquet")
    # One bucket: each piece is one PUT. The second piece's PUT is refused once (a 400 is
    # never retried, as in pyodps 0.13.2), which fails the first try.
    puts = odps_conn.faults.add(
        method="PUT",
        session_kind="upsert",
        nth=2,
        times=1,
        kind="status",
        status=400,
        code="InvalidArgument",
    )
    monkeypatch.setattr(tunnel_options, "retry_delay", 0.01)
    module = load_dag_module(TEST_DAGS_DIR / "odps_test_retry_upsert.py")
    module.EVENTS.clear()
    run = module.dag.test(logical_date=DAY, run_conf={"source": source.as_uri(), "table": table})
    assert run.state == "success"
    (first, second) = module.EVENTS
    assert (first[0], first[2]) == (1, 0)
    assert second == (2, first[1], 1)  # same session, continuing after piece 1
    assert puts.seen == 1 + 1 + 2  # piece 1 was not sent again
    data = read_table(odps_conn, table).sort_by("id").to_pylist()
    assert data == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b2"},
        {"id": 4, "name": "d"},
        {"id": 5, "name": "e"},
    ]


def test_reschedule_mode_sensor_pokes_again_until_the_rows_arrive(odps_conn):
    import contextlib
    import threading

    from polling import wait_until

    from .data import load_rows, sales_rows

    table = create_table(odps_conn, "reschedule_orders", SALES_COLUMNS, "ds string")
    looked = odps_conn.faults.add(
        method="POST",
        resource=f"/tables/{table}",
        session_kind="download",
        kind="delay",
        seconds=0,
        times=0,
    )

    def upstream() -> None:  # one row after the first poke, the second after the second
        for pokes in (1, 2):
            # Load anyway if the sensor stops poking: the asserts below judge, no hang.
            with contextlib.suppress(TimeoutError):
                wait_until(
                    lambda pokes=pokes: looked.fired >= pokes,
                    timeout=60,
                    message=f"poke {pokes} of the sensor",
                )
            load_rows(odps_conn, table, "ds=2024-04-02", sales_rows(pokes, 1))

    loader = threading.Thread(target=upstream)
    loader.start()
    module = load_dag_module(TEST_DAGS_DIR / "odps_test_reschedule_sensor.py")
    run = module.dag.test(logical_date=DAY, run_conf={"table": table})
    loader.join(timeout=60)
    assert run.state == "success"
    assert looked.fired >= 3  # absent, 1 row, then 2 rows: rescheduled in between
    ti = run.get_task_instance("wait")
    assert ti.try_number == 1
    assert ti.xcom_pull(task_ids="wait") == {"rows": 2}
