"""The base of this provider's sensors: connection, hook, and the deferrable switch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook

__all__ = ["OdpsBaseSensor"]


class OdpsBaseSensor(BaseSensorOperator):
    """A sensor that checks MaxCompute through ``OdpsTunnelHook``.

    In ``deferrable`` mode the sensor checks once itself and, if the condition does not
    hold yet, hands the waiting to a trigger and frees its worker slot. Give deferrable
    sensors ``retries >= 1`` and a ``poke_interval`` of several seconds: Airflow 3.2-3.3 can
    fail a task whose trigger fires within a second of deferring (apache/airflow#71580).

    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    :param deferrable: wait in the triggerer instead of a worker (default:
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("odps_tunnel_conn_id", "project")

    def __init__(
        self,
        *,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.odps_tunnel_conn_id = odps_tunnel_conn_id
        self.project = project
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> OdpsTunnelHook:
        return OdpsTunnelHook(self.odps_tunnel_conn_id, project=self.project)

    def trigger(self) -> BaseTrigger:
        """The trigger that waits for the same condition as ``poke``."""
        raise NotImplementedError

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        if result is True:
            return None
        self.defer(
            trigger=self.trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return its result, or fail with its message.

        ``failed`` (the watched thing reached a failure state) fails the task without
        retry, as ``poke`` does; ``error`` (the check itself broke, e.g. the service was
        unreachable) fails this try, and the task retries if it has retries left.
        """
        status = event.get("status")
        if status == "success":
            return {k: v for k, v in event.items() if k != "status"}
        message = f"{self.task_id}: {event.get('message', event)}"
        if status == "failed":
            raise AirflowFailException(message)
        raise AirflowException(message)
