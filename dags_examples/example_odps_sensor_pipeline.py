"""A sensor-gated pipeline: wait for an upstream partition, then load and append.

``wait_for_orders`` waits (deferred to the triggerer, so no worker slot is held) until the
upstream ``orders`` partition of the day holds at least one row. Then a single task loads
the day's customer files into a partition (create, threaded block writes and commit in one
task, resumable across retries), and a stream upload appends small event files.

Run parameters: ``orders_table``, ``customers_table``, ``customers_source``,
``events_table`` and ``events_source``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.stream import OdpsStreamUploadOperator
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.sensors.partition import OdpsPartitionSensor

with DAG(
    dag_id="example_odps_sensor_pipeline",
    description="Partition sensor gating a one-task load and a stream append",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "orders_table": Param("orders", type="string"),
        "customers_table": Param("customer_snapshot", type="string"),
        "customers_source": Param("file:///tmp/odps_example/customers/", type="string"),
        "events_table": Param("events", type="string"),
        "events_source": Param("file:///tmp/odps_example/events/", type="string"),
    },
    tags=["example", "odps_tunnel"],
) as dag:
    wait = OdpsPartitionSensor(
        task_id="wait_for_orders",
        table="{{ params.orders_table }}",
        partition="ds={{ ds }}",
        min_rows=1,
        deferrable=True,
        poke_interval=5,
        timeout=3600,
    )
    load = ObjectStorageToOdpsOperator(
        task_id="load_customers",
        table="{{ params.customers_table }}",
        partition="ds={{ ds }}",
        source="{{ params.customers_source }}",
        create_partition=True,
        overwrite=True,
    )
    append = OdpsStreamUploadOperator(
        task_id="append_events",
        table="{{ params.events_table }}",
        source="{{ params.events_source }}",
    )
    wait >> load >> append
