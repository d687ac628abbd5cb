r"""## Load files into a partition with parallel writers

`create_session` opens an upload session on the day's partition (`ds=<logical date>`,
created if missing, replaced at commit). `plan` lists the source files and groups them into
blocks of about `block_size` bytes, dealt out to at most `max_writers` writers.
`write_blocks` is mapped: one task per writer, each retrying on its own. `commit` checks that
the service holds exactly the planned blocks and commits them once; `session_committed`
waits until the service reports the session committed.

A retry of any task, or a clear of the whole run, leaves the partition with the source's
rows once: the session overwrites the partition.

### Data to prepare

* a table with a `ds string` partition column, e.g. `sales (id bigint, item string, amount
  double, sold_at datetime) PARTITIONED BY (ds string)`;
* Parquet, CSV (with a header row), JSON lines or Arrow files whose columns match the
  table's by name, under `source`.

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

Write the files under `/tmp/odps_example/sales/`, then trigger the DAG (the form's defaults
match these paths). Set the connection in the environment of every Airflow component, or
create it in the UI. `make demo` does all of this with generated data.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.upload import (
    OdpsCommitUploadOperator,
    OdpsCreateUploadSessionOperator,
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)
from airflow_provider_odps_tunnel.sensors.session import OdpsSessionStateSensor

with DAG(
    dag_id="example_odps_load",
    description="Files -> MaxCompute partition through mapped tunnel block writes",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "source": Param(
            "file:///tmp/odps_example/sales/",
            type="string",
            title="Source files",
            description="A directory, file or glob of Parquet, CSV, JSON lines or Arrow "
            "files, as a URI (file://, s3://, ...); every file below a directory is loaded.",
        ),
        "table": Param(
            "sales",
            type="string",
            title="Table",
            description="The partitioned table to load (table, project.table or "
            "project.schema.table); the partition is ds=<logical date>.",
        ),
        "block_size": Param(
            64 * 1024 * 1024,
            type="integer",
            minimum=1,
            title="Block size (bytes of source)",
            description="Source bytes per tunnel block; the service recommends at least "
            "64 MiB (67108864). Smaller blocks give more parallel writers for small data.",
        ),
        "max_writers": Param(
            8,
            type="integer",
            minimum=1,
            title="Parallel writers",
            description="The most write_blocks tasks to map; each writes a run of blocks.",
        ),
    },
    tags=["example", "odps_tunnel"],
) as dag:
    create = OdpsCreateUploadSessionOperator(
        task_id="create_session",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        create_partition=True,
        overwrite=True,
    )
    plan = OdpsPlanUploadOperator(
        task_id="plan",
        source="{{ params.source }}",
        block_size="{{ params.block_size }}",
        max_writers="{{ params.max_writers }}",
    )
    write = OdpsWriteBlocksOperator.partial(
        task_id="write_blocks",
        session=create.output,
        map_index_template="blocks {{ task.blocks[0]['block_id'] if task.blocks else '-' }}",
    ).expand_kwargs(plan.output)
    commit = OdpsCommitUploadOperator(
        task_id="commit", session=create.output, plan=plan.output, written=write.output
    )
    committed = OdpsSessionStateSensor(
        task_id="session_committed", session=create.output, poke_interval=1, timeout=60
    )
    commit >> committed
