"""The trigger a deferred ``OdpsSqlOperator`` waits with: it polls a SQL instance's status.

Each poll is the hook's blocking status read, run in a thread (``_PollingTrigger``), so
the triggerer's event loop never blocks. The event carries the instance's outcome as
plain JSON (id, status, task statuses, error text), which ``execute_complete`` turns into
the task's result or a clear error. When a user kills the deferred task (mark failed,
clear), ``on_kill`` stops the instance if the operator asked for that (``cancel_on_kill``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.triggers.tunnel import _PollingTrigger

__all__ = ["OdpsSqlInstanceTrigger"]


class OdpsSqlInstanceTrigger(_PollingTrigger):
    """Fires when a SQL instance ended: ``{"status": "success" | "failed", ...}``.

    :param instance_id: the SQL instance to wait for.
    :param cancel_on_kill: stop the instance when a user kills the deferred task.
    :param poll_interval: seconds between status reads.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (with a service endpoint).
    :param project: a project overriding the connection's.
    """

    def __init__(
        self,
        *,
        instance_id: str,
        cancel_on_kill: bool = True,
        poll_interval: float = 10.0,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, odps_tunnel_conn_id=odps_tunnel_conn_id, project=project
        )
        self.instance_id = instance_id
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "instance_id": self.instance_id,
                "cancel_on_kill": self.cancel_on_kill,
                **self._common_kwargs(),
            },
        )

    def check(self, hook: OdpsTunnelHook) -> dict[str, Any] | None:
        outcome = hook.instance_outcome(self.instance_id)
        if outcome["succeeded"] is None:
            return None
        return {"status": "success" if outcome["succeeded"] else "failed", **outcome}

    async def on_kill(self) -> None:
        """Stop the instance (when ``cancel_on_kill``): the user no longer wants its work."""
        if not self.cancel_on_kill:
            return
        hook = OdpsTunnelHook(self.odps_tunnel_conn_id, project=self.project)
        await hook.aload_connection()
        await asyncio.to_thread(hook.stop_instance, self.instance_id)
        self.log.info("Stopped SQL instance %s", self.instance_id)
