"""Upsert rows into a primary-key table, resuming from where a failed try stopped.

Rows whose ``deleted`` column is true are deleted by primary key. The task remembers in
Airflow's task state store which source pieces it has sent; a retry reattaches to the same
upsert session and sends only the rest, then commits (waiting up to ``commit_timeout``).

Run parameters: ``table`` (a table with a primary key) and ``source`` (files, any
``ObjectStoragePath`` URI).
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator

with DAG(
    dag_id="example_odps_upsert",
    description="Resumable upsert into a MaxCompute primary-key table",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "table": Param("customers", type="string"),
        "source": Param("file:///tmp/odps_example/customer_changes/", type="string"),
    },
    tags=["example", "odps_tunnel"],
) as dag:
    OdpsUpsertOperator(
        task_id="upsert_customers",
        table="{{ params.table }}",
        source="{{ params.source }}",
        delete_column="deleted",
        commit_timeout=120,
    )
