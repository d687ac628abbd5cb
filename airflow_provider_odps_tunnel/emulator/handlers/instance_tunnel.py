"""The instance tunnel (protocol §3.6): download sessions of a SQL query's result.

``POST /projects/{p}/instances/{id}?downloads`` opens a session on the instance's result
(``InstanceNotTerminate`` while it runs, ``InstanceTypeNotSupported`` when the instance
produced no query result, ``TaskFailed`` when it failed); with
``instance_tunnel_limit_enabled`` the session holds at most ``instance_result_limit``
(10,000) rows, as the service's limited mode does. In a protected project (the service's
project protection; ``EmulatorConfig.protected_projects``) only that limited mode is
allowed: an unlimited session is refused with 403 ``NoPermission``, which pyodps answers by
warning and opening a limited session when the caller left ``limit`` unset. Reads are
table-download reads of the result files, except that Arrow bodies carry TIMESTAMP values
as ``struct<sec, nano>``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema

from ..call import Call, json_response
from ..catalog import DataFile
from ..errors import EmulatorError
from ..limits import names
from ..sql.results import QueryResult
from .reading import check_readable, row_range, rows_response, selected_columns

__all__ = ["create", "reload", "read"]

KIND = "instance_download"


def session_json(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "DownloadID": session["id"],
        "Status": "expired" if session["status"] == "expired" else "normal",
        "RecordCount": session["rows"],
        "Schema": session["schema"],
        "QuotaName": session.get("quota", ""),
        "SupportReadByRawSize": False,
    }


async def create(call: Call) -> Response:
    """``POST /projects/{p}/instances/{id}?downloads[&instance_tunnel_limit_enabled]``."""
    state = call.state
    instance = state.instances.get(call.args["project"], call.args["instance"])
    if instance["status"] != "Terminated":
        raise EmulatorError("InstanceNotTerminate", "The instance does not terminate", 400)
    failed = [t for t in instance["tasks"] if t["status"] != "Success"]
    if failed:
        raise EmulatorError("TaskFailed", f"The task failed: {failed[0]['result']}", 400)
    if instance["result"] is None:
        raise EmulatorError(
            "InstanceTypeNotSupported",
            "The instance has no query result: only SELECT results can be downloaded",
            400,
        )
    limited = call.flag("instance_tunnel_limit_enabled")
    if not limited:
        _check_unprotected(call)
    result = QueryResult.from_json(instance["result"])
    rows = result.rows
    if limited:
        rows = min(rows, state.config.instance_result_limit)
    session = call.new_session(
        KIND,
        call.session_params(),
        {
            "project": instance["project"],
            "table_id": instance["id"],
            "files": [f.to_json() for f in result.files],
            "rows": rows,
            "schema": result.schema.to_json(),
        },
    )
    return json_response(session_json(session))


def _check_unprotected(call: Call) -> None:
    """Refuse an unlimited download in a protected project (403 ``NoPermission``)."""
    project = call.args["project"]
    if project in (names(call.state.config.protected_projects) or ()):
        raise EmulatorError(
            "NoPermission",
            f"You have no privilege to download the full result of instance "
            f"{call.args['instance']}: project {project} is protected (project protection); "
            f"only the limited mode (instance_tunnel_limit_enabled, at most "
            f"{call.state.config.instance_result_limit} rows) is allowed",
            403,
        )


def _session(call: Call) -> dict[str, Any]:
    return call.state.sessions.get(KIND, call.session_id("downloadid"), call.args["instance"])


async def reload(call: Call) -> Response:
    """``GET /projects/{p}/instances/{id}?downloadid=``."""
    return json_response(session_json(_session(call)))


async def read(call: Call) -> Response:
    """``GET ...?downloadid=&data&rowrange=(s,c)[&columns=][&arrow]``."""
    session = _session(call)
    check_readable(session, "download")
    instance_id = call.args["instance"]
    schema = TableSchema.from_json(session["schema"])
    start, count = row_range(call, session["rows"])
    selected = selected_columns(call, schema, f"the result of instance {instance_id}")
    files = [DataFile.from_json(f) for f in session["files"]]
    data_dir = call.state.instances.result_dir(instance_id)
    return rows_response(
        call, data_dir, files, schema, start, count, selected, timestamp_as_struct=True
    )
