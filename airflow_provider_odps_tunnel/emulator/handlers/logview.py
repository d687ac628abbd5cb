"""The emulator's LogView page: what a SQL instance ran, how it went, what it returned.

The service's LogView address is ``<logview host>/logview/?h=<endpoint>&p=<project>&i=<id>
&token=<token>``; the emulator names itself as LogView host (``GET /api/logview/host``), so
that address, as pyodps's ``Instance.get_logview_address`` and our client build it, opens
this page in a browser. It shows the instance's status, owner and timings, each task's
status, timings, SQL text and result or error text, and the result's schema and row count.

A browser sends no signature, so the page is served without one (it is not under ``/api``);
the ``token`` is not checked: the emulator signs tokens but keeps no list of them.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any

from starlette.responses import HTMLResponse, Response

from ..call import Call
from ..errors import EmulatorError
from ..sql.results import QueryResult

__all__ = ["page"]

_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}"
)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        + " UTC"
    )


def _duration(item: dict[str, Any]) -> str:
    if not item.get("start") or not item.get("end"):
        return "-"
    return f"{item['end'] - item['start']:.3f} s"


def _document(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _rows(pairs: list[tuple[str, str]], css_id: str) -> str:
    cells = "".join(
        f'<tr><th>{escape(k)}</th><td data-field="{escape(k.lower())}">{escape(v)}</td></tr>'
        for k, v in pairs
    )
    return f'<table id="{css_id}">{cells}</table>'


def _tasks(instance: dict[str, Any]) -> str:
    parts = []
    for task in instance["tasks"]:
        summary = _rows(
            [
                ("Status", task["status"]),
                ("Start", _when(task.get("start"))),
                ("End", _when(task.get("end"))),
                ("Duration", _duration(task)),
            ],
            f"task-{escape(task['name'])}",
        )
        result = task.get("result") or ""
        parts.append(
            f"<h3>Task {escape(task['name'])} ({escape(task['type'])})</h3>{summary}"
            f'<h4>SQL</h4><pre class="sql">{escape(task.get("query") or "")}</pre>'
            + (f'<h4>Result text</h4><pre class="result">{escape(result)}</pre>' if result else "")
        )
    return "".join(parts)


def _result(instance: dict[str, Any]) -> str:
    if not instance.get("result"):
        return '<h2>Result</h2><p id="no-result">This instance has no query result.</p>'
    result = QueryResult.from_json(instance["result"])
    columns = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{escape(c.type.name)}</td></tr>"
        for c in result.schema.simple_columns
    )
    return (
        f'<h2>Result</h2><p>Rows: <span id="row-count">{result.rows}</span></p>'
        f'<table id="result-schema"><tr><th>Column</th><th>Type</th></tr>{columns}</table>'
    )


async def page(call: Call) -> Response:
    """``GET /logview/?p=<project>&i=<instance id>``: the instance's LogView page."""
    project, instance_id = call.params.get("p", ""), call.params.get("i", "")
    if not project or not instance_id:
        return _document(
            "LogView",
            "<h1>LogView</h1><p>The address names no project (p) or instance (i).</p>",
            400,
        )
    try:
        instance = call.state.instances.get(project, instance_id)
    except EmulatorError as exc:
        return _document("LogView", f"<h1>LogView</h1><p>{escape(exc.message)}</p>", exc.status)
    call.log["session"] = instance["id"]
    overview = _rows(
        [
            ("Instance", instance["id"]),
            ("Project", instance["project"]),
            ("Owner", instance["owner"]),
            ("Status", instance["status"]),
            ("Start", _when(instance.get("start"))),
            ("End", _when(instance.get("end"))),
            ("Duration", _duration(instance)),
        ],
        "instance",
    )
    body = (
        f"<h1>LogView: instance {escape(instance['id'])}</h1>{overview}"
        f"<h2>Tasks</h2>{_tasks(instance)}{_result(instance)}"
    )
    return _document(f"LogView {instance['id']}", body)
