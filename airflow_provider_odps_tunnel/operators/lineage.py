"""OpenLineage facets of the provider's operators: what a task read and wrote.

While a task runs, its operator records the datasets it read and wrote (``record_input``,
``record_output``): ODPS tables with the partition, and for writes the rows and bytes
written; files and object-storage paths as URIs. ``OdpsLineageMixin`` (a base of every
operator of this provider) turns the record into the ``OperatorLineage`` that the
OpenLineage provider asks for when the task completes
(``get_openlineage_facets_on_complete``):

* a table is the dataset ``odps://{project}`` / ``{schema}.{table}`` (see
  ``hooks.assets``), with a schema facet (column names and ODPS types, partition columns
  included) read from a download session opened only for this, and for an output the
  output statistics (row count, and bytes where the writer counts them);
* a file, directory or object-storage path is the dataset OpenLineage names it by
  (``file`` / ``/path``, ``s3://bucket`` / ``key``...); a glob pattern stands for the
  directory before its first wildcard;
* the load operators' ``source`` files are their inputs without anything recorded;
* the SQL operator reports its SQL (the SQL job facet) and the tables that OpenLineage's
  SQL parser (``openlineage-sql``, Hive dialect) finds in it, without schema facets, so no
  table is opened for it; SQL the parser cannot read gets the SQL facet alone;
* a load from a query on another database (``SqlToOdpsOperator``) adds the query as the
  SQL job facet and, where the source database's common.sql hook supports OpenLineage
  (PostgreSQL's does, SQLite's not), the query's tables as inputs, named as that hook's
  own operators name them.

Nothing here runs unless the OpenLineage provider is configured: it is the provider's
listener that calls ``get_openlineage_facets_on_complete``, and only then are OpenLineage's
classes imported and table schemas read.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_odps_tunnel.hooks.assets import openlineage_name
from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef

__all__ = [
    "LineageDataset",
    "LineageRecord",
    "OdpsLineageMixin",
    "lineage_record",
    "record_input",
    "record_output",
    "sql_facets",
    "with_source_sql",
]

log = logging.getLogger(__name__)

_WILDCARDS = ("*", "?", "[")


@dataclass(frozen=True)
class LineageDataset:
    """A dataset a task read or wrote: an ODPS ``table`` (qualified, with its ``partition``)
    or a ``uri``; ``rows``/``nbytes`` are what was written, when known. ``upload`` is the
    upload session a writer wrote into before it is committed (its partition may not exist
    yet): the table's columns are then read from that session."""

    table: str | None = None
    partition: str | None = None
    uri: str | None = None
    rows: int | None = None
    nbytes: int | None = None
    upload: SessionRef | None = None


@dataclass
class LineageRecord:
    """The datasets one task try read and wrote, in the order it met them."""

    inputs: list[LineageDataset] = field(default_factory=list)
    outputs: list[LineageDataset] = field(default_factory=list)


def lineage_record(operator: Any) -> LineageRecord:
    """The record of ``operator``'s current try (kept on the operator object, which the
    OpenLineage listener is handed when the task completes)."""
    record = operator.__dict__.get("_odps_lineage")
    if record is None:
        record = operator.__dict__["_odps_lineage"] = LineageRecord()
    return record


def record_input(operator: Any, dataset: LineageDataset) -> None:
    """Record that ``operator`` read ``dataset``."""
    lineage_record(operator).inputs.append(dataset)


def record_output(operator: Any, dataset: LineageDataset) -> None:
    """Record that ``operator`` wrote ``dataset``."""
    lineage_record(operator).outputs.append(dataset)


