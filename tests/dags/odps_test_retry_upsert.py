"""Test DAG: an upsert whose first try fails part-way (the test injects the failure).

``EVENTS`` records, per try, the session the task continued and the pieces already done.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG

from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator

EVENTS: list[tuple[int, str, int]] = []


class RecordingUpsert(OdpsUpsertOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        self._try_number = context["ti"].try_number
        return super().execute(context)

    def _resume(self, state: Any, fingerprint: str, total: int) -> tuple[dict[str, Any], str]:
        record, status = super()._resume(state, fingerprint, total)
        EVENTS.append((self._try_number, record["session"]["session_id"], record["pieces_done"]))
        return record, status


with DAG(
    dag_id="odps_test_retry_upsert",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=0)},
    params={"source": "", "table": ""},
) as dag:
    RecordingUpsert(
        task_id="upsert",
        table="{{ params.table }}",
        source="{{ params.source }}",
        delete_column="deleted",
        commit_timeout=60,
    )
