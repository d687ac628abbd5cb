"""Load files into a partitioned table: create session -> plan -> parallel block writes -> commit.

The writers are mapped over the plan, so each one is a task that can fail and retry on its
own; the commit waits for all of them and commits every planned block exactly once. The
session sensor at the end is a gate for consumers that must see the data committed.

Run parameters: ``source`` (a directory, file or glob of Parquet, CSV, JSON lines or Arrow
files, any ``ObjectStoragePath`` URI), ``table``, ``block_size`` (bytes of source per block;
the service recommends >= 64 MiB) and ``max_writers``. The partition is ``ds={{ ds }}``.
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
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "source": Param("file:///tmp/odps_example/sales/", type="string"),
        "table": Param("sales", type="string"),
        "block_size": Param(64 * 1024 * 1024, type="integer", minimum=1),
        "max_writers": Param(8, type="integer", minimum=1),
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
