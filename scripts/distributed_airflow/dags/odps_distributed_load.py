"""The load chain as a distributed Airflow runs it, with an upsert and a deferrable sensor.

Files -> partition through mapped block writers (create session -> plan -> writers ->
commit), and in the same run a resumable upsert into a primary-key table and a sensor that
waits in the triggerer for the loaded partition. Used by ``scripts/distributed_airflow`` (``make
demo-distributed``) and ``tests/distributed``: the writers spread over the Celery workers,
which share nothing but the metadata DB, XCom, the broker and the source files' URI.

Run parameters: ``source`` (files, any ``ObjectStoragePath`` URI), ``table``,
``block_size`` (bytes of source per block), ``max_writers``, ``upsert_table`` and
``upsert_source``. The partition is ``ds={{ ds }}``.
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
from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator
from airflow_provider_odps_tunnel.sensors.partition import OdpsPartitionSensor

with DAG(
    dag_id="odps_distributed_load",
    description="Mapped block writers over Celery workers, an upsert and a deferred sensor",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    max_active_tasks=64,
    default_args={"retries": 3, "retry_delay": datetime.timedelta(seconds=2)},
    params={
        "source": Param("file:///tmp/odps_distributed/source/", type="string"),
        "table": Param("events", type="string"),
        "block_size": Param(16 * 1024 * 1024, type="integer", minimum=1),
        "max_writers": Param(16, type="integer", minimum=1),
        "upsert_table": Param("accounts", type="string"),
        "upsert_source": Param("file:///tmp/odps_distributed/accounts/", type="string"),
    },
    tags=["odps_tunnel", "distributed"],
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
        progress_interval=2.0,
        map_index_template="blocks {{ task.blocks[0]['block_id'] if task.blocks else '-' }}",
    ).expand_kwargs(plan.output)
    commit = OdpsCommitUploadOperator(
        task_id="commit", session=create.output, plan=plan.output, written=write.output
    )
    # Starts with the load and waits in the triggerer until the commit has published rows.
    OdpsPartitionSensor(
        task_id="partition_loaded",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        min_rows=1,
        deferrable=True,
        poke_interval=2,
        timeout=1800,
    )
    OdpsUpsertOperator(
        task_id="upsert_accounts",
        table="{{ params.upsert_table }}",
        source="{{ params.upsert_source }}",
        delete_column="deleted",
        commit_timeout=120,
    )
