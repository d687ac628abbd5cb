"""Test DAG: the transfers of ``docs/howto-transfers.md`` run by the scheduler's code path.

Compressed CSV files with their own dialect into a partition (the table created from the
files), then that partition exported in one task to JSON lines (zstd) and, mapped, to
gzipped CSV. Run parameters: ``source``, ``table``, ``destination``.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.export import (
    OdpsExportOperator,
    OdpsExportRangeOperator,
    OdpsPlanExportOperator,
)
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator

with DAG(
    dag_id="odps_test_transfers",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 0},
    params={
        "source": Param("", type="string"),
        "table": Param("", type="string"),
        "destination": Param("", type="string"),
    },
) as dag:
    load = ObjectStorageToOdpsOperator(
        task_id="load_csv",
        source="{{ params.source }}",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        csv_options={
            "delimiter": ";",
            "header": False,
            "column_names": ["sale_id", "item", "amount"],
            "skip_rows": 1,
            "null_values": ["\\N"],
        },
        column_mapping={"sale_id": "id"},
        create_table_if_missing=True,
        create_partition=True,
        overwrite=True,
    )
    one_task = OdpsExportOperator(
        task_id="export_jsonl",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        destination="{{ params.destination }}/jsonl",
        file_format="jsonl",
        file_compression="zstd",
        rows_per_file=120,
    )
    plan = OdpsPlanExportOperator(
        task_id="plan_csv",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        destination="{{ params.destination }}/csv",
        file_format="csv",
        file_compression="gzip",
        rows_per_file=100,
    )
    OdpsExportRangeOperator.partial(task_id="export_csv").expand_kwargs(plan.output)
    load >> [one_task, plan]
