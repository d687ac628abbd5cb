r"""## Wait for an upstream partition, then load and append

`wait_for_orders` waits until the day's partition of `orders_table` holds a row (deferred
to the triggerer, so no worker slot is held while it waits; a triggerer must run).
`load_customers` then loads the day's customer files into a partition in one task (open,
write, commit; resumable across retries), and `append_events` appends small event files
through a stream upload (each file appended once, recorded per file).

### Data to prepare

* `orders_table` with a `ds string` partition column and a row in the day's partition;
* `customers_table` with a `ds string` partition column and files for it under
  `customers_source`;
* `events_table` (not partitioned) and small files for it under `events_source`.

### Run it against the emulator

```bash
odps-tunnel-emulator serve --data-dir /tmp/odps_example/emulator --port 8765 \
    --access-id demo-id --secret-access-key demo-secret &
odps-tunnel-emulator create-table orders --data-dir /tmp/odps_example/emulator \
    --schema 'id bigint, customer_id bigint, total double' --partitions 'ds string'
odps-tunnel-emulator create-table customer_snapshot --data-dir /tmp/odps_example/emulator \
    --schema 'id bigint, name string, city string' --partitions 'ds string'
odps-tunnel-emulator create-table events --data-dir /tmp/odps_example/emulator \
    --schema 'event string, value bigint'
export AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT='{"conn_type": "odps_tunnel",
  "login": "demo-id", "password": "demo-secret",
  "extra": {"project": "test_project", "endpoint": "http://127.0.0.1:8765/api"}}'
```

Load a row into the day's `orders` partition (e.g. `example_odps_load` with `table` set to
`orders`), write the customer and event files, then trigger the DAG (the form's defaults
match these paths). Set the connection in the environment of every Airflow component, or
create it in the UI. `make demo` does all of this with generated data.
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
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "orders_table": Param(
            "orders",
            type="string",
            title="Upstream table to wait for",
            description="The sensor waits until its partition ds=<logical date> has a row.",
        ),
        "customers_table": Param(
            "customer_snapshot",
            type="string",
            title="Customer table",
            description="Partitioned table the customer files load into (partition "
            "ds=<logical date>, replaced).",
        ),
        "customers_source": Param(
            "file:///tmp/odps_example/customers/",
            type="string",
            title="Customer files",
            description="Parquet, CSV, JSON lines or Arrow files, as a URI.",
        ),
        "events_table": Param(
            "events",
            type="string",
            title="Event table",
            description="Table the event files are appended to through a stream upload.",
        ),
        "events_source": Param(
            "file:///tmp/odps_example/events/",
            type="string",
            title="Event files",
            description="Small files, each appended once, as a URI.",
        ),
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
