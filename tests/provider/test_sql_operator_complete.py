"""The complete ``OdpsSqlOperator`` against the emulator: rows through common.sql handlers,
deferral with its trigger, ``on_kill`` stopping the instance, the LogView link and page;
and the client's and pyodps's ``Instance.stop`` / ``get_logview_address`` on the emulator.

Instances that must stay running carry the emulator's ``emulator.hold.seconds`` setting:
they run until stopped or until the test advances the emulator's clock past the hold
(``release``), so nothing here waits for a slow query.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import json
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.sql.hooks.handlers import fetch_all_handler, fetch_one_handler
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from airflow.serialization.serde import deserialize
from polling import wait_until

from airflow_provider_odps_tunnel.get_provider_info import get_provider_info
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.links import OdpsLogViewLink
from airflow_provider_odps_tunnel.operators.sql import OdpsSqlOperator
from airflow_provider_odps_tunnel.triggers.sql import OdpsSqlInstanceTrigger
from airflow_provider_odps_tunnel.tunnel import ODPS, SQLTaskError, TunnelError

from .helpers import TEST_DAGS_DIR, load_dag_module

HOLD = {"emulator.hold.seconds": "600"}


class FakeTI(SimpleNamespace):
    """The task instance of a hand-built context: records what is pushed to XCom."""

    def __init__(self, try_number: int = 1):
        super().__init__(try_number=try_number, stats_tags={}, pushed={})

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context(store: Any, ti: FakeTI | None = None) -> dict[str, Any]:
    return {"task_state_store": store, "ti": ti or FakeTI()}


@pytest.fixture
def release(odps_conn):
    """Call to end every hold (advances the emulator's clock); the clock is put back after."""
    clock = odps_conn.clock
    before = clock.offset

    def release_holds() -> None:
        clock.advance(3600)

    yield release_holds
    clock.advance(before - clock.offset)


@pytest.fixture
def table(odps_conn, request) -> Any:
    name = "sqlcomplete_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]
    odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)
    OdpsSqlOperator(
        task_id="ddl", sql=f"CREATE TABLE {name} (id BIGINT, name STRING)", durable=False
    ).execute({})
    yield name
    odps_conn.catalog.drop_table(odps_conn.project, name, if_exists=True)


def _first_event(trigger: OdpsSqlInstanceTrigger) -> dict[str, Any]:
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first(), timeout=30))


def _task_statuses(instance_id: str) -> dict[str, str]:
    return OdpsTunnelHook().get_instance(instance_id).get_task_statuses()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# -- declarations ------------------------------------------------------------------------------


def test_link_trigger_and_deferrable_default_are_declared():
    op = OdpsSqlOperator(task_id="q", sql="SELECT 1")
    assert op.deferrable is False  # [operators] default_deferrable is off in the tests
    assert op.cancel_on_kill is True and op.handler is None
    assert [link.name for link in op.operator_extra_links] == ["LogView"]
    info = get_provider_info()
    assert "airflow_provider_odps_tunnel.operators.links.OdpsLogViewLink" in info["extra-links"]
    modules = [m for t in info["triggers"] for m in t["python-modules"]]
    assert "airflow_provider_odps_tunnel.triggers.sql" in modules

    trigger = OdpsSqlInstanceTrigger(instance_id="i1", poll_interval=2, project="p")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_odps_tunnel.triggers.sql.OdpsSqlInstanceTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert OdpsSqlInstanceTrigger(**kwargs).serialize() == (classpath, kwargs)


# -- rows ------------------------------------------------------------------------------------


