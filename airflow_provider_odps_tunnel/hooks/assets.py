"""The ``odps://`` asset URI of a MaxCompute table: its handler, factory and OpenLineage
converter, which ``get_provider_info()["asset-uris"]`` registers with Airflow.

A table is ``odps://{project}/{schema}/{table}``, always with three path parts, all lower
case (MaxCompute names are case-insensitive). A table of a project without schemas (the
two-tier model) lives in the schema ``default``, which is also the name of the default
schema of a three-tier project, so ``odps://proj/sales`` is accepted and normalized to
``odps://proj/default/sales``. Partitions are not part of the URI: a write of a partition is
an event of the table's asset, with the partition in the event's extra.

In OpenLineage the table is the dataset of namespace ``odps://{project}`` and name
``{schema}.{table}``: MaxCompute project names are unique across the service, so the project
identifies the data whatever endpoint (region, VPC or public) a task reached it through.

Airflow imports this module whenever an ``odps://`` Asset is created (also while parsing DAG
files), so it imports nothing of ours and nothing heavy.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from airflow.sdk import Asset

__all__ = [
    "ASSET_GROUP",
    "DEFAULT_SCHEMA",
    "SCHEME",
    "convert_asset_to_openlineage",
    "create_asset",
    "openlineage_name",
    "sanitize_uri",
    "split_table_name",
    "table_asset",
    "table_uri",
]

SCHEME = "odps"
#: The schema of the tables of a two-tier project, and the default schema of a three-tier one.
DEFAULT_SCHEMA = "default"
#: The asset group of every table asset.
ASSET_GROUP = "odps_table"

_NAME = re.compile(r"[a-z0-9_]+")


def _parts(project: str, schema: str | None, table: str, *, where: str) -> tuple[str, str, str]:
    parts = (project.lower(), (schema or DEFAULT_SCHEMA).lower(), table.lower())
    for label, value in zip(("project", "schema", "table"), parts, strict=True):
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{where}: the {label} name {value!r} is not a MaxCompute name "
                "(letters, digits and underscores)"
            )
    return parts


def split_table_name(qualified_table: str) -> tuple[str, str, str]:
    """``(project, schema, table)`` of ``project.table`` or ``project.schema.table``."""
    parts = qualified_table.split(".")
    if len(parts) == 2:
        return _parts(parts[0], None, parts[1], where=qualified_table)
    if len(parts) == 3:
        return _parts(parts[0], parts[1], parts[2], where=qualified_table)
    raise ValueError(f"expected 'project.table' or 'project.schema.table', got {qualified_table!r}")


def table_uri(qualified_table: str) -> str:
    """The normalized URI of ``project.table`` or ``project.schema.table``."""
    return "{}://{}/{}/{}".format(SCHEME, *split_table_name(qualified_table))


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI handler for ``odps``: validate the URI, lower-case it and spell out the
    default schema. Raises ``ValueError`` (Airflow then refuses the Asset) for a URI that
    does not name one table."""
    where = urllib.parse.urlunsplit(uri)
    if uri.query or uri.port or uri.username:
        raise ValueError(f"{where}: an odps:// URI takes no user, port or query")
    path = [p for p in uri.path.split("/") if p]
    if len(path) == 1:
        project, schema, table = _parts(uri.netloc, None, path[0], where=where)
    elif len(path) == 2:
        project, schema, table = _parts(uri.netloc, path[0], path[1], where=where)
    else:
        raise ValueError(f"{where}: expected odps://project/table or odps://project/schema/table")
    return uri._replace(netloc=project, path=f"/{schema}/{table}", fragment="")


def create_asset(
    *, project: str, table: str, schema: str | None = None, extra: dict[str, Any] | None = None
) -> Asset:
    """Airflow's asset factory for ``odps`` (what the hook-lineage collector calls with
    ``scheme="odps"``): the Asset of a table, named by its URI, in the table group."""
    from airflow.sdk import Asset

    project, schema, table = _parts(project, schema, table, where=f"{project}.{table}")
    uri = f"{SCHEME}://{project}/{schema}/{table}"
    return Asset(uri=uri, name=uri, group=ASSET_GROUP, extra=extra or {})


def table_asset(qualified_table: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of ``project.table`` or ``project.schema.table``."""
    project, schema, table = split_table_name(qualified_table)
    return create_asset(project=project, schema=schema, table=table, extra=extra)


def openlineage_name(qualified_table: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a table: ``("odps://proj", "schema.table")``."""
    project, schema, table = split_table_name(qualified_table)
    return f"{SCHEME}://{project}", f"{schema}.{table}"


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """Airflow's OpenLineage converter for ``odps``: the table's OpenLineage dataset."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parsed = sanitize_uri(urllib.parse.urlsplit(asset.uri))
    _, schema, table = parsed.path.split("/")
    return Dataset(namespace=f"{SCHEME}://{parsed.netloc}", name=f"{schema}.{table}")
