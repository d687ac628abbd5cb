r"""## Upsert changes into a primary-key table

`upsert_customers` sends the source files, in name order, through one upsert session and
commits it. Rows whose `deleted` column is true are deleted by primary key; the others
replace the row with the same key or are inserted. A retry reattaches to the session and
sends only the files not yet flushed; sending a file twice is harmless, since an upsert
replaces by key.

### Data to prepare

* a table with a primary key, e.g. `customers (id bigint, name string, tier string)` with
  primary key `id`;
* files with the table's columns plus a boolean `deleted` column, under `source`.

### Run it against the emulator

```bash
odps-tunnel-emulator serve --data-dir /tmp/odps_example/emulator --port 8765 \
    --access-id demo-id --secret-access-key demo-secret &
odps-tunnel-emulator create-table customers --data-dir /tmp/odps_example/emulator \
    --schema 'id bigint, name string, tier string' --primary-key id --buckets 4
export AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT='{"conn_type": "odps_tunnel",
  "login": "demo-id", "password": "demo-secret",
  "extra": {"project": "test_project", "endpoint": "http://127.0.0.1:8765/api"}}'
```

Write the change files under `/tmp/odps_example/customer_changes/`, then trigger the DAG
(the form's defaults match these paths). Set the connection in the environment of every
Airflow component, or create it in the UI. `make demo` does all of this with generated data.
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
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "table": Param(
            "customers",
            type="string",
            title="Primary-key table",
            description="A table with a primary key (created with --primary-key).",
        ),
        "source": Param(
            "file:///tmp/odps_example/customer_changes/",
            type="string",
            title="Change files",
            description="Files with the table's columns and a boolean 'deleted' column, as a "
            "URI (file://, s3://, ...); sent in name order.",
        ),
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
