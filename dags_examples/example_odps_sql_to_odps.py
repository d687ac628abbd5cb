r"""Copy a SQL query's result (here from SQLite) into a MaxCompute partition, in key ranges.

``SqlToOdpsOperator`` reads the query in ``ranges`` parts cut by the integer
``split_column``, writes each part as one block of one upload session (``threads`` at a
time) and commits once. It creates the table from the query's columns when it is missing,
and the partition; ``overwrite=True`` makes a re-run (a clear) replace the partition
instead of appending.

Run parameters: ``sql_conn_id`` (any Airflow connection with a common.sql ``DbApiHook``:
SQLite, PostgreSQL, MySQL ...), ``sql``, ``split_column``, ``ranges`` and ``table``. The
partition is ``ds={{ ds }}``.

Data to prepare: a database with the query's table. ``create_sqlite_source(path)`` writes
a SQLite one (``orders``: ``id``, ``customer``, ``total``); point a ``sqlite`` connection
(host = the file's path) named ``odps_example_orders`` at it, as ``make demo`` does.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from airflow.sdk import DAG, Param

from airflow_provider_odps_tunnel.operators.sql_to_odps import SqlToOdpsOperator


def create_sqlite_source(path: str | Path, rows: int = 10_000) -> None:
    """Write the sample SQLite database: ``orders`` with ids ``1..rows``."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS orders")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            ((i, f"customer-{i % 97:02d}", round(i * 0.37 % 500, 2)) for i in range(1, rows + 1)),
        )


with DAG(
    dag_id="example_odps_sql_to_odps",
    description="SQL database (SQLite) -> MaxCompute partition in parallel key ranges",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "sql_conn_id": Param(
            "odps_example_orders",
            type="string",
            description="a database connection with a DbApiHook (SQLite in the demo)",
        ),
        "sql": Param(
            "SELECT id, customer, total FROM orders",
            type="string",
            description="the query whose rows are loaded",
        ),
        "split_column": Param(
            "id", type="string", description="an integer column to cut the query into ranges"
        ),
        "ranges": Param(4, type="integer", minimum=1, description="parts read in parallel"),
        "table": Param("orders_copy", type="string", description="the MaxCompute table"),
    },
    tags=["example", "odps_tunnel"],
) as dag:
    SqlToOdpsOperator(
        task_id="sql_to_odps",
        sql_conn_id="{{ params.sql_conn_id }}",
        sql="{{ params.sql }}",
        split_column="{{ params.split_column }}",
        ranges="{{ params.ranges }}",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        create_table_if_missing=True,
        create_partition=True,
        overwrite=True,
    )
