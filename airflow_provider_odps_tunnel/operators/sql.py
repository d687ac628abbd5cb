"""Run a SQL statement (or a script of several) as a MaxCompute SQL instance.

The instance is the external job of Airflow's ``ResumableJobMixin``: its id is stored in
the task state store right after submission, before polling. A retry of the task asks the
service about the stored instance and waits for it again while it runs, returns its id at
once if it succeeded, and submits anew only if it failed, is unknown, or was submitted for
another SQL text or other hints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import ResumableJobMixin

from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors

__all__ = ["OdpsSqlOperator"]

_RUNNING, _SUCCEEDED, _FAILED = "running", "succeeded", "failed"
_MISSING, _OTHER_SQL = "missing", "other_sql"


class OdpsSqlOperator(ResumableJobMixin, OdpsBaseOperator):
    """Run SQL on MaxCompute and wait until it succeeded; returns the instance id (XCom).

    The query's rows are not pulled into XCom: read them with
    ``OdpsPlanExportOperator(instance_id=...)`` or the hook's instance tunnel. A failed
    instance raises ``SQLTaskError`` with the service's error text and the instance id.

    :param sql: the SQL text, or a path ending in ``.sql`` rendered as a template
        (templated). Several statements may be separated by ``;``.
    :param hints: SQL settings of the instance, e.g.
        ``{"odps.sql.type.system.odps2": "true"}`` (templated).
    :param durable: remember the submitted instance across retries of the task
        (``ResumableJobMixin``), so a retry reattaches to it instead of running the SQL
        again.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection; it needs a service
        endpoint (templated).
    :param project: a project overriding the connection's (templated).
    """

    external_id_key = "sql_instance"
    template_fields: Sequence[str] = (*OdpsBaseOperator.template_fields, "sql", "hints")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "hints": "json"}
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        sql: str,
        hints: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.hints = hints

    def execute(self, context: Any) -> str:
        return self.execute_resumable(context)

    def _fingerprint(self) -> str:
        text = json.dumps(
            [self.hook.project, self.sql, self.hints or {}], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- ResumableJobMixin: the SQL instance is the job ---------------------------------------

    def submit_job(self, context: Any) -> dict[str, str]:
        instance = self.hook.run_sql(self.sql, self.hints)
        self.log.info("Submitted SQL instance %s", instance.id)
        return {"instance_id": instance.id, "fingerprint": self._fingerprint()}

    def get_job_status(self, external_id: Any, context: Any) -> str:
        if not isinstance(external_id, dict) or not external_id.get("instance_id"):
            return _MISSING
        if external_id.get("fingerprint") != self._fingerprint():
            return _OTHER_SQL
        instance = self.hook.get_instance(external_id["instance_id"])
        try:
            if not instance.is_terminated():
                return _RUNNING
            return _SUCCEEDED if instance.is_successful() else _FAILED
        except tunnel_errors.NoSuchObject:
            return _MISSING

    def is_job_active(self, status: str) -> bool:
        return status == _RUNNING

    def is_job_succeeded(self, status: str) -> bool:
        return status == _SUCCEEDED

    def poll_until_complete(self, external_id: Any, context: Any) -> str:
        # Also the result of a reattached try: the mixin returns what this returns.
        instance_id = external_id["instance_id"]
        self.log.info("Waiting for SQL instance %s", instance_id)
        self.hook.get_instance(instance_id).wait_for_success()
        self.log.info("SQL instance %s succeeded", instance_id)
        return instance_id

    def get_job_result(self, external_id: Any, context: Any) -> str:
        self.log.info("SQL instance %s", external_id["instance_id"])
        return external_id["instance_id"]
