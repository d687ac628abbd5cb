"""The ASGI application: request ids, routing, auth, fault injection, errors, request log.

Each request gets an id (answered in ``x-odps-request-id``), is routed by path shape and
parameters, possibly hit by an injected fault, authenticated (v2 signature and date skew),
admitted by the service model (latency, concurrent-stream limit; its bandwidth caps pace
the body both ways, see ``service_model``), then handled; any :class:`EmulatorError`
becomes the service's JSON error body and any other exception a 500
``InternalServerError``. Every request but the admin ones gets a line in the request log.
``/__emulator__/...`` are the emulator's own admin resources (faults, clock, health,
service model), never signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from .auth import verify_request
from .call import Call, json_response
from .errors import EmulatorError, error_response
from .faults import Fault, request_direction
from .ingest import ConnectionAborted
from .requestlog import public_params, retry_fields
from .routing import resolve
from .state import EmulatorState

__all__ = ["EmulatorApp", "SERVICE_PREFIX", "ADMIN_PREFIX"]

logger = logging.getLogger("odps_tunnel_emulator")

SERVICE_PREFIX = "/api"
ADMIN_PREFIX = "/__emulator__/"
_SESSION_PARAMS = ("uploadid", "downloadid", "upsertid")


class _Dropped(Exception):
    """The response was cut on purpose; the connection is already gone."""


def _abort_transport(receive: Any) -> None:
    """Drop the TCP connection under a request (uvicorn's receive is bound to its cycle)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()


def _session_of(params: dict[str, str], args: dict[str, str]) -> str | None:
    """The session (or instance) id a request names, if any."""
    for name in _SESSION_PARAMS:
        if params.get(name):
            return params[name]
    return args.get("session") or args.get("instance")


class EmulatorApp:
    """ASGI callable serving one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState):
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            request = Request(scope, receive)
            response = await self._admin(request, scope["path"][len(ADMIN_PREFIX) :])
            await response(scope, receive, send)
            return
        started = time.monotonic()
        counters = {"in": 0, "out": 0, "status": None}
        paced_receive, paced_send = self.state.service.pace(receive, send)

        async def counting_receive() -> dict:
            message = await paced_receive()
            counters["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                counters["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counters["out"] += len(message.get("body", b""))
            await paced_send(message)

        entry: dict[str, Any] = {}
        try:
            with contextlib.ExitStack() as held:  # a stream slot, given back after the answer
                await self._serve(scope, receive, counting_receive, counting_send, entry, held)
        finally:
            if self.state.request_log.enabled:
                entry.update(
                    status=counters["status"] or "connection dropped",
                    bytes_in=counters["in"],
                    bytes_out=counters["out"],
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
                self.state.request_log.write(entry)

    async def _serve(
        self,
        scope: dict,
        raw_receive: Any,
        receive: Any,
        send: Any,
        entry: dict[str, Any],
        held: contextlib.ExitStack,
    ) -> None:
        request = Request(scope, receive)
        request_id = time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:16]
        path = scope["path"]
        raw_path = scope.get("raw_path", path.encode()).decode("utf-8", "replace")
        is_service = path == SERVICE_PREFIX or path.startswith(SERVICE_PREFIX + "/")
        resource = path[len(SERVICE_PREFIX) :] if is_service else path
        raw_resource = raw_path[len(SERVICE_PREFIX) :] if is_service else raw_path
        raw_query = scope.get("query_string", b"").decode("utf-8", "replace")
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        method = scope["method"].upper()
        entry.update(
            time=round(time.time(), 3),
            request_id=request_id,
            method=method,
            path=path,
            params=public_params(params),
            **retry_fields(request.headers),
        )
        fault: Fault | None = None
        call: Call | None = None
        try:
            route = resolve(method, resource, params, on_service=is_service)
            session = _session_of(params, route.args)
            entry.update(kind=route.kind, session=session)
            target = f"{resource}?{raw_query}" if raw_query else resource
            fault = self.state.faults.match(method, target, route.kind, session)
            if fault is not None:
                entry["fault"] = fault.kind
            call = Call(
                self.state,
                request,
                method,
                resource,
                params,
                request_id,
                route.args,
                abort_connection=lambda: _abort_transport(raw_receive),
            )
            # Faults act like the network or a gateway: before authentication.
            await self._before(fault, call)
            if self.state.config.auth and not route.public:
                verify_request(
                    method,
                    raw_resource,
                    raw_query,
                    request.headers,
                    self.state.config.credentials,
                    time.time(),
                )
            await self.state.service.admit(method, route.kind, params, route.args, held)
            response = await route.handler(call)
        except EmulatorError as exc:
            response = error_response(exc, request_id)
            entry["error"] = exc.code
        except ConnectionAborted:
            logger.info("%s %s: connection dropped (fault)", method, path)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is answered as the service does
            logger.exception("%s %s failed", method, path)
            response = error_response(
                EmulatorError("InternalServerError", f"{type(exc).__name__}: {exc}", 500),
                request_id,
            )
            entry["error"] = "InternalServerError"
        finally:
            if call is not None and call.log:
                entry.update(call.log)
        response.headers["x-odps-request-id"] = request_id
        try:
            await response(scope, receive, self._wrap_send(fault, method, send, raw_receive))
        except Exception:  # noqa: BLE001 - includes groups wrapping _Dropped
            if fault is not None and fault.kind == "reset_after_bytes":
                return  # the connection was cut on purpose
            raise

    async def _before(self, fault: Fault | None, call: Call) -> None:
        """Apply the request-side part of a fault (raising ends the request)."""
        if fault is None:
            return
        args = fault.args
        if fault.kind == "status":
            status = int(args.get("status", 500))
            code = args.get("code") or (
                "InternalServerError" if status >= 500 else "InvalidArgument"
            )
            raise EmulatorError(code, args.get("message", "injected fault"), status)
        if fault.kind == "throttle":
            seconds = args.get("seconds", 1)
            raise EmulatorError(
                args.get("code", "FlowExceeded"),
                args.get("message", "Your flow quota is exceeded (injected fault)"),
                429,
                headers={"Retry-After": str(seconds)},
            )
        if fault.kind == "delay" and "point" not in args:
            await asyncio.sleep(float(args.get("seconds", 1.0)))
        elif fault.kind == "expire_session":
            for name in _SESSION_PARAMS:
                if call.params.get(name):
                    self.state.sessions.expire(call.params[name])
            if call.args.get("session"):
                self.state.sessions.expire(call.args["session"])
        elif fault.kind == "corrupt_crc" and request_direction(fault, call.method):
            call.corrupt_request_at = int(args.get("offset", -1))
        elif fault.kind == "reset_after_bytes" and request_direction(fault, call.method):
            limit = int(args.get("bytes", 0))
            if limit <= 0:
                call.abort_connection()
                raise ConnectionAborted()
            call.abort_request_after = limit

    def _wrap_send(self, fault: Fault | None, method: str, send: Any, receive: Any) -> Any:
        """Apply the response-side part of a fault to the body being sent."""
        if fault is None or fault.kind not in ("reset_after_bytes", "corrupt_crc"):
            return send
        if request_direction(fault, method):
            return send
        args = fault.args
        state = {"sent": 0, "done": False}

        async def wrapped(message: dict) -> None:
            if message["type"] != "http.response.body" or state["done"]:
                await send(message)
                return
            body = message.get("body", b"")
            if fault.kind == "corrupt_crc":
                if body:
                    offset = int(args.get("offset", len(body) // 2))
                    if 0 <= offset - state["sent"] < len(body):
                        at = offset - state["sent"]
                        body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
                        state["done"] = True
                    state["sent"] += len(message.get("body", b""))
                await send({**message, "body": body})
                return
            limit = int(args.get("bytes", 0))
            if state["sent"] + len(body) >= limit:
                keep = body[: max(limit - state["sent"], 0)]
                if keep:
                    await send({**message, "body": keep, "more_body": True})
                _abort_transport(receive)
                raise _Dropped()
            state["sent"] += len(body)
            await send(message)

        return wrapped

    async def _admin(self, request: Request, name: str) -> Response:
        """``faults`` (GET list, POST add, DELETE clear), ``clock`` (GET, POST), ``health``,
        ``service`` (GET: the service model's settings and the data streams in flight)."""
        faults = self.state.faults
        try:
            if name == "health":
                return json_response({"status": "ok", "port": self.state.port})
            if name == "service":
                return json_response(self.state.service.to_json())
            if name == "faults":
                if request.method == "POST":
                    spec = json.loads(await request.body() or b"{}")
                    fault = faults.add(**spec)
                    return json_response(fault.to_json())
                if request.method == "DELETE":
                    faults.clear()
                    return json_response({"cleared": True})
                return json_response(
                    {
                        "faults": [f.to_json() for f in faults.active],
                        "injected": faults.injected,
                        "counts": faults.counts,
                    }
                )
            if name == "clock":
                clock = self.state.clock
                if request.method == "POST":
                    spec = json.loads(await request.body() or b"{}")
                    if spec.get("reset"):
                        clock.reset()
                    if "set" in spec:
                        clock.set(float(spec["set"]))
                    if "advance" in spec:
                        clock.advance(float(spec["advance"]))
                return json_response({"now": clock.now(), "offset": clock.offset})
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"error": f"unknown admin resource {name!r}"}, status=404)
