"""Wait until a table partition exists, optionally holding at least N rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import PokeReturnValue

from airflow_provider_odps_tunnel.sensors.base import OdpsBaseSensor
from airflow_provider_odps_tunnel.triggers.tunnel import OdpsPartitionTrigger

__all__ = ["OdpsPartitionSensor"]


class OdpsPartitionSensor(OdpsBaseSensor):
    """Succeed when the partition (or, without one, the table) exists with >= ``min_rows``.

    Each check opens a download session and reads its row count, so it costs one session
    creation (the service allows 200 per table per 5 minutes): keep ``poke_interval`` at a
    minute or more against the real service. Works in ``poke``, ``reschedule`` and
    deferrable modes. Returns (XCom) ``{"rows": n}``.

    :param table: the table (templated).
    :param partition: the partition spec, e.g. ``"ds=2024-01-01"`` (templated).
    :param min_rows: rows the partition must hold; 0 means it only has to exist.
    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection (templated).
    :param project: a project overriding the connection's (templated).
    :param deferrable: wait in the triggerer instead of a worker.
    """

    template_fields: Sequence[str] = (*OdpsBaseSensor.template_fields, "table", "partition")

    def __init__(
        self, *, table: str, partition: str | None = None, min_rows: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.partition = partition
        self.min_rows = min_rows

    def poke(self, context: Any) -> PokeReturnValue:
        rows = self.hook.partition_row_count(self.table, self.partition or None)
        where = f"{self.table}/{self.partition}" if self.partition else self.table
        if rows is None:
            self.log.info("%s does not exist yet", where)
            return PokeReturnValue(is_done=False)
        self.log.info("%s holds %d rows (waiting for at least %d)", where, rows, self.min_rows)
        return PokeReturnValue(is_done=rows >= self.min_rows, xcom_value={"rows": rows})

    def trigger(self) -> OdpsPartitionTrigger:
        return OdpsPartitionTrigger(
            table=self.table,
            partition=self.partition or None,
            min_rows=self.min_rows,
            poll_interval=self.poke_interval,
            odps_tunnel_conn_id=self.odps_tunnel_conn_id,
            project=self.project,
        )
