"""``OdpsSqlHook`` against the emulator: the ``odps_tunnel`` connection as a ``common.sql``
``DbApiHook``, the ``common.sql`` operators and ``GenericTransfer`` (SQLite to ODPS and back)
with it, and the example DAG ``example_odps_sql_checks`` run with ``dag.test()``."""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from decimal import Decimal

import pandas as pd
import pytest
from airflow.providers.common.sql.hooks.handlers import fetch_all_handler
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer
from airflow.providers.common.sql.operators.sql import (
    SQLCheckOperator,
    SQLColumnCheckOperator,
    SQLExecuteQueryOperator,
    SQLTableCheckOperator,
    SQLValueCheckOperator,
)
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.serde import deserialize

from airflow_provider_odps_tunnel.hooks.sql import OdpsSqlHook
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.tunnel import RecordValidationError, dbapi

from .data import create_table, read_table
from .helpers import EXAMPLES_DIR, load_dag_module

ORDERS = "id bigint, customer string, amount double"
CONN = "odps_tunnel_default"


@pytest.fixture
def new_table(odps_conn, request):
    """Creates empty tables named after the test; they are dropped after it."""
    made: list[str] = []

    def make(columns: str, partitions: str = "") -> str:
        base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]
        name = f"sqlhook_{base}_{len(made)}"
        odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)
        create_table(odps_conn, name, columns, partitions)
        made.append(name)
        return name

    yield make
    for name in made:
        odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)


@pytest.fixture
def orders(new_table):
    """An ``orders`` table with four rows."""
    name = new_table(ORDERS)
    OdpsSqlHook().insert_rows(
        name, [(1, "ann", 10.5), (2, "bob", 20.0), (3, "cy", 0.5), (4, "ann", 3.0)]
    )
    return name


@pytest.fixture
def sqlite_conn(tmp_path, monkeypatch):
    """A SQLite database reachable as ``sqlite_src``, with an ``orders`` table."""
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER, customer TEXT, amount REAL)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, f"c{i % 3}", i * 1.25) for i in range(1, 251)],
        )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SQLITE_SRC", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


def test_the_connection_type_resolves_to_a_dbapi_hook_that_is_the_tunnel_hook(odps_conn):
    hook = BaseHook.get_hook("odps_tunnel_default")
    assert type(hook) is OdpsSqlHook
    assert isinstance(hook, DbApiHook) and isinstance(hook, OdpsTunnelHook)
    # common.sql passes the connection's extras as hook parameters.
    op_hook = SQLExecuteQueryOperator(
        task_id="t", conn_id="odps_tunnel_default", sql="SELECT 1"
    ).get_db_hook()
    assert isinstance(op_hook, OdpsSqlHook) and op_hook.project == odps_conn.project
    # the tunnel hook's check, not DbApiHook's "select 1"
    ok, message = hook.test_connection()
    assert ok and message.startswith(f"Connected to project {odps_conn.project!r}")
    conn = hook.get_conn()
    assert isinstance(conn, dbapi.Connection) and conn.odps is hook.odps
    assert hook.dialect_name == "odps"
    assert OdpsSqlHook(schema="analytics").settings.schema == "analytics"
    with pytest.raises(NotImplementedError):
        _ = hook.sqlalchemy_url


def test_records_first_run_and_descriptions(orders):
    hook = OdpsSqlHook()
    assert hook.get_records(f"SELECT id, customer FROM {orders} ORDER BY id") == [
        (1, "ann"),
        (2, "bob"),
        (3, "cy"),
        (4, "ann"),
    ]
    assert hook.get_first(f"SELECT count(*) AS n FROM {orders} WHERE customer = %s", ["ann"]) == (
        2,
    )
    results = hook.run(
        f"SELECT max(id) AS m FROM {orders}; SELECT sum(amount) AS s FROM {orders};",
        handler=fetch_all_handler,
        split_statements=True,
        return_last=False,
    )
    assert results == [[(4,)], [(34.0,)]]
    assert [d[0:2] for d in hook.descriptions[1]] == [("s", "double")]
    assert hook.run(f"SELECT id FROM {orders} WHERE id = %(id)s", parameters={"id": 3}) is None
    last = hook.run(
        f"SELECT id, amount FROM {orders} WHERE id = %(id)s",
        parameters={"id": 3},
        handler=fetch_all_handler,
    )
    assert last == [(3, 0.5)]
    assert [d[1] for d in hook.last_description] == ["bigint", "double"]


def test_data_frames_come_through_arrow(orders):
    hook = OdpsSqlHook()
    df = hook.get_df(f"SELECT id, customer, amount FROM {orders} ORDER BY id")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["id", "customer", "amount"]
    assert df["id"].tolist() == [1, 2, 3, 4] and str(df["id"].dtype) == "int64"
    chunks = list(hook.get_df_by_chunks(f"SELECT id FROM {orders} ORDER BY id", chunksize=3))
    assert [c["id"].tolist() for c in chunks] == [[1, 2, 3], [4]]
    empty = hook.get_df(f"SELECT id, customer FROM {orders} WHERE id < 0")
    assert empty.empty and list(empty.columns) == ["id", "customer"]


