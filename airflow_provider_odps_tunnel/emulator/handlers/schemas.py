"""Schemas of a project (the service's three-tier model, project.schema.table), over REST.

* ``GET /projects/{p}/schemas[?name=prefix]``: the schema list XML (``default`` included).
* ``POST /projects/{p}/schemas`` with a ``<Schema><Name>s</Name>...`` body: create a schema
  (``ObjectAlreadyExists`` if it exists), as pyodps's ``odps.create_schema`` does.
* ``GET /projects/{p}/schemas/{s}``: one schema's XML plus the owner and time headers
  pyodps's ``Schema.reload`` reads (404 ``NoSuchObject`` if missing, which is what
  pyodps's ``exist_schema`` catches).
* ``DELETE /projects/{p}/schemas/{s}``: drop an empty schema (``odps.delete_schema``).

pyodps tries these resources first and falls back to SQL (``CREATE SCHEMA``, ``SHOW
SCHEMAS``) only when the service answers ``MethodNotAllowed``; serving them keeps pyodps on
its main path.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from ..call import Call, rfc822
from ..call import xml_response as xml
from ..errors import EmulatorError
from ..instances import OWNER

__all__ = ["list_schemas", "create_schema", "get_schema", "drop_schema"]


def _schema_xml(meta: dict[str, Any]) -> str:
    created = rfc822(float(meta["created"]))
    return (
        f"<Schema><Name>{escape(meta['name'])}</Name><Owner>{OWNER}</Owner>"
        f"<Description>{escape(meta.get('comment') or '')}</Description>"
        f"<CreateTime>{created}</CreateTime><ModifyTime>{created}</ModifyTime>"
        f"<Type>MANAGED</Type></Schema>"
    )


async def list_schemas(call: Call) -> Response:
    """All schemas of the project in one page; ``name`` keeps those with that prefix."""
    catalog = call.state.catalog
    project = call.args["project"]
    prefix = call.params.get("name", "").lower()
    items = [
        _schema_xml(catalog.schema_meta(project, name))
        for name in catalog.list_schemas(project)
        if name.startswith(prefix)
    ]
    return xml(
        f"<Schemas><Marker></Marker><MaxItems>{len(items)}</MaxItems>{''.join(items)}</Schemas>"
    )


async def create_schema(call: Call) -> Response:
    """Create the schema the XML body names (its ``Description`` is kept as the comment)."""
    body = await call.body()
    try:
        root = ET.fromstring(body.decode("utf-8"))
    except (ET.ParseError, UnicodeDecodeError):
        raise EmulatorError.invalid_argument("the schema body is not valid XML") from None
    name = (root.findtext("Name") or "").strip()
    if not name:
        raise EmulatorError.invalid_argument("the schema body has no Name")
    comment = (root.findtext("Description") or "").strip()
    call.state.catalog.create_schema(call.args["project"], name, comment=comment)
    return Response(status_code=201)


async def get_schema(call: Call) -> Response:
    meta = call.state.catalog.schema_meta(call.args["project"], call.args["schema"])
    created = rfc822(float(meta["created"]))
    headers = {"x-odps-owner": OWNER, "x-odps-creation-time": created, "Last-Modified": created}
    return xml(_schema_xml(meta), headers=headers)


async def drop_schema(call: Call) -> Response:
    call.state.catalog.drop_schema(call.args["project"], call.args["schema"])
    return Response(status_code=204)
