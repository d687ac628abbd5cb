"""Export a table partition to Parquet files, one mapped task per row range.

The plan opens one download session (a snapshot), so all ranges read the same data even if
some retry later; each range writes its file under a temporary name and moves it into place.

Run parameters: ``table``, ``partition`` (default ``ds={{ ds }}``), ``destination`` (a
directory, any ``ObjectStoragePath`` URI) and ``rows_per_file``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.export import (
    OdpsExportRangeOperator,
    OdpsPlanExportOperator,
)

with DAG(
    dag_id="example_odps_export",
    description="MaxCompute partition -> Parquet files in parallel row ranges",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "table": Param("sales", type="string"),
        "partition": Param("", type="string", description="default: ds={{ ds }}"),
        "destination": Param("file:///tmp/odps_example/export/", type="string"),
        "rows_per_file": Param(1_000_000, type="integer", minimum=1),
    },
    tags=["example", "odps_tunnel"],
) as dag:
    plan = OdpsPlanExportOperator(
        task_id="plan_export",
        table="{{ params.table }}",
        partition="{{ params.partition or 'ds=' ~ ds }}",
        destination="{{ params.destination }}",
        rows_per_file="{{ params.rows_per_file }}",
        clear_destination=True,
    )
    OdpsExportRangeOperator.partial(
        task_id="export_range", map_index_template="rows {{ task.start }}+{{ task.count }}"
    ).expand_kwargs(plan.output)
