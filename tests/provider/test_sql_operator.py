"""``OdpsSqlOperator`` against the emulator: DDL and writes, results, retries."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.sql import OdpsSqlOperator
from airflow_provider_odps_tunnel.tunnel import Instance, SQLTaskError


def context(store: Any, try_number: int = 1) -> dict[str, Any]:
    return {"task_state_store": store, "ti": SimpleNamespace(try_number=try_number, stats_tags={})}


@pytest.fixture
def table(odps_conn, request) -> Any:
    name = "sqlop_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)
    yield name
    odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)


def _table_rows(name: str) -> list[list]:
    hook = OdpsTunnelHook()
    session = hook.table_tunnel.create_download_session(name)
    with session.open_record_reader(0, session.count) as reader:
        return sorted(list(r.values) for r in reader)


class _Submissions:
    """Counts ``OdpsTunnelHook.run_sql`` calls (the SQL instances submitted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        real = OdpsTunnelHook.run_sql

        def counting(hook: OdpsTunnelHook, *args: Any, **kwargs: Any) -> Instance:
            self.count += 1
            return real(hook, *args, **kwargs)

        monkeypatch.setattr(OdpsTunnelHook, "run_sql", counting)


def test_templated_fields_and_sql_files():
    assert {"sql", "hints", "odps_tunnel_conn_id", "project"} <= set(
        OdpsSqlOperator.template_fields
    )
    assert ".sql" in OdpsSqlOperator.template_ext


def test_ddl_and_insert_are_visible_through_the_tunnel(odps_conn, table, state_store):
    ddl = OdpsSqlOperator(
        task_id="ddl",
        sql=f"CREATE TABLE {table} (id BIGINT, name STRING) PARTITIONED BY (ds STRING)",
    )
    ddl_id = ddl.execute(context(state_store))
    assert isinstance(ddl_id, str) and ddl_id
    insert = OdpsSqlOperator(
        task_id="insert",
        sql=f"INSERT INTO {table} PARTITION (ds='1') VALUES (1, 'a'), (2, 'b');\n"
        f"INSERT INTO {table} PARTITION (ds='1') VALUES (3, 'c')",
        hints={"odps.sql.type.system.odps2": "true"},
    )
    insert_id = insert.execute(context(state_store))
    assert insert_id != ddl_id
    assert OdpsTunnelHook().get_instance(insert_id).is_successful()
    hook = OdpsTunnelHook()
    session = hook.table_tunnel.create_download_session(table, partition_spec="ds=1")
    with session.open_record_reader(0, session.count) as reader:
        rows = sorted([r[0], r[1]] for r in reader)
    assert rows == [[1, "a"], [2, "b"], [3, "c"]]

    select = OdpsSqlOperator(task_id="select", sql=f"SELECT sum(id) AS s FROM {table}")
    select_id = select.execute(context(state_store))
    with OdpsTunnelHook().get_instance(select_id).open_reader() as reader:
        assert [list(r.values) for r in reader] == [[6]]


def test_failure_raises_with_the_instance_id(odps_conn, state_store):
    op = OdpsSqlOperator(task_id="bad", sql="SELECT * FROM sqlop_no_such_table")
    with pytest.raises(SQLTaskError, match="ODPS-0130131") as info:
        op.execute(context(state_store))
    assert info.value.instance_id == state_store.data["sql_instance"]["instance_id"]


def test_retry_after_success_reattaches_instead_of_resubmitting(
    odps_conn, table, state_store, monkeypatch
):
    OdpsSqlOperator(task_id="ddl", sql=f"CREATE TABLE {table} (id BIGINT)").execute(
        context(state_store)
    )
    submissions = _Submissions(monkeypatch)
    store = type(state_store)()
    op = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (1), (2)")
    first = op.execute(context(store))
    assert submissions.count == 1 and store.data["sql_instance"]["instance_id"] == first

    # A retry (a new operator object, as on a worker) returns the same instance.
    again = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (1), (2)")
    assert again.execute(context(store, 2)) == first
    assert submissions.count == 1
    assert _table_rows(table) == [[1], [2]]


def test_retry_reattaches_to_a_running_instance(odps_conn, table, state_store, monkeypatch):
    OdpsSqlOperator(task_id="ddl", sql=f"CREATE TABLE {table} (id BIGINT)").execute(
        context(state_store)
    )
    store = type(state_store)()
    op = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (7)")

    # The first try dies while waiting, after the id was stored.
    def crash(self: Instance, *args: Any, **kwargs: Any) -> Instance:
        raise RuntimeError("worker lost")

    with monkeypatch.context() as patch:
        patch.setattr(Instance, "wait_for_success", crash)
        with pytest.raises(RuntimeError, match="worker lost"):
            op.execute(context(store))
    stored = store.data["sql_instance"]["instance_id"]

    # The retry finds it still running (the first status poll), waits for it, submits nothing.
    submissions = _Submissions(monkeypatch)
    real = Instance.is_terminated
    polls = {"n": 0}

    def running_at_first(self: Instance) -> bool:
        polls["n"] += 1
        return False if polls["n"] == 1 else real(self)

    monkeypatch.setattr(Instance, "is_terminated", running_at_first)
    retry = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (7)")
    assert retry.execute(context(store, 2)) == stored
    assert submissions.count == 0 and polls["n"] >= 2
    assert _table_rows(table) == [[7]]


def test_retry_resubmits_after_a_failed_instance_or_other_sql(
    odps_conn, table, state_store, monkeypatch
):
    store = state_store
    op = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(SQLTaskError):
        op.execute(context(store))  # the table does not exist yet
    failed = store.data["sql_instance"]["instance_id"]
    OdpsSqlOperator(task_id="ddl", sql=f"CREATE TABLE {table} (id BIGINT)").execute(
        context(type(store)())
    )
    submissions = _Submissions(monkeypatch)
    retried = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (1)")
    second = retried.execute(context(store, 2))
    assert second != failed and submissions.count == 1
    # Another SQL text under the same key is not mistaken for this one.
    changed = OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (2)")
    third = changed.execute(context(store, 3))
    assert third != second and submissions.count == 2
    assert _table_rows(table) == [[1], [2]]
