"""Test DAG: a partition sensor in reschedule mode, freeing its slot between pokes."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_odps_tunnel.sensors.partition import OdpsPartitionSensor

with DAG(
    dag_id="odps_test_reschedule_sensor",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    params={"table": ""},
) as dag:
    OdpsPartitionSensor(
        task_id="wait",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        min_rows=2,
        mode="reschedule",
        poke_interval=1,
        timeout=120,
    )
