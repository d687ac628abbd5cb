"""Which handler serves a request: by path shape, method and parameters (protocol §3.8).

Tunnel resources are told apart by the *presence* of parameters (``?data`` and ``?data=``
alike), so junk parameters pyodps adds (``curr_project``, ``reload=False``, ``uploads=1``)
never change the route. The ``/api`` prefix of the service endpoint is removed before this;
``on_service`` says whether it was there (``/logview/host`` exists only on the service
endpoint, the LogView page ``/logview/`` only outside it; everything else is served on
both, as one server is both endpoints).

A request naming a ``quotaName`` has that quota checked before its handler runs (see
``limits.check_quota``; off unless the emulator is given its list of quotas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response

from .call import Call, Handler
from .errors import EmulatorError
from .handlers import (
    download,
    instance_tunnel,
    instances,
    logview,
    preview,
    schemas,
    service,
    stream,
    tables,
    upload,
    upsert,
    volume,
    volume_rest,
)
from .limits import check_quota

__all__ = ["Route", "resolve"]


@dataclass
class Route:
    """A handler, the session kind it belongs to (for fault matching) and path arguments.

    ``public`` routes are served without a signature (pages a browser opens)."""

    handler: Handler
    kind: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    public: bool = False


def _unsupported(method: str, resource: str) -> EmulatorError:
    return EmulatorError(
        "InvalidArgument",
        f"The emulator does not serve {method} {resource} with these parameters",
        400,
    )


def _table_get(params: dict[str, str]) -> tuple[Handler, str | None]:
    """GET on a table without a session parameter: metadata, partitions or head rows."""
    if "partitions" in params:
        return tables.list_partitions, None
    if "data" in params:
        return tables.head, None
    if params.get("partition"):
        return tables.partition_meta, None
    return tables.table_meta, None


def _table_route(
    method: str, rest: list[str], params: dict[str, str]
) -> tuple[Handler, str | None]:
    sub = rest[0] if rest else ""
    has = params.__contains__
    if sub == "":
        if method == "POST" and has("downloads"):
            return download.create, "download"
        if method == "GET" and has("downloadid"):
            return (download.read if has("data") else download.reload), "download"
        if method == "POST" and has("uploads"):
            return upload.create, "upload"
        if method == "PUT" and has("uploadid"):
            return upload.write_block, "upload"
        if method == "GET" and has("uploadid"):
            return upload.reload, "upload"
        if method == "POST" and has("uploadid"):
            return upload.commit, "upload"
        if method == "GET":
            return _table_get(params)
    elif sub == "streams":
        if method == "POST":
            return (stream.abort if has("uploadid") else stream.create), "stream"
        if method == "GET" and has("uploadid"):
            return stream.reload, "stream"
        if method == "PUT" and has("uploadid"):
            return stream.write, "stream"
    elif sub == "upserts":
        if method == "POST":
            return (upsert.commit if has("upsertid") else upsert.create), "upsert"
        if method == "GET" and has("upsertid"):
            return upsert.reload, "upsert"
        if method == "PUT" and has("upsertid"):
            return upsert.write, "upsert"
        if method == "DELETE" and has("upsertid"):
            return upsert.abort, "upsert"
    elif sub == "preview" and method == "GET":
        return preview.preview, "preview"
    raise _unsupported(method, "/".join(["tables", "T", *rest]))


def _instance_route(method: str, params: dict[str, str]) -> tuple[Handler, str] | None:
    """``/projects/{p}/instances/{id}``: the instance tunnel, or the instance's REST."""
    if method == "POST" and "downloads" in params:
        return instance_tunnel.create, "instance"
    if method == "GET" and "downloadid" in params:
        handler = instance_tunnel.read if "data" in params else instance_tunnel.reload
        return handler, "instance"
    if method == "GET":
        return instances.get, "sql"
    if method == "PUT":
        return instances.stop, "sql"
    return None


def _schema_route(method: str, rest: list[str], args: dict[str, str], resource: str) -> Route:
    """``/projects/{p}/schemas`` (list, create) and ``/projects/{p}/schemas/{s}`` (get, drop)."""
    if len(rest) == 1:
        handler = {"GET": schemas.list_schemas, "POST": schemas.create_schema}.get(method)
    else:
        args["schema"] = rest[1]
        handler = {"GET": schemas.get_schema, "DELETE": schemas.drop_schema}.get(method)
    if handler is None:
        raise _unsupported(method, resource)
    return Route(handler, None, args)


def _quota_checked(handler: Handler) -> Handler:
    """``handler``, after the request's ``quotaName`` is checked against the known quotas."""

    async def checked(call: Call) -> Response:
        check_quota(call.state.config.quotas, call.params.get("quotaName"))
        return await handler(call)

    return checked


def resolve(method: str, resource: str, params: dict[str, str], on_service: bool = True) -> Route:
    """The route of a request; unknown paths raise a 404 error."""
    route = _route(method, resource, params, on_service)
    if params.get("quotaName"):
        route.handler = _quota_checked(route.handler)
    return route


def _route(method: str, resource: str, params: dict[str, str], on_service: bool) -> Route:
    parts = [p for p in resource.split("/") if p]
    if on_service and parts == ["logview", "host"] and method == "GET":
        return Route(service.logview_host)
    if not on_service and parts == ["logview"] and method == "GET":
        return Route(logview.page, public=True)
    if len(parts) < 2 or parts[0] != "projects":
        raise EmulatorError("NoSuchObject", f"Unknown resource {resource}", 404)
    args = {"project": parts[1]}
    rest = parts[2:]
    if not rest:
        if method == "GET":
            return Route(service.project_meta, None, args)
        raise _unsupported(method, resource)
    if rest[0] == "schemas" and len(rest) <= 2:
        return _schema_route(method, rest, args, resource)
    if rest[0] == "schemas" and len(rest) >= 3 and rest[2] == "tables":
        args["schema"] = rest[1]
        rest = rest[2:]
    if rest == ["tables"] and method == "GET":
        return Route(tables.list_tables, None, args)
    if rest[0] == "tables" and len(rest) >= 2 and len(rest) <= 3:
        args["table"] = rest[1]
        handler, kind = _table_route(method, rest[2:], params)
        return Route(handler, kind, args)
    if rest == ["instances"] and method == "POST":
        return Route(instances.create, "sql", args)
    if rest[0] == "instances" and len(rest) == 2:
        args["instance"] = rest[1]
        found = _instance_route(method, params)
        if found is not None:
            return Route(found[0], found[1], args)
        raise _unsupported(method, resource)
    if rest[0] == "volumes" and len(rest) <= 3:
        args.update(zip(("volume", "partition"), rest[1:], strict=False))
        found = volume_rest.route(method, rest[1:], params)
        if found is not None:
            return Route(found[0], found[1], args)
        raise _unsupported(method, resource)
    if rest == ["tunnel"] and method == "GET":
        return Route(service.tunnel_router, None, args)
    if rest == ["authorization"] and method == "POST":
        if "sign_bearer_token" in params:
            return Route(service.sign_bearer_token, None, args)
        return Route(instances.security_query, "sql", args)
    if rest == ["logs"] and method == "PUT":
        return Route(service.accept_logs, None, args)
    if rest[0] == "tunnel" and len(rest) in (2, 3) and rest[1] in ("uploads", "downloads"):
        if len(rest) == 3:
            args["session"] = rest[2]
        handler = volume.route(method, rest[1], len(rest) == 3, params)
        if handler is not None:
            return Route(handler, "volume", args)
        raise _unsupported(method, resource)
    raise EmulatorError("NoSuchObject", f"Unknown resource {resource}", 404)
