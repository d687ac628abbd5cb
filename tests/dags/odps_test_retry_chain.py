"""Test DAG: the mapped upload chain, where every task's first try fails.

``create_session`` and ``commit`` raise after their work succeeded on try 1 (as a worker
that dies before reporting success). The test makes the emulator break the writer's second
block until the writer's try 2 starts: ``ON_WRITER_TRY`` is called with the try number
before the writer runs. ``EVENTS`` records what each try did, for the test to inspect.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from airflow.sdk import DAG

from airflow_provider_odps_tunnel.operators.upload import (
    OdpsCommitUploadOperator,
    OdpsCreateUploadSessionOperator,
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)

EVENTS: list[tuple[str, int, Any]] = []
ON_WRITER_TRY: Callable[[int], None] = lambda try_number: None  # noqa: E731


class CrashAfterCreate(OdpsCreateUploadSessionOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        ref = super().execute(context)
        try_number = context["ti"].try_number
        EVENTS.append(("create", try_number, ref["session_id"]))
        if try_number == 1:
            raise RuntimeError("worker lost after the session was created")
        return ref


class ObservedWriter(OdpsWriteBlocksOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        ON_WRITER_TRY(context["ti"].try_number)
        return super().execute(context)


class CrashAfterCommit(OdpsCommitUploadOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        result = super().execute(context)
        try_number = context["ti"].try_number
        EVENTS.append(("commit", try_number, result))
        if try_number == 1:
            raise RuntimeError("worker lost after the commit")
        return result


with DAG(
    dag_id="odps_test_retry_chain",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=0)},
    params={"source": "", "table": ""},
) as dag:
    create = CrashAfterCreate(
        task_id="create_session",
        table="{{ params.table }}",
        partition="ds={{ ds }}",
        create_partition=True,
    )
    plan = OdpsPlanUploadOperator(
        task_id="plan", source="{{ params.source }}", block_size=1, max_writers=1
    )
    write = ObservedWriter.partial(task_id="write_blocks", session=create.output).expand_kwargs(
        plan.output
    )
    CrashAfterCommit(
        task_id="commit", session=create.output, plan=plan.output, written=write.output
    )
