r"""## SQL and data checks on MaxCompute with the `common.sql` operators

The `odps_tunnel` connection is also a `common.sql` connection (its hook, `OdpsSqlHook`, is a
`DbApiHook`), so Airflow's own SQL operators work with it unchanged:

1. `create_table` (`SQLExecuteQueryOperator`) creates the `table` if it is missing.
2. `load_orders` (`GenericTransfer`) copies the `orders` of a SQLite database into the
   day's partition. The rows go through a tunnel upload (`OdpsSqlHook.insert_rows`), not
   INSERT statements, with `overwrite=True`: a retry or a cleared run replaces the
   partition instead of adding the rows twice.
3. `check_not_empty` (`SQLCheckOperator`), `check_row_count` (`SQLValueCheckOperator`),
   `check_columns` (`SQLColumnCheckOperator`) and `check_table` (`SQLTableCheckOperator`)
   check the partition; a failed check fails its task.
4. `summarize` (`SQLExecuteQueryOperator`) returns the totals per customer as rows (its
   XCom).
5. `export_totals` (`GenericTransfer`) writes those totals back into the SQLite table
   `customer_totals`, which it empties first.

### Data to prepare

* A SQLite database with a table `orders (id INTEGER, customer TEXT, amount REAL)` of
  `expected_rows` rows, reachable as the connection `odps_example_sqlite`; the function
  `create_sqlite_source(path)` of this file writes the sample one.
* The MaxCompute table needs nothing: `create_table` makes it, partitioned by `ds`.

### Run it against the emulator

```bash
odps-tunnel-emulator serve --data-dir /tmp/odps_example/emulator --port 8765 \
    --access-id demo-id --secret-access-key demo-secret &
export AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT='{"conn_type": "odps_tunnel",
  "login": "demo-id", "password": "demo-secret",
  "extra": {"project": "test_project", "endpoint": "http://127.0.0.1:8765/api"}}'
export AIRFLOW_CONN_ODPS_EXAMPLE_SQLITE='{"conn_type": "sqlite",
  "host": "/tmp/odps_example/shop.db"}'
```

Create `/tmp/odps_example/shop.db` with `create_sqlite_source`, then trigger the DAG. `make
demo` does all of this.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from airflow.providers.common.sql.operators.generic_transfer import GenericTransfer
from airflow.providers.common.sql.operators.sql import (
    SQLCheckOperator,
    SQLColumnCheckOperator,
    SQLExecuteQueryOperator,
    SQLTableCheckOperator,
    SQLValueCheckOperator,
)
from airflow.sdk import DAG, Param

ODPS_CONN = "odps_tunnel_default"
SQLITE_CONN = "odps_example_sqlite"
SAMPLE_ORDERS = [(1, "ann", 10.5), (2, "bob", 20.0), (3, "cy", 0.5), (4, "ann", 3.0)]


def create_sqlite_source(path: str | Path) -> None:
    """Write the sample SQLite database: ``orders`` with four rows."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS orders")
        db.execute("CREATE TABLE orders (id INTEGER, customer TEXT, amount REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", SAMPLE_ORDERS)


TABLE = "{{ params.table }}"
PARTITION = "ds='{{ ds }}'"

with DAG(
    dag_id="example_odps_sql_checks",
    description="common.sql operators and GenericTransfer on a MaxCompute connection",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=1)},
    params={
        "table": Param(
            "sql_checks_orders",
            type="string",
            title="MaxCompute table",
            description="Created if missing as (id bigint, customer string, amount double), "
            "partitioned by ds; the run's date is the partition written and checked.",
        ),
        "expected_rows": Param(
            4,
            type="integer",
            minimum=0,
            title="Expected rows",
            description="Rows the SQLite orders table holds: check_row_count fails unless "
            "the partition has exactly this many.",
        ),
    },
) as dag:
    create_table = SQLExecuteQueryOperator(
        task_id="create_table",
        conn_id=ODPS_CONN,
        sql=f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT, customer STRING, amount DOUBLE)"
        " PARTITIONED BY (ds STRING)",
    )
    load_orders = GenericTransfer(
        task_id="load_orders",
        source_conn_id=SQLITE_CONN,
        sql="SELECT id, customer, amount FROM orders",
        destination_conn_id=ODPS_CONN,
        destination_table=TABLE,
        insert_args={"partition": "ds={{ ds }}", "create_partition": True, "overwrite": True},
    )
    check_not_empty = SQLCheckOperator(
        task_id="check_not_empty",
        conn_id=ODPS_CONN,
        sql=f"SELECT count(*) FROM {TABLE} WHERE {PARTITION}",
    )
    check_row_count = SQLValueCheckOperator(
        task_id="check_row_count",
        conn_id=ODPS_CONN,
        sql=f"SELECT count(*) FROM {TABLE} WHERE {PARTITION}",
        pass_value="{{ params.expected_rows }}",
    )
    check_columns = SQLColumnCheckOperator(
        task_id="check_columns",
        conn_id=ODPS_CONN,
        table=TABLE,
        partition_clause=PARTITION,
        column_mapping={
            "id": {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}},
            "amount": {"min": {"geq_to": 0}},
        },
    )
    check_table = SQLTableCheckOperator(
        task_id="check_table",
        conn_id=ODPS_CONN,
        table=TABLE,
        partition_clause=PARTITION,
        checks={
            "has_customers": {"check_statement": "COUNT(DISTINCT customer) >= 1"},
            "positive_total": {"check_statement": "SUM(amount) > 0"},
        },
    )
    summarize = SQLExecuteQueryOperator(
        task_id="summarize",
        conn_id=ODPS_CONN,
        sql=f"SELECT customer, count(*) AS orders, sum(amount) AS total FROM {TABLE}"
        f" WHERE {PARTITION} GROUP BY customer ORDER BY customer",
    )
    export_totals = GenericTransfer(
        task_id="export_totals",
        source_conn_id=ODPS_CONN,
        sql=f"SELECT customer, count(*) AS orders, sum(amount) AS total FROM {TABLE}"
        f" WHERE {PARTITION} GROUP BY customer",
        destination_conn_id=SQLITE_CONN,
        destination_table="customer_totals",
        preoperator=[
            "CREATE TABLE IF NOT EXISTS customer_totals"
            " (customer TEXT, orders INTEGER, total REAL)",
            "DELETE FROM customer_totals",
        ],
    )

    checks = [check_not_empty, check_row_count, check_columns, check_table]
    create_table >> load_orders >> checks >> summarize >> export_totals
