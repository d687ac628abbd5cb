"""Run a SQL statement (or a script of several) as a MaxCompute SQL instance.

The instance is the external job of Airflow's ``ResumableJobMixin``: its id is stored in
the task state store right after submission, before polling. A retry of the task asks the
service about the stored instance and waits for it again while it runs, returns its id at
once if it succeeded, and submits anew only if it failed, is unknown, or was submitted for
another SQL text or other hints.

Around that job: ``deferrable=True`` waits for a running instance in the triggerer
(``triggers.sql.OdpsSqlInstanceTrigger``) instead of a worker slot; ``on_kill`` stops the
instance when the task is killed (``cancel_on_kill``); the instance id and its LogView
address go to XCom as soon as the instance is known, and the "LogView" extra link
(``operators.links``) opens that address; ``handler=`` (common.sql's convention, e.g.
``fetch_all_handler``) turns the query result into the task's return value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import ResumableJobMixin, conf
from airflow.sdk.exceptions import AirflowException

from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.operators.lineage import sql_facets
from airflow_provider_odps_tunnel.operators.links import (
    INSTANCE_XCOM_KEY,
    LOGVIEW_XCOM_KEY,
    OdpsLogViewLink,
)
from airflow_provider_odps_tunnel.triggers.sql import OdpsSqlInstanceTrigger
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors

__all__ = ["OdpsSqlOperator"]

_RUNNING, _SUCCEEDED, _FAILED = "running", "succeeded", "failed"
_MISSING, _OTHER_SQL = "missing", "other_sql"


class OdpsSqlOperator(ResumableJobMixin, OdpsBaseOperator):
    """Run SQL on MaxCompute and wait until it succeeded; returns the instance id, or with
    ``handler`` what the handler made of the query result (XCom).

    The instance id is also pushed as XCom ``instance_id`` and its LogView address as
    ``logview_url`` (the "LogView" extra link) as soon as the instance exists. A failed
    instance raises ``SQLTaskError`` with the service's error text, the instance's and its
    tasks' statuses, and the instance id. Large results are better read with
    ``OdpsPlanExportOperator(instance_id=...)`` than through XCom.

    :param sql: the SQL text, or a path ending in ``.sql`` rendered as a template
        (templated). Several statements may be separated by ``;``: they run in one
        instance, whose result is that of the last query (common.sql's
        ``return_last=True``; statements are not split into several instances).
    :param hints: SQL settings of the instance, e.g.
        ``{"odps.sql.type.system.odps2": "true"}`` (templated).
    :param handler: a common.sql result handler called with a DB-API cursor over the
        query result (``fetch_all_handler`` for all rows as tuples, ``fetch_one_handler``
        for the first); its return value becomes the task's. None (default): the task
        returns the instance id. The rows are read through the instance tunnel.
    :param deferrable: wait for a running instance in the triggerer, freeing the worker
        slot (default: ``[operators] default_deferrable``). An instance that already
        ended when first checked is not deferred for.
    :param poll_interval: seconds between the trigger's status reads (deferrable mode).
    :param cancel_on_kill: stop the instance when the task is killed (``on_kill``, or the
        deferred task marked failed or cleared), so no SQL keeps running unobserved.
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
    operator_extra_links = (OdpsLogViewLink(),)

    def __init__(
        self,
        *,
        sql: str,
        hints: dict[str, Any] | None = None,
        handler: Callable[[Any], Any] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.hints = hints
        self.handler = handler
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.cancel_on_kill = cancel_on_kill
        #: The instance this try submitted or reattached to (what ``on_kill`` stops).
        self.instance_id: str | None = None
        self._published: str | None = None

    def execute(self, context: Any) -> Any:
        return self.execute_resumable(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Resume after the trigger: the instance's result, or a clear error."""
        if event.get("status") == "error":
            raise AirflowException(
                f"Waiting for SQL instance {self.instance_id or '?'} failed: {event.get('message')}"
            )
        self.instance_id = event["instance_id"]
        self.hook.raise_for_outcome(event)
        self.log.info("SQL instance %s succeeded", self.instance_id)
        return self._result(self.instance_id)

    def on_kill(self) -> None:
        """Stop the instance (``cancel_on_kill``): the task no longer waits for it."""
        if not self.cancel_on_kill or not self.instance_id:
            return
        self.log.info("Stopping SQL instance %s", self.instance_id)
        self.hook.stop_instance(self.instance_id)

    def _attach(self, instance_id: str, context: Any) -> None:
        """Remember the instance and publish its id and LogView address (once per try)."""
        self.instance_id = instance_id
        if self._published == instance_id:
            return
        self._published = instance_id
        ti = context.get("ti")
        if ti is None or not hasattr(ti, "xcom_push"):
            return  # a hand-built context without a task instance: nothing to publish to
        ti.xcom_push(key=INSTANCE_XCOM_KEY, value=instance_id)
        try:
            url = self.hook.get_logview_url(instance_id)
        except Exception as exc:  # noqa: BLE001 - a missing link must not fail the SQL
            self.log.warning("No LogView address for instance %s: %s", instance_id, exc)
            return
        self.log.info("LogView of instance %s: %s", instance_id, url)
        ti.xcom_push(key=LOGVIEW_XCOM_KEY, value=url)

    def _result(self, instance_id: str) -> Any:
        if self.handler is None:
            return instance_id
        return self.hook.fetch_instance_result(instance_id, self.handler)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The SQL facet and the tables the SQL reads and writes (``operators.lineage``)."""
        return sql_facets(self, self.sql)

    def _fingerprint(self) -> str:
        text = json.dumps(
            [self.hook.project, self.sql, self.hints or {}], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # -- ResumableJobMixin: the SQL instance is the job ---------------------------------------

    def submit_job(self, context: Any) -> dict[str, str]:
        instance = self.hook.run_sql(self.sql, self.hints)
        self.instance_id = instance.id  # on_kill stops it from now on
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

    def poll_until_complete(self, external_id: Any, context: Any) -> Any:
        # Also the result of a reattached try: the mixin returns what this returns.
        instance_id = external_id["instance_id"]
        self._attach(instance_id, context)
        instance = self.hook.get_instance(instance_id)
        if self.deferrable and not instance.is_terminated():
            self.log.info("Deferring until SQL instance %s ends", instance_id)
            self.defer(
                trigger=OdpsSqlInstanceTrigger(
                    instance_id=instance_id,
                    cancel_on_kill=self.cancel_on_kill,
                    poll_interval=self.poll_interval,
                    odps_tunnel_conn_id=self.odps_tunnel_conn_id,
                    project=self.project,
                ),
                method_name="execute_complete",
            )
        self.log.info("Waiting for SQL instance %s", instance_id)
        instance.wait_for_success()
        self.log.info("SQL instance %s succeeded", instance_id)
        return self._result(instance_id)

    def get_job_result(self, external_id: Any, context: Any) -> Any:
        instance_id = external_id["instance_id"]
        self._attach(instance_id, context)
        self.log.info("SQL instance %s", instance_id)
        return self._result(instance_id)
