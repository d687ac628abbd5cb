"""The base of every operator of this provider: the connection id and the hook."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook

__all__ = ["OdpsBaseOperator"]


class OdpsBaseOperator(BaseOperator):
    """An operator that talks to MaxCompute through ``OdpsTunnelHook``.

    The hook is built on first use inside ``execute`` (after templates are rendered), never
    when the DAG file is parsed.

    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection to use (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = ("odps_tunnel_conn_id", "project")

    def __init__(
        self,
        *,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.odps_tunnel_conn_id = odps_tunnel_conn_id
        self.project = project

    @cached_property
    def hook(self) -> OdpsTunnelHook:
        """The hook of this task try (it caches the tunnel client)."""
        return OdpsTunnelHook(self.odps_tunnel_conn_id, project=self.project)
