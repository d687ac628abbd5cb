"""Table and partition metadata on the service endpoint (what pyodps's models read).

* ``GET /projects/{p}/tables[?name=prefix]``: the table list XML.
* ``GET /projects/{p}/tables/{t}[?extended]``: table metadata XML whose ``Schema`` element
  carries the JSON pyodps parses (columns, partition keys, and in ``Reserved`` the
  transactional flag, primary key and schema version).
* ``GET /projects/{p}/tables/{t}?partitions[&partition=prefix]``: the partition list XML.
* ``GET /projects/{p}/tables/{t}?partition=spec[&extended]``: one partition's metadata
  (``NoSuchPartition`` if it is missing, which is how pyodps tests existence).
* ``GET /projects/{p}/tables/{t}?data&linenum=N``: the first rows as CSV (``table.head``).

Every one of them reads the table in the schema the request names (``/schemas/{s}/`` in
the path, else pyodps's ``curr_schema`` parameter, else ``default``; see ``Call.schema_name``).
Tables and partitions are created and dropped by SQL (``instances``), as pyodps does.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
from starlette.responses import Response

from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec

from ..call import Call, rfc822
from ..call import xml_response as xml
from ..catalog import TableInfo
from ..columnar import storage_type
from ..egress import read_range
from ..errors import EmulatorError
from ..instances import OWNER
from ..sql.results import render_csv

__all__ = ["list_tables", "table_meta", "list_partitions", "partition_meta", "head"]

HEAD_LIMIT = 10000


def table_schema_json(call: Call, info: TableInfo) -> dict:
    rows, size = call.state.catalog.table_stats(info)
    created = int(info.created)
    reserved = {
        "schema_version": str(info.schema_version),
        "Transactional": str(info.transactional).lower(),
    }
    properties = {}
    if info.transactional:
        reserved["PrimaryKey"] = info.primary_key
        properties = {"transactional": "true", "write.bucket.num": str(info.buckets)}
    schema = info.schema.to_json()
    return {
        "tableName": info.name,
        "comment": info.comment,
        "owner": OWNER,
        "createTime": created,
        "lastModifiedTime": created,
        "lastDDLTime": created,
        "isVirtualView": False,
        "lifecycle": info.lifecycle if info.lifecycle is not None else -1,
        "size": size,
        "recordNum": rows,
        "columns": schema["columns"],
        "partitionKeys": schema["partitionKeys"],
        "Reserved": json.dumps(reserved),
        "tableProperties": json.dumps(properties),
    }


def _table_xml(call: Call, info: TableInfo) -> str:
    schema = json.dumps(table_schema_json(call, info), ensure_ascii=False)
    created = rfc822(info.created)
    return (
        f"<Table><Name>{escape(info.name)}</Name><TableId>{info.table_id}</TableId>"
        f"<Owner>{OWNER}</Owner><Type>MANAGED_TABLE</Type>"
        f"<Comment>{escape(info.comment)}</Comment>"
        f"<CreationTime>{created}</CreationTime><LastModifiedTime>{created}</LastModifiedTime>"
        f"<Schema><![CDATA[{schema}]]></Schema></Table>"
    )


async def table_meta(call: Call) -> Response:
    return xml(_table_xml(call, call.table()))


async def list_tables(call: Call) -> Response:
    """All tables of the project's schema (one page; ``name`` is a prefix filter)."""
    catalog = call.state.catalog
    project = call.args["project"]
    if not catalog.project_exists(project):
        raise EmulatorError.no_such_project(project)
    prefix = call.params.get("name", "").lower()
    schema = call.schema_name()
    items = [
        _table_xml(call, catalog.get_table(project, name, schema))
        for name in catalog.list_tables(project, schema)
        if name.startswith(prefix)
    ]
    return xml(
        f"<Tables><Marker></Marker><MaxItems>{len(items)}</MaxItems>{''.join(items)}</Tables>"
    )