def test_insert_rows_uploads_through_the_tunnel(odps_conn, new_table, monkeypatch):
    table = new_table("id bigint, name string, price decimal(10,2)", "ds string")
    statements: list[str] = []
    real_execute = dbapi.Cursor.execute

    def spy(cursor, operation, parameters=None):
        statements.append(operation)
        return real_execute(cursor, operation, parameters)

    monkeypatch.setattr(dbapi.Cursor, "execute", spy)
    hook = OdpsSqlHook()
    rows = ((i, f"n{i}", Decimal(i) / 4) for i in range(1, 2501))
    count = hook.insert_rows(
        table, rows, commit_every=1000, partition="ds=2024-01-01", create_partition=True
    )
    assert count == 2500 and statements == []  # no SQL at all: a tunnel upload
    # target_fields: a subset, in another order; the other columns are NULL.
    hook.insert_rows(table, [("x", 9001)], target_fields=["name", "id"], partition="ds=2024-01-01")
    data = (
        read_table(odps_conn, table, "ds=2024-01-01").sort_by("id").select(["id", "name", "price"])
    )
    assert data.num_rows == 2501
    assert data.slice(0, 1).to_pylist()[0] == {"id": 1, "name": "n1", "price": Decimal("0.25")}
    assert data.slice(2500).to_pylist()[0] == {"id": 9001, "name": "x", "price": None}
    # overwrite replaces the partition's rows on commit
    hook.insert_rows(table, [(7, "only", None)], partition="ds=2024-01-01", overwrite=True)
    assert read_table(odps_conn, table, "ds=2024-01-01").num_rows == 1


def test_insert_rows_errors_name_the_table_column_and_row(odps_conn, new_table):
    table = new_table("id bigint, name string")
    hook = OdpsSqlHook()
    with pytest.raises(ValueError, match=r"column 'nope' is not in the table"):
        hook.insert_rows(table, [(1,)], target_fields=["nope"])
    with pytest.raises(ValueError, match=r"row 1 has 1 values for 2 columns"):
        hook.insert_rows(table, [(1, "a"), (2,)])
    with pytest.raises(RecordValidationError, match=r"insert_rows into .*sqlhook_.*'id'"):
        hook.insert_rows(table, [(1, "a"), ("not a number", "b")])
    with pytest.raises(ValueError, match="replace=True"):
        hook.insert_rows(table, [(1, "a")], replace=True)
    assert read_table(odps_conn, table).num_rows == 0  # nothing was committed


def test_check_operators_pass_and_fail(orders):
    SQLCheckOperator(task_id="c", conn_id=CONN, sql=f"SELECT count(*) FROM {orders}").execute({})
    with pytest.raises(AirflowException, match="Test failed"):
        SQLCheckOperator(
            task_id="c", conn_id=CONN, sql=f"SELECT count(*) FROM {orders} WHERE id > 9"
        ).execute({})
    SQLValueCheckOperator(
        task_id="v",
        conn_id=CONN,
        sql=f"SELECT sum(amount) FROM {orders}",
        pass_value=34,
        tolerance=0.01,
    ).execute({})
    with pytest.raises(AirflowException, match="Test failed"):
        SQLValueCheckOperator(
            task_id="v", conn_id=CONN, sql=f"SELECT count(*) FROM {orders}", pass_value=5
        ).execute({})
    SQLColumnCheckOperator(
        task_id="col",
        conn_id=CONN,
        table=orders,
        column_mapping={
            "id": {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}},
            "amount": {"min": {"geq_to": 0.5}, "max": {"leq_to": 20}},
        },
    ).execute({})
    with pytest.raises(AirflowException, match="amount"):
        SQLColumnCheckOperator(
            task_id="col",
            conn_id=CONN,
            table=orders,
            column_mapping={"amount": {"min": {"greater_than": 1}}},
        ).execute({})
    SQLTableCheckOperator(
        task_id="tab",
        conn_id=CONN,
        table=orders,
        checks={"rows": {"check_statement": "COUNT(*) = 4"}},
        partition_clause="customer = 'ann' OR customer = 'bob' OR customer = 'cy'",
    ).execute({})
    with pytest.raises(AirflowException, match="rows"):
        SQLTableCheckOperator(
            task_id="tab",
            conn_id=CONN,
            table=orders,
            checks={"rows": {"check_statement": "COUNT(*) = 3"}},
        ).execute({})


def test_execute_query_operator_returns_rows(orders):
    op = SQLExecuteQueryOperator(
        task_id="q",
        conn_id="odps_tunnel_default",
        sql=f"SELECT customer, sum(amount) AS total FROM {orders} GROUP BY customer"
        " ORDER BY customer",
    )
    assert op.execute({}) == [("ann", 13.5), ("bob", 20.0), ("cy", 0.5)]


