"""SQL instances on the service endpoint: submit, status, task statuses, task results.

``POST /projects/{p}/instances`` takes pyodps's ``<Instance><Job>`` XML, records the
instance and runs it on the worker pool; the answer (``201`` with ``Location``) waits for
the job up to ``instance_wait`` seconds, so pyodps's ``wait_for_success`` normally finds it
terminated at its first poll instead of sleeping. Then:

* ``GET .../instances/{id}``: status XML (``Running``/``Terminated``) and the owner and
  time headers pyodps reads;
* ``GET ...?taskstatus``: each task's status (``Success``, ``Failed``, ...);
* ``GET ...?result``: each task's text result: a query's first rows as CSV with a result
  descriptor, ``OK`` for other statements, or the service's ``ODPS-xxxxxxx`` error text;
* ``GET ...?source``: the submitted ``<Job>`` XML;
* ``PUT .../instances/{id}`` with ``<Instance><Status>Terminated</Status></Instance>``
  (pyodps's ``Instance.stop``): stops a running instance, its unfinished tasks end
  ``Cancelled``; an instance that already ended is left as it is (answered ``200`` either
  way: inferred, the service's answer to a second stop is not documented).

``POST /projects/{p}/authorization`` (pyodps's ``run_security_query``) runs the one
security statement the emulator knows, ``setproject key=value [key=value ...]``: it sets
project properties such as ``odps.sql.timezone`` (the SQL time zone), answered with the
JSON result ``{}`` pyodps parses (inferred).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from starlette.responses import Response

from ..call import Call, rfc822
from ..call import xml_response as xml
from ..errors import EmulatorError
from ..instances import hold_seconds, parse_job
from ..sql import SqlError
from ..sql.results import QueryResult
from ..sql.zoned import TIMEZONE_KEY, check_zone

__all__ = ["create", "get", "stop", "security_query"]


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _times(item: dict[str, Any]) -> str:
    out = ""
    if item.get("start"):
        out += f"<StartTime>{rfc822(item['start'])}</StartTime>"
    if item.get("end"):
        out += f"<EndTime>{rfc822(item['end'])}</EndTime>"
    return out


async def create(call: Call) -> Response:
    """Submit a job; answers once it finished or ``instance_wait`` seconds passed, at once
    for a job a task of which is held (``emulator.hold.seconds``: a long job)."""
    state = call.state
    project = call.args["project"]
    if not state.catalog.project_exists(project):
        raise EmulatorError.no_such_project(project)
    job_xml, tasks = parse_job(await call.body())
    instance = await call.blocking(state.instances.create, project, job_xml, tasks)
    call.log["session"] = instance["id"]
    running = asyncio.get_running_loop().run_in_executor(
        state.executor, state.instances.run, instance["id"]
    )
    held = any(hold_seconds(task.get("settings")) > 0 for task in tasks)
    # Still running after the wait: status polling will see it finish.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(running), 0 if held else state.config.instance_wait)
    base = str(call.request.base_url).rstrip("/")
    location = f"{base}/api/projects/{project}/instances/{instance['id']}"
    return Response(status_code=201, headers={"Location": location})


def _status_xml(instance: dict[str, Any]) -> str:
    return (
        f"<Instance><Name>{instance['id']}</Name><Owner>{escape(instance['owner'])}</Owner>"
        f"{_times(instance)}<Status>{instance['status']}</Status></Instance>"
    )


def _task_status_xml(instance: dict[str, Any]) -> str:
    tasks = "".join(
        f"<Task Type={quoteattr(t['type'])}><Name>{escape(t['name'])}</Name>{_times(t)}"
        f"<Status>{t['status']}</Status></Task>"
        for t in instance["tasks"]
    )
    return f"<Instance><Status>{instance['status']}</Status><Tasks>{tasks}</Tasks></Instance>"


def _descriptor(result: QueryResult) -> str:
    columns = [{"Name": c.name, "Type": c.type.name} for c in result.schema.simple_columns]
    return json.dumps(
        {
            "IsSelect": True,
            "SelectResultStatus": "TRUNCATED" if result.truncated else "COMPLETE",
            "Schema": {"Columns": columns},
        }
    )


def _result_xml(instance: dict[str, Any]) -> str:
    result = QueryResult.from_json(instance["result"]) if instance["result"] else None
    parts = []
    for task in instance["tasks"]:
        is_query = result is not None and task.get("has_result", False)
        extra = ""
        if is_query:
            extra = f"<ResultDescriptor>{_cdata(_descriptor(result))}</ResultDescriptor>"
        fmt = "csv" if is_query else "text"
        parts.append(
            f"<Task Type={quoteattr(task['type'])}><Name>{escape(task['name'])}</Name>"
            f"<Status>{task['status']}</Status>"
            f'<Result Format="{fmt}">{_cdata(task["result"])}</Result>{extra}</Task>'
        )
    return f"<Instance><Tasks>{''.join(parts)}</Tasks></Instance>"


async def get(call: Call) -> Response:
    """Status (default), ``taskstatus``, ``result`` or ``source`` of an instance."""
    instance = call.state.instances.get(call.args["project"], call.args["instance"])
    call.log["session"] = instance["id"]
    if "taskstatus" in call.params:
        return xml(_task_status_xml(instance))
    if "result" in call.params:
        return xml(_result_xml(instance))
    if "source" in call.params:
        return xml(instance["job"])
    headers = {"x-odps-owner": instance["owner"], "x-odps-start-time": rfc822(instance["start"])}
    if instance.get("end"):
        headers["x-odps-end-time"] = rfc822(instance["end"])
    return xml(_status_xml(instance), headers=headers)


async def stop(call: Call) -> Response:
    """``PUT`` of the instance's status: only ``Terminated`` (stop it) is accepted."""
    try:
        wanted = (ElementTree.fromstring(await call.body()).findtext("Status") or "").strip()
    except ElementTree.ParseError as exc:
        raise EmulatorError("InvalidXmlRequest", f"the body is not XML: {exc}") from None
    if wanted != "Terminated":
        raise EmulatorError.invalid_argument(
            f"an instance's status can only be set to Terminated, not {wanted!r}"
        )
    instance = await call.blocking(
        call.state.instances.stop, call.args["project"], call.args["instance"]
    )
    call.log["session"] = instance["id"]
    return Response(status_code=200)


def _setproject(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of a ``setproject`` statement."""
    words = text.strip().rstrip(";").split(None, 1)
    if not words or words[0].lower() != "setproject":
        raise EmulatorError.invalid_argument(
            "the emulator runs only 'setproject key=value' security queries"
        )
    pairs = {}
    for item in (words[1] if len(words) > 1 else "").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EmulatorError.invalid_argument(f"setproject expects key=value, got {item!r}")
        pairs[key] = value
    return pairs


async def security_query(call: Call) -> Response:
    """``POST /projects/{p}/authorization``: ``setproject`` sets project properties."""
    project = call.args["project"]
    if not call.state.catalog.project_exists(project):
        raise EmulatorError.no_such_project(project)
    try:
        query = ElementTree.fromstring(await call.body()).findtext("Query") or ""
    except ElementTree.ParseError as exc:
        raise EmulatorError("InvalidXmlRequest", f"the body is not XML: {exc}") from None
    pairs = _setproject(query)
    if TIMEZONE_KEY in pairs:
        try:
            check_zone(pairs[TIMEZONE_KEY])
        except SqlError as exc:
            raise EmulatorError.invalid_argument(exc.detail) from None
    for key, value in pairs.items():
        await call.blocking(call.state.catalog.set_project_property, project, key, value)
    return xml("<Authorization><Result>{}</Result></Authorization>")
