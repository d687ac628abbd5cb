"""The few service-endpoint (``/api``) resources pyodps calls around the tunnel.

* ``GET /projects/{p}/tunnel?service``: the tunnel endpoint as ``host:port`` text (§1.1).
* ``GET /projects/{p}``: project metadata XML.
* ``GET /projects/{p}/volumes/{v}``: volume metadata XML (partitioned, "old" volumes).
* ``GET /projects/{p}/tables/{t}[?extended]``: table metadata XML with the schema JSON that
  pyodps parses (column list, partition keys, and in ``Reserved`` the transactional flag,
  primary key and schema version).
"""

from __future__ import annotations

import email.utils
import json
from xml.sax.saxutils import escape

from starlette.responses import Response

from ..call import Call
from ..catalog import TableInfo
from ..errors import EmulatorError

__all__ = ["tunnel_router", "project_meta", "table_meta", "volume_meta"]

OWNER = "ALIYUN$emulator@example.com"


def _xml(body: str) -> Response:
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + body, media_type="application/xml")


def _rfc822(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


async def tunnel_router(call: Call) -> Response:
    """The tunnel server address, plain text without a scheme."""
    if not call.state.catalog.project_exists(call.args["project"]):
        raise EmulatorError.no_such_project(call.args["project"])
    return Response(call.state.server_address, media_type="text/plain")


async def project_meta(call: Call) -> Response:
    project = call.args["project"]
    if not call.state.catalog.project_exists(project):
        raise EmulatorError.no_such_project(project)
    return _xml(
        f"<Project><Name>{escape(project)}</Name><Type>managed</Type>"
        f"<Comment></Comment><State>AVAILABLE</State><Owner>{OWNER}</Owner>"
        f"<ProjectGroupName></ProjectGroupName><Properties></Properties></Project>"
    )


def table_schema_json(call: Call, info: TableInfo) -> dict:
    rows, size = call.state.catalog.table_stats(info)
    created = int(info.created)
    reserved = {"schema_version": "0", "Transactional": str(info.transactional).lower()}
    properties = {}
    if info.transactional:
        reserved["PrimaryKey"] = info.primary_key
        properties = {"transactional": "true", "write.bucket.num": str(info.buckets)}
    schema = info.schema.to_json()
    return {
        "tableName": info.name,
        "comment": "",
        "owner": OWNER,
        "createTime": created,
        "lastModifiedTime": created,
        "lastDDLTime": created,
        "isVirtualView": False,
        "lifecycle": -1,
        "size": size,
        "recordNum": rows,
        "columns": schema["columns"],
        "partitionKeys": schema["partitionKeys"],
        "Reserved": json.dumps(reserved),
        "tableProperties": json.dumps(properties),
    }


async def table_meta(call: Call) -> Response:
    info = call.table()
    schema = json.dumps(table_schema_json(call, info), ensure_ascii=False)
    created = _rfc822(info.created)
    return _xml(
        f"<Table><Name>{escape(info.name)}</Name><TableId>{info.table_id}</TableId>"
        f"<Owner>{OWNER}</Owner><Type>MANAGED_TABLE</Type>"
        f"<CreationTime>{created}</CreationTime><LastModifiedTime>{created}</LastModifiedTime>"
        f"<Schema><![CDATA[{schema}]]></Schema></Table>"
    )


async def volume_meta(call: Call) -> Response:
    volume = call.args["volume"]
    path = call.state.catalog.volume_dir(call.args["project"], volume)
    created = _rfc822(path.stat().st_mtime)
    return _xml(
        f"<Volume><Name>{escape(volume)}</Name><Type>old</Type><Owner>{OWNER}</Owner>"
        f"<Comment></Comment><CreationTime>{created}</CreationTime>"
        f"<LastModifiedTime>{created}</LastModifiedTime></Volume>"
    )