def _path_dataset(uri: str) -> Any:
    """The OpenLineage dataset of a file, directory or object-storage URI, as OpenLineage's
    naming spec has it: ``file`` / ``/abs/path`` for local files, ``s3://bucket`` / ``key``
    for object storage. A glob pattern stands for the directory before its first wildcard."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = uri.split("/")
    for i, part in enumerate(parts):
        if any(w in part for w in _WILDCARDS):
            uri = "/".join(parts[:i]) or "/"
            break
    parsed = urllib.parse.urlsplit(uri if "://" in uri else "file://" + uri)
    path = parsed.path.rstrip("/") or "/"
    if parsed.scheme == "file":
        return Dataset(namespace="file", name=path)
    return Dataset(namespace=f"{parsed.scheme}://{parsed.netloc}", name=path.lstrip("/") or "/")


def _table_columns(hook: Any, recorded: LineageDataset) -> list[tuple[str, str]] | None:
    """``(name, ODPS type)`` of every column of the recorded table (partition columns
    last), read from its upload session or else from a download session opened for it;
    None when the table cannot be read (logged, not raised: a missing schema facet must
    not hide the rest of the lineage)."""
    try:
        if recorded.upload is not None:
            session = hook.upload_session(recorded.upload)
        else:
            _, session = hook.create_download_session(recorded.table, recorded.partition)
        return [(c.name, str(c.type)) for c in session.schema.columns]
    except Exception as exc:  # noqa: BLE001 - any failure only drops the facet
        log.info("No OpenLineage schema facet for %s: %s", recorded.table, exc)
        return None


class OdpsLineageMixin:
    """Gives an operator ``get_openlineage_facets_on_complete`` from what it recorded.

    The operator must have a ``hook`` (an ``OdpsTunnelHook``) to read table schemas with.
    Operators whose lineage is more than their record (the SQL operator) override
    ``get_openlineage_facets_on_complete``.
    """

    def lineage_source_uris(self) -> list[str]:
        """The files a load operator read: its rendered ``source`` (none for a callable)."""
        if getattr(self, "source_callable", None) is not None:
            return []
        source = getattr(self, "source", None)
        if not source:
            return []
        return [source] if isinstance(source, str) else [str(s) for s in source]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The inputs and outputs of the finished try, for the OpenLineage provider."""
        return self.openlineage_facets()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """What the failed try read and wrote before it failed (as on completion)."""
        return self.get_openlineage_facets_on_complete(task_instance)

    def openlineage_facets(self, **extra: Any) -> Any:
        """``OperatorLineage`` of the recorded datasets; ``extra`` (run or job facets) is
        passed on."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        record = lineage_record(self)
        inputs = [_path_dataset(uri) for uri in self.lineage_source_uris()]
        inputs += [self._dataset(d, output=False) for d in _latest(record.inputs)]
        outputs = [self._dataset(d, output=True) for d in _latest(record.outputs)]
        return OperatorLineage(inputs=_unique(inputs), outputs=_unique(outputs), **extra)

    def _dataset(self, recorded: LineageDataset, *, output: bool) -> Any:
        from airflow.providers.common.compat.openlineage.facet import (
            InputDataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )

        if recorded.table is None:
            plain = _path_dataset(str(recorded.uri))
            namespace, name, facets = plain.namespace, plain.name, dict(plain.facets or {})
        else:
            namespace, name = openlineage_name(recorded.table)
            facets = {}
            columns = _table_columns(self.hook, recorded)  # type: ignore[attr-defined]
            if columns:
                facets["schema"] = SchemaDatasetFacet(
                    fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in columns]
                )
        if not output:
            return InputDataset(namespace=namespace, name=name, facets=facets)
        if recorded.rows is None:
            return OutputDataset(namespace=namespace, name=name, facets=facets)
        statistics = OutputStatisticsOutputDatasetFacet(
            rowCount=recorded.rows, size=recorded.nbytes
        )
        return OutputDataset(
            namespace=namespace,
            name=name,
            facets=facets,
            outputFacets={"outputStatistics": statistics},
        )


def _latest(recorded: list[LineageDataset]) -> list[LineageDataset]:
    """One record per table or URI, in the order first met, each the latest (a later try of
    the same operator object records again)."""
    kept: dict[tuple[str | None, str | None], LineageDataset] = {}
    for dataset in recorded:
        kept[(dataset.table, dataset.uri)] = dataset
    return list(kept.values())


def _unique(datasets: list[Any]) -> list[Any]:
    """``datasets`` without repeats of a namespace and name (the first one is kept)."""
    kept: dict[tuple[str, str], Any] = {}
    for dataset in datasets:
        kept.setdefault((dataset.namespace, dataset.name), dataset)
    return list(kept.values())


def _sql_table(meta: Any, project: str, schema: str | None) -> str:
    """``project[.schema].table`` of a table the SQL parser found: ``a.b.c`` is
    project.schema.table, ``a.b`` project.table, ``c`` a table of the default project."""
    if meta.database:
        return f"{meta.database}.{meta.schema}.{meta.name}"
    if meta.schema:
        return f"{meta.schema}.{meta.name}"
    return f"{project}.{schema}.{meta.name}" if schema else f"{project}.{meta.name}"


def sql_facets(operator: Any, sql: str | list[str]) -> Any:
    """``OperatorLineage`` of a SQL task: the SQL job facet, and as inputs and outputs the
    tables the SQL names (the operator's hook gives the default project and schema)."""
    from airflow.providers.common.compat.openlineage.facet import (
        InputDataset,
        OutputDataset,
        SQLJobFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.sqlparser import SQLParser

    meta = SQLParser(dialect="hive").parse(SQLParser.split_sql_string(sql))
    project, schema = operator.hook.project, operator.hook.settings.schema

    def datasets(tables: list[Any], kind: type) -> list[Any]:
        names = []
        for table in tables:
            try:
                names.append(openlineage_name(_sql_table(table, project, schema)))
            except ValueError as exc:  # a name the SQL spells in a way we cannot place
                log.info("No OpenLineage dataset for a table of the SQL: %s", exc)
        return [kind(namespace=n, name=t) for n, t in dict.fromkeys(names)]

    return OperatorLineage(
        inputs=datasets(meta.in_tables, InputDataset) if meta else [],
        outputs=datasets(meta.out_tables, OutputDataset) if meta else [],
        job_facets={"sql": SQLJobFacet(query=SQLParser.normalize_sql(sql))},
    )


def with_source_sql(lineage: Any, conn_id: str, sql: str) -> Any:
    """``lineage`` with the tables that ``sql`` reads on the database of ``conn_id`` added to
    its inputs and the query as its SQL job facet, as that database's common.sql hook names
    them (no query of the database's catalog is made). With a hook without OpenLineage
    support (SQLite's) only the SQL facet is added."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.providers.openlineage.sqlparser import get_openlineage_facets_with_sql
    from airflow.sdk import BaseHook

    try:
        source = get_openlineage_facets_with_sql(
            BaseHook.get_hook(conn_id), sql, conn_id, database=None, use_connection=False
        )
    except Exception as exc:  # noqa: BLE001 - the source's lineage is optional
        log.info("No OpenLineage datasets for the query on %s: %s", conn_id, exc)
        source = None
    if source is None:  # still say which query was loaded
        from airflow.providers.common.compat.openlineage.facet import SQLJobFacet
        from airflow.providers.openlineage.sqlparser import SQLParser

        facet = SQLJobFacet(query=SQLParser.normalize_sql(sql))
        source = OperatorLineage(job_facets={"sql": facet})
    return OperatorLineage(
        inputs=_unique([*source.inputs, *lineage.inputs]),
        outputs=lineage.outputs,
        run_facets=lineage.run_facets,
        job_facets={**source.job_facets, **lineage.job_facets},
    )