def test_results_as_rows_through_common_sql_handlers(odps_conn, table, state_store):
    OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')").execute(
        context(state_store)
    )
    select = f"SELECT id, name FROM {table} ORDER BY id"
    rows = OdpsSqlOperator(task_id="all", sql=select, handler=fetch_all_handler).execute(
        context(type(state_store)())
    )
    assert rows == [(1, "a"), (2, "b")]
    first = OdpsSqlOperator(task_id="one", sql=select, handler=fetch_one_handler).execute(
        context(type(state_store)())
    )
    assert first == (1, "a")
    # A script's result is its last query's; a statement without a result gives None.
    script = f"INSERT INTO {table} VALUES (3, 'c');\nSELECT count(*) AS n FROM {table}"
    assert OdpsSqlOperator(task_id="s", sql=script, handler=fetch_all_handler).execute(
        context(type(state_store)())
    ) == [(3,)]
    ddl = f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT, name STRING)"
    assert (
        OdpsSqlOperator(task_id="ddl", sql=ddl, handler=fetch_all_handler).execute(
            context(type(state_store)())
        )
        is None
    )


# -- LogView ---------------------------------------------------------------------------------


def test_instance_id_and_logview_url_go_to_xcom_and_the_page_shows_the_instance(
    odps_conn, table, state_store
):
    OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (5, 'x'), (6, 'y')").execute(
        context(state_store)
    )
    ti = FakeTI()
    sql = f"SELECT id, name FROM {table} WHERE id > 4"
    instance_id = OdpsSqlOperator(task_id="q", sql=sql).execute(context(type(state_store)(), ti))
    assert ti.pushed["instance_id"] == instance_id
    url = ti.pushed["logview_url"]
    prefix = (
        f"{odps_conn.tunnel_endpoint}/logview/?h={odps_conn.endpoint}"
        f"&p={odps_conn.project}&i={instance_id}&token="
    )
    assert url.startswith(prefix) and len(url) > len(prefix)

    status, page = _get(url)  # no signature: a browser opens it
    assert status == 200
    assert f"LogView: instance {instance_id}" in page
    assert f"{html.escape(sql)};</pre>" in page
    assert '<td data-field="status">Terminated</td>' in page
    assert '<td data-field="status">Success</td>' in page
    assert '<td data-field="duration">' in page and "UTC</td>" in page
    assert '<span id="row-count">2</span>' in page
    assert "<tr><td>id</td><td>bigint</td></tr><tr><td>name</td><td>string</td></tr>" in page


def test_logview_page_of_a_failed_an_unknown_and_an_unnamed_instance(odps_conn, state_store):
    op = OdpsSqlOperator(task_id="bad", sql="SELECT * FROM sqlcomplete_no_such_table")
    with pytest.raises(SQLTaskError) as info:
        op.execute(context(state_store))
    url = OdpsTunnelHook().get_logview_url(info.value.instance_id)
    status, page = _get(url)
    assert status == 200
    assert '<td data-field="status">Failed</td>' in page and "ODPS-0130131" in page
    assert '<p id="no-result">' in page

    base = f"{odps_conn.tunnel_endpoint}/logview/"
    status, page = _get(f"{base}?p={odps_conn.project}&i=20240101000000abc")
    assert status == 404 and "does not exist" in page
    status, _ = _get(f"{base}?p={odps_conn.project}")
    assert status == 400


def test_logview_link_reads_the_url_pushed_to_xcom(monkeypatch):
    from airflow.sdk.execution_time import xcom

    asked = []

    def get_value(*, ti_key, key):
        asked.append((ti_key, key))
        return "http://logview/x"

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))
    op = OdpsSqlOperator(task_id="q", sql="SELECT 1")
    assert OdpsLogViewLink().get_link(op, ti_key="key") == "http://logview/x"
    assert asked == [("key", "logview_url")]


# -- on_kill ---------------------------------------------------------------------------------


