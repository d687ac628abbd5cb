"""The exceptions of the tunnel client and codecs.

Every error is a :class:`TunnelError`. Its message ends with the context that locates the
failure: request id, session id, table, partition, block id, row range, or the byte offset
and row of a data stream. Errors answered by the service carry its ``code`` and HTTP
``status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TunnelError",
    "DataStreamError",
    "ChecksumError",
    "StreamTruncatedError",
    "DatetimeOverflowError",
    "RecordValidationError",
    "ServerError",
    "NoSuchObject",
    "NoSuchProject",
    "NoSuchTable",
    "NoSuchPartition",
    "NoSuchVolume",
    "NoSuchPath",
    "NoSuchSchema",
    "NoSuchDownload",
    "NoSuchUpload",
    "NoSuchInstance",
    "StreamSessionNotFound",
    "UpsertSessionNotFound",
    "StatusConflict",
    "InvalidRequest",
    "InvalidArgument",
    "InvalidParameter",
    "InvalidBlockID",
    "InvalidRowRange",
    "InvalidPartitionSpec",
    "MissingPartitionSpec",
    "InvalidColumnSpec",
    "InConsistentBlockList",
    "IncompleteBody",
    "MalformedDataStream",
    "CorruptedDataStream",
    "OverwriteModeNotAllowed",
    "MethodNotAllowed",
    "SchemaModified",
    "DataVersionConflict",
    "TableModified",
    "MetaTransactionFailed",
    "InstanceNotTerminate",
    "TaskFailed",
    "InstanceTypeNotSupported",
    "AuthError",
    "NoPermission",
    "AccessDenied",
    "Unauthorized",
    "SignatureNotMatch",
    "AuthorizationRequired",
    "AuthenticationRequestExpired",
    "RequestTimeTooSkewed",
    "Throttled",
    "FlowExceeded",
    "QPSExceeded",
    "SlotExceeded",
    "InternalServerError",
    "DataStoreError",
    "ServiceUnavailable",
    "SlotReassigned",
    "TunnelConnectionError",
    "TunnelTimeoutError",
    "BlockListMismatch",
    "CommitTimeout",
    "SessionStateError",
    "error_class_for",
    "parse_error_response",
]

_CONTEXT_FIELDS = (
    "code",
    "status",
    "request_id",
    "session_id",
    "table",
    "partition",
    "block_id",
    "row_range",
    "offset",
    "row",
)


class TunnelError(Exception):
    """Base of every tunnel error. Keyword context is kept as attributes and printed."""

    code: str | None = None

    def __init__(self, message: str, **context: Any):
        super().__init__(message)
        self.message = message
        for name in _CONTEXT_FIELDS:
            value = context.pop(name, None)
            if name == "code" and value is None:
                continue  # the class's own code stands
            setattr(self, name, value)
        if context:
            raise TypeError(f"unknown error context {sorted(context)}")

    def with_context(self, **context: Any) -> TunnelError:
        """Fill in context the raiser did not know (for example the session id); returns self."""
        for name, value in context.items():
            if name not in _CONTEXT_FIELDS:
                raise TypeError(f"unknown error context {name!r}")
            if getattr(self, name, None) is None:
                setattr(self, name, value)
        return self

    def __str__(self) -> str:
        parts = [
            f"{name}={getattr(self, name)}"
            for name in _CONTEXT_FIELDS
            if getattr(self, name, None) is not None
        ]
        return f"{self.message} [{', '.join(parts)}]" if parts else self.message

    def __reduce__(self):
        context = {n: getattr(self, n, None) for n in _CONTEXT_FIELDS}
        return (_rebuild, (type(self), self.message, context))


def _rebuild(cls: type[TunnelError], message: str, context: dict[str, Any]) -> TunnelError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message = message
    for name, value in context.items():
        setattr(err, name, value)
    return err


class DataStreamError(TunnelError):
    """A record or Arrow body is not well formed; ``offset`` and ``row`` say where."""

    code = "MalformedDataStream"


class ChecksumError(DataStreamError):
    """A record CRC, the stream checksum or an Arrow chunk CRC does not match."""

    code = "CorruptedDataStream"


class StreamTruncatedError(DataStreamError):
    """A body ended before its footer: rows may be missing."""


class DatetimeOverflowError(DataStreamError, OverflowError):
    """A well-formed date or time value that Python cannot hold (a DATETIME of year 0, the
    service's range starts there). Reading it again gives the same value, so readers do not
    re-open the body for it; like pyodps's error of this name it is an ``OverflowError``."""


class RecordValidationError(TunnelError, ValueError):
    """A value does not fit its column. Names the column, its type, the value and the row."""

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        column_type: str | None = None,
        value: Any = None,
        **context: Any,
    ):
        super().__init__(message, **context)
        self.column = column
        self.column_type = column_type
        self.value = value


