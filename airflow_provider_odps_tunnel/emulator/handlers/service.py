"""Service-endpoint (``/api``) resources around the tunnel that are not tables or SQL.

* ``GET /projects/{p}/tunnel?service``: the tunnel endpoint as ``host:port`` text (protocol §1.1).
* ``GET /projects/{p}``: project metadata XML (how pyodps tests that a project exists),
  with the project's properties (``setproject`` sets them, see ``instances.py``).
* Volumes (``/projects/{p}/volumes...``) are in ``volume_rest.py``.
* ``GET /logview/host``: the logview host pyodps builds ``instance.get_logview_address()``
  from; the emulator has no logview, so the URL is only a string pointing at itself.
* ``POST /projects/{p}/authorization?sign_bearer_token``: a token for that logview URL.
* ``PUT /projects/{p}/logs``: pyodps's usage reports, accepted and dropped.
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from starlette.responses import Response

from ..call import Call, rfc822
from ..call import xml_response as xml
from ..errors import EmulatorError
from ..instances import OWNER

__all__ = [
    "tunnel_router",
    "project_meta",
    "logview_host",
    "sign_bearer_token",
    "accept_logs",
]


def _require_project(call: Call) -> str:
    project = call.args["project"]
    if not call.state.catalog.project_exists(project):
        raise EmulatorError.no_such_project(project)
    return project


async def tunnel_router(call: Call) -> Response:
    """The tunnel server address, plain text without a scheme."""
    _require_project(call)
    return Response(call.state.server_address, media_type="text/plain")


async def project_meta(call: Call) -> Response:
    """Project XML plus the owner and time headers pyodps's ``Project.reload`` reads."""
    project = call.args["project"]
    created = rfc822(call.state.catalog.project_created(project))
    headers = {"x-odps-owner": OWNER, "x-odps-creation-time": created, "Last-Modified": created}
    properties = "".join(
        f"<Property><Name>{escape(k)}</Name><Value>{escape(v)}</Value></Property>"
        for k, v in sorted(call.state.catalog.project_properties(project).items())
    )
    return xml(
        f"<Project><Name>{escape(project)}</Name><Type>managed</Type>"
        f"<Comment></Comment><State>AVAILABLE</State><Owner>{OWNER}</Owner>"
        f"<ProjectGroupName></ProjectGroupName><Properties>{properties}</Properties></Project>",
        headers=headers,
    )


async def logview_host(call: Call) -> Response:
    return Response(f"http://{call.state.server_address}", media_type="text/plain")


async def sign_bearer_token(call: Call) -> Response:
    _require_project(call)
    return xml(f"<Authorization><Result>emulator-{uuid.uuid4().hex}</Result></Authorization>")


async def accept_logs(call: Call) -> Response:
    await call.request.body()
    return Response(status_code=200)
