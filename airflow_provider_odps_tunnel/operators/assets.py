"""Airflow Assets and lineage for MaxCompute tables.

A table is the Asset ``odps://{project}/{schema}/{table}`` (``hooks.assets``: a table of a
project without schemas is in the schema ``default``), named by its URI, in the group
``odps_table``. The project usually comes from the connection, which is only read when
the task runs, so writing operators declare the alias ``ODPS_TABLES_ALIAS`` as their
outlet and attach the concrete table Asset to it at run time, with the partition, row count
and session id as the event's extra. Consumers schedule on ``odps_table_asset``.
If the DAG declares a table Asset itself, its event gets the same extra.

Every table read or write is also reported to Airflow's hook-lineage collector and recorded
for the operator's OpenLineage facets (``operators.lineage``); file reads and writes
through ``ObjectStoragePath`` report themselves to the collector.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_odps_tunnel.hooks.assets import ASSET_GROUP, table_asset, table_uri
from airflow_provider_odps_tunnel.operators.lineage import (
    LineageDataset,
    record_input,
    record_output,
)

__all__ = [
    "ODPS_TABLES_ALIAS",
    "odps_table_uri",
    "odps_table_asset",
    "default_outlets",
    "emit_table_event",
    "report_table_lineage",
    "report_table_read",
    "report_table_write",
]

#: The asset alias that writing operators attach table Assets to at run time.
ODPS_TABLES_ALIAS = "odps_tunnel_tables"


def odps_table_uri(qualified_table: str) -> str:
    """``odps://project/schema/table`` for ``project.table`` or ``project.schema.table``."""
    return table_uri(qualified_table)


def odps_table_asset(qualified_table: str) -> Asset:
    """The Asset of a table, named by its project: ``odps_table_asset("proj.sales")``."""
    return table_asset(qualified_table)


def default_outlets(outlets: Any) -> Any:
    """The outlets an operator gets when the DAG declares none: the tables alias."""
    return outlets if outlets else [AssetAlias(name=ODPS_TABLES_ALIAS, group=ASSET_GROUP)]


def emit_table_event(
    context: Any, outlets: Any, qualified_table: str, extra: dict[str, Any]
) -> None:
    """Attach an event for the table to every alias in ``outlets``, and give ``extra`` to
    the event of a declared Asset of the same table."""
    events = context.get("outlet_events") if context is not None else None
    if events is None:
        return
    asset = odps_table_asset(qualified_table)
    for outlet in outlets or ():
        if isinstance(outlet, AssetAlias):
            events[outlet].add(asset, extra=extra)
        elif isinstance(outlet, Asset) and outlet.uri == asset.uri:
            events[outlet].extra.update(extra)


def report_table_lineage(hook: Any, qualified_table: str, *, output: bool) -> None:
    """Tell Airflow's hook-lineage collector that ``hook`` read or wrote the table."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    uri = odps_table_uri(qualified_table)
    if output:
        collector.add_output_asset(context=hook, uri=uri)
    else:
        collector.add_input_asset(context=hook, uri=uri)


def report_table_read(operator: Any, qualified_table: str, partition: str | None) -> None:
    """Report that ``operator`` read the table (or partition): to the hook-lineage collector
    and to its OpenLineage record."""
    report_table_lineage(operator.hook, qualified_table, output=False)
    record_input(operator, LineageDataset(table=qualified_table, partition=partition))


def report_table_write(
    context: Any,
    operator: Any,
    qualified_table: str,
    partition: str | None,
    session_id: str,
    rows: int,
    nbytes: int | None = None,
) -> None:
    """Report a finished write of ``operator`` (its hook and outlets): to the hook-lineage
    collector as an output, to its OpenLineage record with the rows (and bytes, when the
    writer counts them), and as the table's event with the partition, row count and
    session id as extra."""
    report_table_lineage(operator.hook, qualified_table, output=True)
    record_output(
        operator,
        LineageDataset(table=qualified_table, partition=partition, rows=rows, nbytes=nbytes),
    )
    emit_table_event(
        context,
        operator.outlets,
        qualified_table,
        {"partition": partition, "rows": rows, "session_id": session_id},
    )
