"""``SqlToOdpsOperator``: a SQLite query (and a PostgreSQL one, on a throw-away server) into the
emulator, in key ranges or pages, resumable, fingerprint-aware, in one task or through the
mapped upload chain, and the example DAG run with ``dag.test()``."""

from __future__ import annotations

import datetime
import functools
import glob
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_odps_tunnel.operators.sql_to_odps import SqlRangeSource, SqlToOdpsOperator

from .data import create_table, read_table
from .helpers import EXAMPLES_DIR, load_dag_module

ROWS = 1_000


def context(store: Any, try_number: int = 1) -> dict[str, Any]:
    return {"task_state_store": store, "ti": SimpleNamespace(try_number=try_number, stats_tags={})}


def make_orders(path: Path, rows: int = ROWS) -> Path:
    """An SQLite database with ``orders(id, customer, total)``: ids 1..rows and one NULL id."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER, customer TEXT, total REAL)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, f"c{i % 13}", i * 0.5) for i in range(1, rows + 1)] + [(None, "nobody", 0.25)],
        )
    return path


@pytest.fixture
def orders_db(tmp_path, monkeypatch) -> Path:
    path = make_orders(tmp_path / "orders.db")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ORDERS_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


def _checksum(table) -> tuple[int, float, int]:
    ids = [i for i in table.column("id").to_pylist() if i is not None]
    return table.num_rows, round(sum(table.column("total").to_pylist()), 2), sum(ids)


EXPECTED = (
    ROWS + 1,
    round(sum(i * 0.5 for i in range(1, ROWS + 1)) + 0.25, 2),
    ROWS * (ROWS + 1) // 2,
)


def test_key_ranges_create_the_table_and_land_every_row_once(odps_conn, orders_db, state_store):
    op = SqlToOdpsOperator(
        task_id="s",
        sql_conn_id="orders_db",
        sql="SELECT id, customer, total FROM orders;",
        split_column="id",
        ranges=4,
        table="sql_ranges",
        partition="ds=2024-01-01",
        create_table_if_missing=True,
        create_partition=True,
        threads=2,
    )
    result = op.execute(context(state_store))
    assert (result["rows"], result["blocks"]) == (ROWS + 1, 4)
    landed = read_table(odps_conn, "sql_ranges", "ds=2024-01-01")
    assert _checksum(landed) == EXPECTED
    schema = odps_conn.catalog.get_table(odps_conn.project, "sql_ranges").schema
    assert [c.name for c in schema.columns] == ["id", "customer", "total", "ds"]
    assert [c.name for c in schema.partitions] == ["ds"]


def test_pages_and_column_mapping(odps_conn, orders_db, state_store):
    create_table(odps_conn, "sql_pages", "order_id bigint, customer string, total double")
    result = SqlToOdpsOperator(
        task_id="s",
        sql_conn_id="orders_db",
        sql="SELECT id, customer, total FROM orders WHERE id <= ?",
        parameters=[100],
        order_by="id",
        ranges=3,
        table="sql_pages",
        column_mapping={"id": "order_id"},
    ).execute(context(state_store))
    assert (result["rows"], result["blocks"]) == (100, 3)
    ids = read_table(odps_conn, "sql_pages").column("order_id").to_pylist()
    assert sorted(ids) == list(range(1, 101))


def test_a_retry_sends_only_missing_ranges_and_a_changed_source_loads_again(
    odps_conn, orders_db, state_store
):
    create_table(odps_conn, "sql_resume", "id bigint, customer string, total double", "ds string")
    kwargs = dict(
        task_id="s",
        sql_conn_id="orders_db",
        sql="SELECT id, customer, total FROM orders",
        split_column="id",
        ranges=4,
        table="sql_resume",
        partition="ds=1",
        create_partition=True,
        overwrite=True,
        threads=1,
    )
    op = SqlToOdpsOperator(**kwargs)
    puts = odps_conn.faults.add(method="PUT", session_kind="upload", kind="delay", nth=10**9)
    breaker = odps_conn.faults.add(
        method="PUT",
        session_kind="upload",
        resource=r"[?&]blockid=2(&|$)",
        kind="reset_after_bytes",
        bytes=64,
        times=0,
    )
    with pytest.raises(Exception, match="(?i)connection|reset|closed|abort"):
        op.execute(context(state_store, 1))
    first_session = state_store.data["upload_session"]["session_id"]
    breaker.times = breaker.fired
    result = op.execute(context(state_store, 2))
    assert result["session_id"] == first_session and result["rows"] == ROWS + 1
    assert puts.seen == 2 + breaker.fired + 2  # ranges 0 and 1 were not sent again
    # A re-run (a clear) with the same source: the committed result, nothing sent.
    assert SqlToOdpsOperator(**kwargs).execute(context(state_store, 3)) == result
    assert puts.seen == 2 + breaker.fired + 2
    # The source changed: a new session loads it again (overwrite: the partition is replaced).
    with sqlite3.connect(orders_db) as db:
        db.execute("INSERT INTO orders VALUES (5000, 'late', 1.0)")
    changed = SqlToOdpsOperator(**kwargs).execute(context(state_store, 4))
    assert changed["session_id"] != first_session and changed["rows"] == ROWS + 2
    # force_rerun loads an unchanged source again.
    forced = SqlToOdpsOperator(**kwargs, force_rerun=True).execute(context(state_store, 5))
    assert forced["session_id"] != changed["session_id"]
    assert read_table(odps_conn, "sql_resume", "ds=1").num_rows == ROWS + 2


def test_range_source_splits_cover_every_row_once(orders_db):
    source = SqlRangeSource("orders_db", "SELECT id FROM orders", split_column="id")
    ids = [i for part in range(7) for b in source(part, 7) for i in b.column(0).to_pylist()]
    assert sorted(i for i in ids if i is not None) == list(range(1, ROWS + 1))
    assert ids.count(None) == 1
    with pytest.raises(TypeError, match="integers"):
        SqlRangeSource("orders_db", "SELECT * FROM orders", split_column="customer").bounds()


@pytest.mark.usefixtures("airflow_db")
def test_example_dag_copies_sqlite_into_a_partition(odps_conn, orders_db):
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_sql_to_odps.py").dag
    day = datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC)
    conf = {"sql_conn_id": "orders_db", "table": "sql_example", "ranges": 3}
    run = dag.test(logical_date=day, run_conf=conf)
    assert run.state == "success"
    assert _checksum(read_table(odps_conn, "sql_example", "ds=2024-03-01")) == EXPECTED


def test_the_mapped_chain_reads_the_query_in_its_writers(odps_conn, orders_db, state_store):
    """The upload chain with ``SqlRangeSource`` as the writers' callable: the plan deals
    the parts out, each writer reads its key ranges, the commit lands every row once."""
    from airflow_provider_odps_tunnel.operators.upload import (
        OdpsCommitUploadOperator,
        OdpsCreateUploadSessionOperator,
        OdpsPlanUploadOperator,
        OdpsWriteBlocksOperator,
    )

    create_table(odps_conn, "sql_mapped", "id bigint, customer string, total double")
    session = OdpsCreateUploadSessionOperator(task_id="c", table="sql_mapped").execute(
        context(state_store)
    )
    plan = OdpsPlanUploadOperator(task_id="p", source_parts=5, max_writers=2).execute({})
    assert len(plan) == 2
    source = SqlRangeSource("orders_db", "SELECT * FROM orders", split_column="id")
    written = [
        OdpsWriteBlocksOperator(
            task_id=f"w{i}", session=session, source_callable=source, **kwargs
        ).execute(context(type(state_store)()))
        for i, kwargs in enumerate(plan)
    ]
    OdpsCommitUploadOperator(task_id="m", session=session, plan=plan, written=written).execute(
        context(state_store)
    )
    assert _checksum(read_table(odps_conn, "sql_mapped")) == EXPECTED


@pytest.fixture
def postgres_orders(monkeypatch) -> Iterator[str]:
    """A throw-away PostgreSQL server on a free loopback port holding ``orders`` (as
    ``make_orders``), reachable as the ``orders_pg`` connection; stopped and removed after."""
    import psycopg2

    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    work = Path(tempfile.mkdtemp(prefix="odps-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        shutil.chown(work, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = work / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
    run([*as_owner, bindir / "initdb", "-D", data, "-A", "trust", "-U", "airflow", "--no-sync"])
    options = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        # The server logs to a file: it must not hold this process's pipes open.
        start = ["-o", options, "-l", work / "server.log", "-w", "start"]
        run([*as_owner, bindir / "pg_ctl", "-D", data, *start])
        db = psycopg2.connect(host="127.0.0.1", port=port, user="airflow", dbname="postgres")
        with db, db.cursor() as cur:
            cur.execute("CREATE TABLE orders (id bigint, customer text, total double precision)")
            cur.executemany(
                "INSERT INTO orders VALUES (%s, %s, %s)",
                [(i, f"c{i % 13}", i * 0.5) for i in range(1, ROWS + 1)] + [(None, "nobody", 0.25)],
            )
        db.close()
        uri = f"postgres://airflow@127.0.0.1:{port}/postgres"
        monkeypatch.setenv("AIRFLOW_CONN_ORDERS_PG", uri)
        yield uri
    finally:
        stop = [*as_owner, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True, timeout=120)  # fails if it never started
        shutil.rmtree(work, ignore_errors=True)


def test_from_postgresql_in_key_ranges(odps_conn, postgres_orders, state_store):
    result = SqlToOdpsOperator(
        task_id="s",
        sql_conn_id="orders_pg",
        sql="SELECT id, customer, total FROM orders",
        split_column="id",
        ranges=3,
        table="sql_from_pg",
        create_table_if_missing=True,
    ).execute(context(state_store))
    assert (result["rows"], result["blocks"]) == (ROWS + 1, 3)
    assert _checksum(read_table(odps_conn, "sql_from_pg")) == EXPECTED
