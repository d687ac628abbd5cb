r"""## Export a partition to Parquet files in parallel

`plan_export` opens one download session on the partition (a snapshot) and cuts its rows into
ranges of `rows_per_file`; `export_range` is mapped over the ranges, each writing one
`part-*.parquet` file under `destination` (written under a temporary name, then moved into
place, so a file is complete or absent). Stale part files are deleted first, so a clear and
re-run gives the same files.

### Data to prepare

* a table with data in the partition to export, e.g. the `sales` table that
  `example_odps_load` fills;
* a destination directory the workers can write (any `ObjectStoragePath` URI).

### Run it against the emulator

```bash
odps-tunnel-emulator serve --data-dir /tmp/odps_example/emulator --port 8765 \
    --access-id demo-id --secret-access-key demo-secret &
odps-tunnel-emulator create-table sales --data-dir /tmp/odps_example/emulator \
    --schema 'id bigint, item string, amount double, sold_at datetime' --partitions 'ds string'
export AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT='{"conn_type": "odps_tunnel",
  "login": "demo-id", "password": "demo-secret",
  "extra": {"project": "test_project", "endpoint": "http://127.0.0.1:8765/api"}}'
```

Load the partition first (run `example_odps_load`), then trigger the DAG (the form's
defaults match these paths). Set the connection in the environment of every Airflow
component, or create it in the UI. `make demo` does all of this with generated data.
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
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "table": Param(
            "sales",
            type="string",
            title="Table",
            description="The table to export (table, project.table or project.schema.table).",
        ),
        "partition": Param(
            "",
            type="string",
            title="Partition",
            description="The partition to export, e.g. ds=2024-06-01; empty means "
            "ds=<logical date>.",
        ),
        "destination": Param(
            "file:///tmp/odps_example/export/",
            type="string",
            title="Destination directory",
            description="Where the part-*.parquet files go, as a URI (file://, s3://, ...); "
            "stale part files there are deleted first.",
        ),
        "rows_per_file": Param(
            1_000_000,
            type="integer",
            minimum=1,
            title="Rows per file",
            description="About how many rows each Parquet file (and mapped task) holds.",
        ),
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
