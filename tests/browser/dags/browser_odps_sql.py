"""One SQL instance on MaxCompute, for the browser test's LogView step.

The task's extra link opens the instance's LogView page: the browser test follows it from
the Airflow UI to the emulator's page and checks the SQL text shown there.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_odps_tunnel.operators.sql import OdpsSqlOperator

#: The statement the test looks for on the LogView page.
SQL = "SELECT 41 + 1 AS answer"

with DAG(
    dag_id="browser_odps_sql",
    description="One SQL instance, to follow its LogView link",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["odps_tunnel", "browser-test"],
) as dag:
    OdpsSqlOperator(task_id="run_sql", sql=SQL)
