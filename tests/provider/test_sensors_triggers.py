"""Sensors (poke and deferrable paths) and their triggers (JSON arguments, events)."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.sensors.partition import OdpsPartitionSensor
from airflow_provider_odps_tunnel.sensors.session import OdpsSessionStateSensor
from airflow_provider_odps_tunnel.triggers.tunnel import (
    OdpsPartitionTrigger,
    OdpsSessionStateTrigger,
)

from .data import SALES_COLUMNS, create_table, load_rows, sales_rows


@pytest.fixture
def orders(odps_conn, request) -> str:
    name = "sensor_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]
    return create_table(odps_conn, name, SALES_COLUMNS, "ds string")


def _first_event(trigger):
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first(), timeout=30))


def test_partition_sensor_pokes_until_enough_rows(odps_conn, orders):
    sensor = OdpsPartitionSensor(task_id="s", table=orders, partition="ds=1", min_rows=3)
    assert not sensor.poke({}).is_done
    load_rows(odps_conn, orders, "ds=1", sales_rows(0, 2))
    result = sensor.poke({})
    assert (result.is_done, result.xcom_value) == (False, {"rows": 2})
    load_rows(odps_conn, orders, "ds=1", sales_rows(2, 1))
    assert sensor.poke({}).xcom_value == {"rows": 3}
    assert sensor.poke({}).is_done


def test_deferrable_partition_sensor_defers_only_while_waiting(odps_conn, orders):
    sensor = OdpsPartitionSensor(
        task_id="s", table=orders, partition="ds=1", deferrable=True, poke_interval=7, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, OdpsPartitionTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.poll_interval == 7
    load_rows(odps_conn, orders, "ds=1", sales_rows(0, 1))
    assert sensor.execute({}) == {"rows": 1}  # met at the first check: no deferral
    assert sensor.execute_complete({}, {"status": "success", "rows": 4}) == {"rows": 4}
    with pytest.raises(AirflowException, match="boom"):
        sensor.execute_complete({}, {"status": "error", "message": "boom"})


def test_triggers_serialize_to_json_and_back():
    for trigger in (
        OdpsPartitionTrigger(table="t", partition="ds=1", min_rows=2, poll_interval=3, project="p"),
        OdpsSessionStateTrigger(
            session={"kind": "upload", "session_id": "x", "table": "p.t"},
            target_states=("closed",),
            failure_states=("expired",),
        ),
    ):
        classpath, kwargs = trigger.serialize()
        module, _, name = classpath.rpartition(".")
        cls = getattr(__import__(module, fromlist=[name]), name)
        rebuilt = cls(**json.loads(json.dumps(kwargs)))
        assert rebuilt.serialize() == (classpath, kwargs)


def test_partition_trigger_fires_when_the_partition_is_there(odps_conn, orders):
    load_rows(odps_conn, orders, "ds=2", sales_rows(0, 5))
    trigger = OdpsPartitionTrigger(table=orders, partition="ds=2", min_rows=5, poll_interval=0.01)
    assert _first_event(trigger) == {"status": "success", "rows": 5}
    assert trigger.check(OdpsTunnelHook()) == {"status": "success", "rows": 5}
    assert OdpsPartitionTrigger(table=orders, partition="ds=3").check(OdpsTunnelHook()) is None


def test_trigger_reports_errors_as_events(odps_conn, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", json.dumps({"conn_type": "odps_tunnel", "extra": {}}))
    trigger = OdpsPartitionTrigger(table="t", poll_interval=0.01, odps_tunnel_conn_id="broken")
    event = _first_event(trigger)
    assert event["status"] == "error" and "project" in event["message"]


def test_session_state_sensor_and_trigger(odps_conn, orders):
    hook = OdpsTunnelHook()
    ref, session = hook.create_upload_session(orders, "ds=1", create_partition=True)
    sensor = OdpsSessionStateSensor(task_id="s", session=ref.to_dict(), poke_interval=1)
    assert sensor.poke({}).xcom_value == {"state": "normal"}
    assert not sensor.poke({}).is_done
    trigger = sensor.trigger()
    assert trigger.check(hook) is None
    session.commit([])
    assert sensor.poke({}).is_done
    assert _first_event(
        OdpsSessionStateTrigger(session=ref.to_dict(), target_states=["closed"], poll_interval=0.01)
    ) == {"status": "success", "state": "closed"}
    gone = {**ref.to_dict(), "session_id": "20240101000000deadbeef"}
    with pytest.raises(AirflowFailException, match="missing"):
        OdpsSessionStateSensor(task_id="s", session=gone).poke({})
    event = _first_event(
        OdpsSessionStateTrigger(
            session=gone, target_states=["closed"], failure_states=["missing"], poll_interval=0.01
        )
    )
    # A failure state fails the sensor without retry in both paths: poke and trigger.
    assert event == {
        "status": "failed",
        "state": "missing",
        "message": f"upload session {gone['session_id']} is missing",
    }
    deferred_sensor = OdpsSessionStateSensor(task_id="s", session=gone, deferrable=True)
    with pytest.raises(AirflowFailException, match="is missing"):
        deferred_sensor.execute_complete({}, event)
    # A check that broke (service unreachable) is an ordinary, retryable failure.
    with pytest.raises(AirflowException, match="boom") as broke:
        deferred_sensor.execute_complete({}, {"status": "error", "message": "boom"})
    assert not isinstance(broke.value, AirflowFailException)