# --- errors answered by the service (protocol §8) -----------------------------------------


class ServerError(TunnelError):
    """An error the service answered with. ``code`` is its error code; unknown codes are
    raised as this class itself. ``retry_after`` is the pause (seconds) the service asked
    for, from ``Retry-After`` or ``HoldClientMillis``; ``host_id`` the answering host."""

    retry_after: float | None = None
    host_id: str | None = None


class NoSuchObject(ServerError):
    """The named object does not exist (HTTP 404)."""

    code = "NoSuchObject"


class NoSuchProject(NoSuchObject):
    code = "NoSuchProject"


class NoSuchTable(NoSuchObject):
    code = "NoSuchTable"


class NoSuchPartition(NoSuchObject):
    code = "NoSuchPartition"


class NoSuchVolume(NoSuchObject):
    code = "NoSuchVolume"


class NoSuchPath(NoSuchObject):
    code = "NoSuchPath"


class NoSuchSchema(NoSuchObject):
    """An unknown schema (namespace) or stream ``schema_version``."""

    code = "NoSuchSchema"


class NoSuchDownload(NoSuchObject):
    code = "NoSuchDownload"


class NoSuchUpload(NoSuchObject):
    code = "NoSuchUpload"


class NoSuchInstance(NoSuchObject):
    code = "NoSuchInstance"


class StreamSessionNotFound(NoSuchObject):
    code = "StreamSessionNotFound"


class UpsertSessionNotFound(NoSuchObject):
    """The upsert session is gone; while a commit is polled this means it committed."""

    code = "UpsertSessionNotFound"


class StatusConflict(ServerError):
    """The session is expired, closed or already committed (HTTP 409)."""

    code = "StatusConflict"


class InvalidRequest(ServerError):
    """The request is not valid for the service (HTTP 400); retrying cannot help."""


class InvalidArgument(InvalidRequest):
    code = "InvalidArgument"


class InvalidParameter(InvalidRequest):
    code = "InvalidParameter"


class InvalidBlockID(InvalidRequest):
    """A block id outside 0..19999."""

    code = "InvalidBlockID"


class InvalidRowRange(InvalidRequest):
    code = "InvalidRowRange"


class InvalidPartitionSpec(InvalidRequest):
    code = "InvalidPartitionSpec"


class MissingPartitionSpec(InvalidRequest):
    """A partitioned table was addressed without a partition."""

    code = "MissingPartitionSpec"


class InvalidColumnSpec(InvalidRequest):
    code = "InvalidColumnSpec"


class InConsistentBlockList(InvalidRequest):
    code = "InConsistentBlockList"


class IncompleteBody(InvalidRequest):
    code = "IncompleteBody"


class MalformedDataStream(InvalidRequest, DataStreamError):
    """The service could not parse a body we sent."""

    code = "MalformedDataStream"


class CorruptedDataStream(InvalidRequest, ChecksumError):
    """The service found a checksum mismatch in a body we sent."""

    code = "CorruptedDataStream"


class OverwriteModeNotAllowed(InvalidRequest):
    code = "OverwriteModeNotAllowed"


class MethodNotAllowed(InvalidRequest):
    code = "MethodNotAllowed"


class SchemaModified(ServerError):
    """The table schema changed (HTTP 412); ``latest_schema_version`` is the new one."""

    code = "SchemaModified"
    latest_schema_version: str | None = None


class DataVersionConflict(ServerError):
    code = "DataVersionConflict"


class TableModified(ServerError):
    code = "TableModified"


class MetaTransactionFailed(ServerError):
    code = "MetaTransactionFailed"


class InstanceNotTerminate(ServerError):
    code = "InstanceNotTerminate"


class TaskFailed(ServerError):
    code = "TaskFailed"


class InstanceTypeNotSupported(ServerError):
    code = "InstanceTypeNotSupported"


class AuthError(ServerError):
    """Authentication or authorisation failed (HTTP 401/403)."""


class NoPermission(AuthError):
    code = "NoPermission"


class AccessDenied(AuthError):
    code = "AccessDenied"


class Unauthorized(AuthError):
    code = "Unauthorized"


class SignatureNotMatch(AuthError):
    code = "SignatureNotMatch"


class AuthorizationRequired(AuthError):
    code = "AuthorizationRequired"


class AuthenticationRequestExpired(AuthError):
    code = "AuthenticationRequestExpired"


class RequestTimeTooSkewed(AuthError):
    code = "RequestTimeTooSkewed"


class Throttled(ServerError):
    """The service is rate-limiting us (HTTP 429): retried after ``retry_after``."""


class FlowExceeded(Throttled):
    code = "FlowExceeded"


class QPSExceeded(Throttled):
    code = "QPSExceeded"


class SlotExceeded(Throttled):
    code = "SlotExceeded"


