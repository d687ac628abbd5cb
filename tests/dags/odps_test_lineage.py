"""Test DAG: one task of every operator family, for the OpenLineage events they emit.

The tables are named ``{prefix}_...`` (``params.prefix``). Files -> ``lineage_sales`` (one-task load, and the mapped chain into another partition);
``lineage_sales`` -> ``lineage_copy`` (SQL); a callable -> ``lineage_keys`` (upsert) and
``lineage_stream`` (stream upload); ``lineage_sales`` -> Parquet files (export); the SQLite
table ``orders`` of the connection ``lineage_sqlite`` -> ``lineage_orders``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pyarrow as pa
from airflow.sdk import DAG

from airflow_provider_odps_tunnel.operators.export import (
    OdpsExportRangeOperator,
    OdpsPlanExportOperator,
)
from airflow_provider_odps_tunnel.operators.sql import OdpsSqlOperator
from airflow_provider_odps_tunnel.operators.sql_to_odps import SqlToOdpsOperator
from airflow_provider_odps_tunnel.operators.stream import OdpsStreamUploadOperator
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.operators.upload import (
    OdpsCommitUploadOperator,
    OdpsCreateUploadSessionOperator,
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)
from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator


def keys(part: int, parts: int) -> Iterator[pa.Table]:
    """Three rows of (k, v) for the upsert and the stream upload."""
    yield pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})


with DAG(
    dag_id="odps_test_lineage",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    params={"source": "", "destination": "", "prefix": "lineage"},
) as dag:
    load = ObjectStorageToOdpsOperator(
        task_id="load",
        table="{{ params.prefix }}_sales",
        partition="ds=one",
        source="{{ params.source }}",
        create_partition=True,
    )
    create = OdpsCreateUploadSessionOperator(
        task_id="create",
        table="{{ params.prefix }}_sales",
        partition="ds=two",
        create_partition=True,
    )
    plan = OdpsPlanUploadOperator(
        task_id="plan", source="{{ params.source }}", block_size=1, max_writers=2
    )
    write = OdpsWriteBlocksOperator.partial(task_id="write", session=create.output).expand_kwargs(
        plan.output
    )
    commit = OdpsCommitUploadOperator(
        task_id="commit", session=create.output, plan=plan.output, written=write.output
    )
    sql = OdpsSqlOperator(
        task_id="sql",
        sql="INSERT INTO {{ params.prefix }}_copy SELECT id, item, amount "
        "FROM {{ params.prefix }}_sales WHERE ds = 'one'",
    )
    upsert = OdpsUpsertOperator(
        task_id="upsert", table="{{ params.prefix }}_keys", source_callable=keys
    )
    stream = OdpsStreamUploadOperator(
        task_id="stream", table="{{ params.prefix }}_stream", source_callable=keys
    )
    export_plan = OdpsPlanExportOperator(
        task_id="export_plan",
        table="{{ params.prefix }}_sales",
        partition="ds=one",
        destination="{{ params.destination }}",
        rows_per_file=1000,
    )
    export = OdpsExportRangeOperator.partial(task_id="export").expand_kwargs(export_plan.output)
    from_sqlite = SqlToOdpsOperator(
        task_id="from_sqlite",
        sql_conn_id="lineage_sqlite",
        sql="SELECT id, customer, total FROM orders",
        table="{{ params.prefix }}_orders",
    )
    load >> create
    commit >> sql >> export_plan
