"""Wait until a tunnel session (upload, upsert, download, stream) reaches a state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.sensors.base import OdpsBaseSensor
from airflow_provider_odps_tunnel.triggers.tunnel import OdpsSessionStateTrigger

__all__ = ["OdpsSessionStateSensor"]

#: States from which a session never recovers.
TERMINAL_FAILURES = ("expired", "canceled", "critical", "aborted", "failed", "missing")


class OdpsSessionStateSensor(OdpsBaseSensor):
    """Succeed when a session reaches one of ``target_states``; fail at once when it
    reaches one of ``failure_states``.

    States are the service's, in lower case: ``normal``, ``committing``, ``closed``,
    ``committed``, ``expired`` ... plus ``missing`` when the service no longer knows the
    session. Returns (XCom) ``{"state": ...}``.

    :param session: the session reference (templated; e.g. ``create.output``).
    :param target_states: states that end the wait successfully (default: committed).
    :param failure_states: states that fail the task without retry.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    :param deferrable: wait in the triggerer instead of a worker.
    """

    template_fields: Sequence[str] = (*OdpsBaseSensor.template_fields, "session")

    def __init__(
        self,
        *,
        session: dict[str, Any] | Any,
        target_states: Sequence[str] = ("closed", "committed"),
        failure_states: Sequence[str] = TERMINAL_FAILURES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.target_states = [s.lower() for s in target_states]
        self.failure_states = [s.lower() for s in failure_states]

    def poke(self, context: Any) -> PokeReturnValue:
        ref = SessionRef.of(self.session)
        state = self.hook.session_status(ref)
        self.log.info("%s session %s is %s", ref.kind, ref.session_id, state)
        if state in self.failure_states:
            raise AirflowFailException(f"{ref.kind} session {ref.session_id} is {state}")
        return PokeReturnValue(is_done=state in self.target_states, xcom_value={"state": state})

    def trigger(self) -> OdpsSessionStateTrigger:
        return OdpsSessionStateTrigger(
            session=SessionRef.of(self.session).to_dict(),
            target_states=self.target_states,
            failure_states=self.failure_states,
            poll_interval=self.poke_interval,
            odps_tunnel_conn_id=self.odps_tunnel_conn_id,
            project=self.project,
        )