class InternalServerError(ServerError):
    """A server-side failure (HTTP 5xx): retried with exponential back-off."""

    code = "InternalServerError"


class DataStoreError(InternalServerError):
    code = "DataStoreError"


class ServiceUnavailable(InternalServerError):
    """A gateway or load balancer answered 502, 503 or 504 without an error code."""

    code = "ServiceUnavailable"


class SlotReassigned(ServerError):
    """HTTP 308 on an upsert write: the bucket moved to ``routed_server``."""

    code = "SlotReassigned"
    routed_server: str | None = None


# --- errors raised by the client itself ----------------------------------------------------


class TunnelConnectionError(TunnelError):
    """The connection failed (refused, reset, closed mid-body) and retries ran out."""


class TunnelTimeoutError(TunnelConnectionError, TimeoutError):
    """Connecting or reading timed out, or a polled state did not arrive in time."""


class BlockListMismatch(TunnelError):
    """``commit(blocks)`` names other blocks than the server holds.

    ``missing`` are blocks given to commit that the server does not have; ``extra`` are
    blocks the server has that commit was not given.
    """

    def __init__(self, message: str, *, missing=(), extra=(), **context: Any):
        super().__init__(message, **context)
        self.missing = sorted(missing)
        self.extra = sorted(extra)


class CommitTimeout(TunnelTimeoutError):
    """An upsert commit was still running when ``commit_timeout`` expired."""


class SessionStateError(TunnelError):
    """A session is in a state that does not allow the operation (e.g. expired)."""


def _codes() -> dict[str, type[ServerError]]:
    found: dict[str, type[ServerError]] = {}
    pending = [ServerError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        code = cls.__dict__.get("code")
        if code:
            found[code.lower()] = cls
    return found


_BY_CODE = _codes()
# Numeric ODPS codes whose meaning is documented (protocol §2.2).
_BY_PREFIX = {"ODPS-0410051": InvalidParameter}
_BY_STATUS: dict[int, type[ServerError]] = {
    308: SlotReassigned,
    400: InvalidRequest,
    401: Unauthorized,
    403: NoPermission,
    404: NoSuchObject,
    409: StatusConflict,
    412: SchemaModified,
    429: Throttled,
    500: InternalServerError,
    502: ServiceUnavailable,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


def error_class_for(code: str | None, status: int | None = None) -> type[ServerError]:
    """The class for a service error ``code``; without a known code, one from ``status``.

    Throttling by status alone is :class:`Throttled`; an unknown code is
    :class:`ServerError` unless the status says more (5xx, 429, 404). A 308 is always
    :class:`SlotReassigned`, whatever its code, as the java SDK treats it.
    """
    if status == 308:
        return SlotReassigned
    if code:
        cls = _BY_CODE.get(code.strip().lower())
        if cls is not None:
            return cls
        for prefix, cls in _BY_PREFIX.items():
            if code.startswith(prefix):
                return cls
    if status is not None and (status in (429, 404) or status >= 500 or not code):
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return InternalServerError
    return ServerError


def _parse_body(body: bytes) -> dict[str, Any]:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return {}
    if text.startswith("<"):
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return {"Message": text[:500]}
        return {child.tag: (child.text or "") for child in root}
    try:
        data = json.loads(text)
    except ValueError:
        return {"Message": text[:500]}
    return data if isinstance(data, dict) else {"Message": text[:500]}


def _retry_after(headers: Mapping[str, str], fields: Mapping[str, Any]) -> float | None:
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    hold = fields.get("HoldClientMillis")
    if hold not in (None, ""):
        try:
            return max(0.0, float(hold) / 1000.0)
        except (TypeError, ValueError):
            pass
    return None


def parse_error_response(
    status: int, headers: Mapping[str, str], body: bytes, **context: Any
) -> ServerError:
    """The exception for an error response: a JSON or XML body (``Code``, ``Message``,
    ``RequestId``, ``HostId``, ``HoldClientMillis``), or an empty one, plus the headers."""
    fields = _parse_body(body)
    code = fields.get("Code") or fields.get("code") or None
    message = fields.get("Message") or fields.get("message") or f"HTTP {status}"
    request_id = headers.get("x-odps-request-id") or fields.get("RequestId")
    cls = error_class_for(code, status)
    err = cls(
        message,
        code=code or cls.code,
        status=status,
        request_id=request_id,
        **{k: v for k, v in context.items() if v is not None},
    )
    err.host_id = fields.get("HostId")
    err.retry_after = _retry_after(headers, fields)
    if isinstance(err, SchemaModified):
        err.latest_schema_version = headers.get("odps-tunnel-latest-schema-version")
    if isinstance(err, SlotReassigned):
        err.routed_server = headers.get("odps-tunnel-routed-server")
    return err
