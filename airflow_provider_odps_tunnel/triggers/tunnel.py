"""Triggers that wait in the triggerer for a partition or a session state.

Their arguments are plain JSON (ids, names, numbers, the connection id), as Airflow's
trigger serialisation requires. The tunnel client is synchronous, so each check runs in a
thread. The first check waits one ``poll_interval``: the deferring sensor has just checked
itself, and a trigger that fires within a second of the deferral can lose a race in the
scheduler of Airflow 3.2-3.3 (apache/airflow#71580), which fails the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook

__all__ = ["OdpsPartitionTrigger", "OdpsSessionStateTrigger"]


class _PollingTrigger(BaseTrigger):
    """Checks every ``poll_interval`` seconds until ``check`` returns an event."""

    def __init__(
        self, *, poll_interval: float, odps_tunnel_conn_id: str, project: str | None
    ) -> None:
        super().__init__()
        self.poll_interval = poll_interval
        self.odps_tunnel_conn_id = odps_tunnel_conn_id
        self.project = project

    def _common_kwargs(self) -> dict[str, Any]:
        return {
            "poll_interval": self.poll_interval,
            "odps_tunnel_conn_id": self.odps_tunnel_conn_id,
            "project": self.project,
        }

    def check(self, hook: OdpsTunnelHook) -> dict[str, Any] | None:
        """One blocking check; an event payload ends the wait."""
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = OdpsTunnelHook(self.odps_tunnel_conn_id, project=self.project)
        await hook.aload_connection()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                payload = await asyncio.to_thread(self.check, hook)
            except Exception as exc:  # reported to the task, which fails (and may retry)
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
                return
            if payload is not None:
                yield TriggerEvent(payload)
                return


class OdpsPartitionTrigger(_PollingTrigger):
    """Fires when a table or partition exists and holds at least ``min_rows`` rows.

    :param table: the table.
    :param partition: the partition spec, or None for a non-partitioned table.
    :param min_rows: rows the partition must hold (0: it only has to exist).
    :param poll_interval: seconds between checks.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection.
    :param project: a project overriding the connection's.
    """

    def __init__(
        self,
        *,
        table: str,
        partition: str | None = None,
        min_rows: int = 0,
        poll_interval: float = 60.0,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, odps_tunnel_conn_id=odps_tunnel_conn_id, project=project
        )
        self.table = table
        self.partition = partition
        self.min_rows = min_rows

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "partition": self.partition,
                "min_rows": self.min_rows,
                **self._common_kwargs(),
            },
        )

    def check(self, hook: OdpsTunnelHook) -> dict[str, Any] | None:
        rows = hook.partition_row_count(self.table, self.partition)
        if rows is not None and rows >= self.min_rows:
            return {"status": "success", "rows": rows}
        return None


class OdpsSessionStateTrigger(_PollingTrigger):
    """Fires when a tunnel session reaches one of ``target_states`` (``success``) or one of
    ``failure_states`` (``failed``: the sensor fails without retry, as its poke does). An
    error while checking fires ``error``, which the task may retry.

    :param session: the session reference (the dict form of a ``SessionRef``).
    :param target_states: lower-case states that end the wait successfully.
    :param failure_states: lower-case states that end it as failed.
    :param poll_interval: seconds between checks.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection.
    :param project: a project overriding the connection's.
    """

    def __init__(
        self,
        *,
        session: dict[str, Any],
        target_states: Sequence[str],
        failure_states: Sequence[str] = (),
        poll_interval: float = 60.0,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, odps_tunnel_conn_id=odps_tunnel_conn_id, project=project
        )
        self.session = dict(session)
        self.target_states = list(target_states)
        self.failure_states = list(failure_states)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "session": self.session,
                "target_states": self.target_states,
                "failure_states": self.failure_states,
                **self._common_kwargs(),
            },
        )

    def check(self, hook: OdpsTunnelHook) -> dict[str, Any] | None:
        ref = SessionRef.of(self.session)
        status = hook.session_status(ref)
        if status in self.target_states:
            return {"status": "success", "state": status}
        if status in self.failure_states:
            message = f"{ref.kind} session {ref.session_id} is {status}"
            return {"status": "failed", "state": status, "message": message}
        return None