def test_on_kill_stops_the_running_instance(odps_conn, table, state_store):
    op = OdpsSqlOperator(task_id="held", sql=f"INSERT INTO {table} VALUES (9, 'z')", hints=HOLD)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            op.execute(context(state_store))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        instance_id = wait_until(
            lambda: op.instance_id, timeout=30, message="the instance to be submitted"
        )
        assert OdpsTunnelHook().get_instance(instance_id).status == "Running"
        op.on_kill()
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    error = outcome["error"]
    assert isinstance(error, SQLTaskError) and error.instance_id == instance_id
    assert "terminated by a stop request" in str(error)
    instance = OdpsTunnelHook().get_instance(instance_id)
    assert instance.status == "Terminated"
    assert instance.get_task_statuses() == {"AnonymousSQLTask": "Cancelled"}
    # The held INSERT never ran.
    assert OdpsSqlOperator(
        task_id="count", sql=f"SELECT count(*) FROM {table}", handler=fetch_one_handler
    ).execute(context(type(state_store)())) == (0,)


def test_without_cancel_on_kill_the_instance_keeps_running(odps_conn, state_store, release):
    op = OdpsSqlOperator(
        task_id="held", sql="SELECT 1", hints=HOLD, deferrable=True, cancel_on_kill=False
    )
    with pytest.raises(TaskDeferred):
        op.execute(context(state_store))
    op.on_kill()
    instance = OdpsTunnelHook().get_instance(op.instance_id)
    assert instance.status == "Running"
    release()
    instance.wait_for_success(timeout=30)


# -- deferrable ------------------------------------------------------------------------------


def test_deferrable_defers_and_resumes_with_the_rows(odps_conn, table, state_store, release):
    OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (4, 'd')").execute(
        context(state_store)
    )
    ti = FakeTI()
    op = OdpsSqlOperator(
        task_id="deferred",
        sql=f"SELECT id, name FROM {table}",
        hints=HOLD,
        handler=fetch_all_handler,
        deferrable=True,
        poll_interval=0.05,
    )
    store = type(state_store)()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(store, ti))
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, OdpsSqlInstanceTrigger)
    assert trigger.instance_id == op.instance_id == store.data["sql_instance"]["instance_id"]
    assert ti.pushed["instance_id"] == op.instance_id and ti.pushed["logview_url"]

    release()
    event = _first_event(trigger)
    assert event["status"] == "success" and event["instance_id"] == op.instance_id
    assert event["tasks"] == {"AnonymousSQLTask": "Success"}
    resumed = OdpsSqlOperator(
        task_id="deferred", sql=f"SELECT id, name FROM {table}", handler=fetch_all_handler
    )
    assert resumed.execute_complete(context(store, ti), event) == [(4, "d")]


def test_an_instance_that_already_ended_is_not_deferred_for(odps_conn, state_store):
    op = OdpsSqlOperator(task_id="fast", sql="SELECT 1 AS a", deferrable=True)
    assert op.execute(context(state_store)) == op.instance_id


def test_deferred_failures_name_the_instance_its_status_and_the_error(
    odps_conn, state_store, release
):
    hook = OdpsTunnelHook()
    # A stopped instance: Terminated, its task Cancelled.
    stopped = OdpsSqlOperator(
        task_id="stopped", sql="SELECT 1", hints=HOLD, deferrable=True, poll_interval=0.05
    )
    with pytest.raises(TaskDeferred) as deferred:
        stopped.execute(context(state_store))
    hook.stop_instance(stopped.instance_id)
    event = _first_event(deferred.value.trigger)
    assert event["status"] == "failed"
    with pytest.raises(SQLTaskError) as info:
        stopped.execute_complete(context(state_store), event)
    text = str(info.value)
    assert stopped.instance_id in text and "instance status Terminated" in text
    assert "AnonymousSQLTask: Cancelled" in text and "stop request" in text

    # A query that fails once it runs: the service's error text.
    failing = OdpsSqlOperator(
        task_id="failing",
        sql="SELECT * FROM sqlcomplete_missing",
        hints=HOLD,
        deferrable=True,
        poll_interval=0.05,
    )
    with pytest.raises(TaskDeferred) as deferred:
        failing.execute(context(type(state_store)()))
    release()
    event = _first_event(deferred.value.trigger)
    with pytest.raises(SQLTaskError, match="ODPS-0130131.*AnonymousSQLTask: Failed"):
        failing.execute_complete(context(state_store), event)

    # The trigger could not read the status at all.
    with pytest.raises(AirflowException, match="Waiting for SQL instance .* failed: boom"):
        failing.execute_complete(context(state_store), {"status": "error", "message": "boom"})


