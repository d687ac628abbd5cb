"""Errors the emulator answers with, in the service's shape (protocol §8).

Every failure becomes an :class:`EmulatorError` carrying the service's error ``Code`` (which
pyodps maps onto its exception classes by name), a message and an HTTP status. The app
turns it into the JSON body ``{Code, Message, RequestId, HostId}`` plus the
``x-odps-request-id`` header.
"""

from __future__ import annotations

import json

from starlette.responses import Response

__all__ = ["EmulatorError", "error_response", "HOST_ID"]

HOST_ID = "odps-tunnel-emulator"


class EmulatorError(Exception):
    """A failure answered to the client as an ODPS error body."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = dict(headers or {})

    # Constructors for the errors answered in more than one place. Statuses the SDKs do not
    # pin down follow the suggestions of protocol §8.2.
    @classmethod
    def no_such_project(cls, project: str) -> EmulatorError:
        return cls("NoSuchProject", f"The specified project does not exist: {project}", 404)

    @classmethod
    def no_such_table(cls, project: str, table: str) -> EmulatorError:
        return cls("NoSuchTable", f"The specified table does not exist: {project}.{table}", 404)

    @classmethod
    def no_such_partition(cls, table: str, spec: str) -> EmulatorError:
        return cls(
            "NoSuchPartition", f"The specified partition does not exist: {table}({spec})", 404
        )

    @classmethod
    def invalid_argument(cls, message: str) -> EmulatorError:
        return cls("InvalidArgument", message, 400)

    @classmethod
    def status_conflict(cls, message: str) -> EmulatorError:
        return cls("StatusConflict", message, 409)


def error_response(error: EmulatorError, request_id: str) -> Response:
    """The JSON error body of ``error`` (protocol §8.1)."""
    body = {
        "Code": error.code,
        "Message": error.message,
        "RequestId": request_id,
        "HostId": HOST_ID,
    }
    headers = {"x-odps-request-id": request_id, **error.headers}
    return Response(
        json.dumps(body),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )
