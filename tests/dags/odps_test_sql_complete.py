"""Test DAG: a deferrable ``OdpsSqlOperator`` returning rows, with its LogView link.

The SQL comes from the run's conf (``sql``, ``hints``). ``ON_DEFER`` is called with the
instance id when the task defers (the test releases the held instance then), and
``EVENTS`` records the deferral and the resumption.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from airflow.providers.common.sql.hooks.handlers import fetch_all_handler
from airflow.sdk import DAG

from airflow_provider_odps_tunnel.operators.sql import OdpsSqlOperator

EVENTS: list[tuple[str, Any]] = []
ON_DEFER: Callable[[str], None] = lambda instance_id: None  # noqa: E731


class ObservedSqlOperator(OdpsSqlOperator):
    def defer(self, **kwargs: Any) -> None:
        EVENTS.append(("deferred", self.instance_id))
        ON_DEFER(self.instance_id)
        super().defer(**kwargs)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        EVENTS.append(("resumed", event["status"]))
        return super().execute_complete(context, event)


with DAG(
    dag_id="odps_test_sql_complete",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    render_template_as_native_obj=True,
) as dag:
    ObservedSqlOperator(
        task_id="query",
        sql="{{ dag_run.conf['sql'] }}",
        hints="{{ dag_run.conf.get('hints') }}",
        handler=fetch_all_handler,
        deferrable=True,
        poll_interval=0.05,
    )