def test_trigger_on_kill_stops_the_instance_unless_told_not_to(odps_conn):
    hook = OdpsTunnelHook()
    kept = hook.run_sql("SELECT 1", HOLD)
    asyncio.run(OdpsSqlInstanceTrigger(instance_id=kept.id, cancel_on_kill=False).on_kill())
    assert kept.status == "Running"
    asyncio.run(OdpsSqlInstanceTrigger(instance_id=kept.id).on_kill())
    assert kept.status == "Terminated"
    assert kept.get_task_statuses() == {"AnonymousSQLTask": "Cancelled"}


@pytest.mark.usefixtures("airflow_db")
def test_deferrable_dag_run_returns_rows_and_sets_the_logview_link(odps_conn, table, release):
    OdpsSqlOperator(task_id="insert", sql=f"INSERT INTO {table} VALUES (7, 'g')").execute({})
    module = load_dag_module(TEST_DAGS_DIR / "odps_test_sql_complete.py")
    module.EVENTS.clear()
    module.ON_DEFER = lambda instance_id: release()
    run = module.dag.test(
        logical_date=datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC),
        run_conf={"sql": f"SELECT id, name FROM {table}", "hints": HOLD},
    )
    assert run.state == "success"
    ti = run.get_task_instance("query")
    instance_id = ti.xcom_pull(task_ids="query", key="instance_id")
    events = list(module.EVENTS)
    assert events == [("deferred", instance_id), ("resumed", "success")]
    # The rows are tuples, which XCom keeps as serde's tuple form.
    assert [deserialize(row) for row in ti.xcom_pull(task_ids="query")] == [(7, "g")]
    url = ti.xcom_pull(task_ids="query", key="logview_url")
    assert ti.xcom_pull(task_ids="query", key="_link_OdpsLogViewLink") == url
    status, page = _get(url)
    assert status == 200 and instance_id in page and '<span id="row-count">1</span>' in page


# -- the client and pyodps on the emulator ---------------------------------------------------


def test_client_stop_is_idempotent_and_only_terminates(odps_conn):
    odps = ODPS(
        odps_conn.access_id, odps_conn.secret_access_key, odps_conn.project, odps_conn.endpoint
    )
    done = odps.execute_sql("SELECT 1")
    done.stop()  # already ended: nothing changes
    assert done.is_successful()
    held = odps.run_sql("SELECT 1", HOLD)
    with pytest.raises(TunnelError, match="only be set to Terminated"):
        odps.rest.request(
            "PUT",
            f"/projects/{odps_conn.project}/instances/{held.id}",
            data=b"<Instance><Status>Running</Status></Instance>",
        )
    held.stop()
    held.stop()
    assert held.status == "Terminated" and not held.is_successful()


def test_pyodps_stop_and_logview_address_on_the_emulator(odps_conn):
    from odps import ODPS as PyODPS

    o = PyODPS(
        odps_conn.access_id,
        odps_conn.secret_access_key,
        project=odps_conn.project,
        endpoint=odps_conn.endpoint,
    )
    instance = o.run_sql("SELECT 1 AS a", hints=HOLD)
    assert instance.status == instance.Status.RUNNING
    instance.stop()
    assert instance.status == instance.Status.TERMINATED
    assert {name: t.status.name for name, t in instance.get_task_statuses().items()} == {
        "AnonymousSQLTask": "CANCELLED"
    }
    url = instance.get_logview_address()
    assert url.startswith(f"{odps_conn.tunnel_endpoint}/logview/?h={odps_conn.endpoint}&p=")
    status, page = _get(url)
    assert status == 200 and instance.id in page
    assert '<td data-field="status">Cancelled</td>' in page