def _partition_xml(call: Call, info: TableInfo, spec: PartitionSpec) -> str:
    stats = call.state.catalog.partition_stats(info, spec)
    columns = "".join(
        f"<Column Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in spec.items()
    )
    return (
        f"<Partition>{columns}<CreationTime>{int(stats['created'])}</CreationTime>"
        f"<LastDDLTime>{int(stats['created'])}</LastDDLTime>"
        f"<LastModifiedTime>{int(stats['modified'])}</LastModifiedTime>"
        f"<PartitionSize>{stats['size']}</PartitionSize>"
        f"<PartitionRecordCount>{stats['rows']}</PartitionRecordCount></Partition>"
    )


async def list_partitions(call: Call) -> Response:
    """The table's partitions in value order; ``partition`` keeps those matching a prefix."""
    info = call.table()
    try:
        prefix = PartitionSpec(call.params.get("partition") or None)
    except ValueError as exc:
        raise EmulatorError("InvalidPartitionSpec", str(exc), 400) from None
    wanted = {k.lower(): v for k, v in prefix.items()}
    items = []
    for spec in call.state.catalog.partitions(info):
        values = {k.lower(): v for k, v in spec.items()}
        if all(values.get(k) == v for k, v in wanted.items()):
            items.append(_partition_xml(call, info, spec))
    return xml(
        f"<Partitions><Marker></Marker><MaxItems>{len(items)}</MaxItems>"
        f"{''.join(items)}</Partitions>"
    )


async def partition_meta(call: Call) -> Response:
    """One partition's metadata JSON (extended keys with ``extended``)."""
    info = call.table()
    spec = call.partition(info)
    stats = call.state.catalog.partition_stats(info, spec)
    meta = {
        "createTime": int(stats["created"]),
        "lastDDLTime": int(stats["created"]),
        "lastModifiedTime": int(stats["modified"]),
        "partitionSize": stats["size"],
        "partitionRecordNum": stats["rows"],
    }
    if "extended" in call.params:
        meta.update(
            IsArchived=False,
            IsExstore=False,
            LifeCycle=info.lifecycle if info.lifecycle is not None else -1,
            PhysicalSize=stats["size"],
            FileNum=stats["files"],
            Reserved="{}",
        )
    return xml(f"<Partition><Schema><![CDATA[{json.dumps(meta)}]]></Schema></Partition>")


async def head(call: Call) -> Response:
    """``GET T?data&linenum=N[&partition=][&cols=]``: the first rows as the service's CSV."""
    info = call.table()
    catalog = call.state.catalog
    try:
        limit = min(int(call.params.get("linenum") or HEAD_LIMIT), HEAD_LIMIT)
    except ValueError:
        raise EmulatorError.invalid_argument("linenum must be an integer") from None
    if info.partitioned and not call.params.get("partition"):
        specs = catalog.partitions(info)
    else:
        specs = [call.partition(info)]
    names = [c.name for c in info.schema.simple_columns]
    parts = []
    for spec in specs:
        if limit <= 0:
            break
        snapshot = catalog.snapshot(info, spec)
        batches = list(read_range(info.data_dir, snapshot.files, 0, limit, names))
        data = pa.Table.from_batches(batches, schema=info.arrow_schema())
        for column in info.schema.partitions:
            values = pa.array([spec[column.name]] * data.num_rows, pa.string())
            data = data.append_column(column.name, values.cast(storage_type(column.type)))
        parts.append(data)
        limit -= data.num_rows
    if not parts:
        return Response("", media_type="text/plain")
    table = pa.concat_tables(parts)
    if call.params.get("cols"):
        wanted = [c.strip() for c in call.params["cols"].split(",")]
        unknown = [c for c in wanted if c not in info.schema]
        if unknown:
            raise EmulatorError(
                "InvalidColumnSpec", f"unknown columns {unknown} in {info.name}", 400
            )
        names = [info.schema.get_column(c).name for c in wanted]
        table = table.select(names)
    return Response(render_csv(table), media_type="text/plain")