def test_generic_transfer_from_sqlite_into_odps_and_back(odps_conn, new_table, sqlite_conn):
    table = new_table(ORDERS)
    GenericTransfer(
        task_id="in",
        source_conn_id="sqlite_src",
        sql="SELECT id, customer, amount FROM orders",
        destination_conn_id="odps_tunnel_default",
        destination_table=table,
        insert_args={"commit_every": 100},
    ).execute({})
    landed = read_table(odps_conn, table).sort_by("id")
    assert landed.num_rows == 250
    assert landed.slice(249).to_pylist() == [{"id": 250, "customer": "c1", "amount": 312.5}]

    GenericTransfer(
        task_id="out",
        source_conn_id="odps_tunnel_default",
        sql=f"SELECT id, customer, amount FROM {table} WHERE id <= 10",
        destination_conn_id="sqlite_src",
        destination_table="orders_copy",
        preoperator="CREATE TABLE orders_copy (id INTEGER, customer TEXT, amount REAL)",
    ).execute({})
    with sqlite3.connect(sqlite_conn) as db:
        back = db.execute("SELECT id, customer, amount FROM orders_copy ORDER BY id").fetchall()
    assert back == [(i, f"c{i % 3}", i * 1.25) for i in range(1, 11)]


@pytest.mark.usefixtures("airflow_db")
def test_example_dag_runs_every_common_sql_operator(odps_conn, tmp_path, monkeypatch):
    from .test_example_dags import DAY, _states

    source = tmp_path / "shop.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ODPS_EXAMPLE_SQLITE",
        json.dumps({"conn_type": "sqlite", "host": str(source)}),
    )
    module = load_dag_module(EXAMPLES_DIR / "example_odps_sql_checks.py")
    module.create_sqlite_source(source)
    table = "sql_checks_orders"
    odps_conn.catalog.drop_table(odps_conn.project, table, if_exists=True)
    try:
        for _ in range(2):  # a second run replaces the partition: still the same rows
            run = module.dag.test(logical_date=DAY, run_conf={"table": table})
            assert run.state == "success", _states(run)
        pushed = run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
        assert deserialize(pushed) == [
            ("ann", 2, 13.5),
            ("bob", 1, 20.0),
            ("cy", 1, 0.5),
        ]
        assert read_table(odps_conn, table, f"ds={DAY:%Y-%m-%d}").num_rows == 4
        with sqlite3.connect(source) as db:
            copied = db.execute("SELECT customer, orders, total FROM customer_totals").fetchall()
        assert sorted(copied) == [("ann", 2, 13.5), ("bob", 1, 20.0), ("cy", 1, 0.5)]
    finally:
        odps_conn.catalog.drop_table(odps_conn.project, table, if_exists=True)


def test_the_example_dag_documents_its_params():
    dag = load_dag_module(EXAMPLES_DIR / "example_odps_sql_checks.py").dag
    assert dag.doc_md and "Data to prepare" in dag.doc_md
    for name, param in dag.params.items():
        assert param.description, name
    assert datetime.datetime(2024, 1, 1) <= dag.start_date.replace(tzinfo=None)


def _doc_blocks() -> list[str]:
    text = (EXAMPLES_DIR.parent / "docs" / "howto-sql.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _printed(capsys) -> list[str]:
    """What the example printed (Airflow's log lines, which also go to stdout, left out)."""
    lines = capsys.readouterr().out.splitlines()
    return [line for line in lines if not re.match(r"\d{4}-\d\d-\d\dT", line)]


def test_the_howto_page_examples_run_as_written(odps_conn, capsys):
    dbapi_block, hook_block, dag_block = _doc_blocks()
    exec(compile(dbapi_block, "docs/howto-sql.md", "exec"), {})
    out = _printed(capsys)
    assert out == [
        "[('item', 'string'), ('price', 'decimal(10,2)')]",
        "2 (\"it's coffee\", Decimal('4.25'))",
        "{'item': ['tea'], 'price': [Decimal('3.50')]}",
    ]
    odps_conn.catalog.drop_table(odps_conn.project, "howto_visits", if_exists=True)
    try:
        exec(compile(hook_block, "docs/howto-sql.md", "exec"), {})
        out = _printed(capsys)
        assert out == ["3", "[('about', 3), ('home', 15)]", "(2,)", "[(10,)]", "[3, 5, 10]"]
        namespace: dict = {}
        exec(compile(dag_block, "docs/howto-sql.md", "exec"), namespace)
        tasks = namespace["dag"].tasks
        assert [t.task_id for t in tasks] == [
            "top_pages",
            "not_empty",
            "three_rows",
            "columns",
            "table",
        ]
        results = [task.execute({}) for task in tasks]
        assert results[0] == [("home", 15), ("about", 3)]
    finally:
        odps_conn.catalog.drop_table(odps_conn.project, "howto_visits", if_exists=True)
