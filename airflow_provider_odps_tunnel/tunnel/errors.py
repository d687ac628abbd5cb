"""The exceptions of the tunnel client and codecs.

Every error is a :class:`TunnelError`. Its message ends with the context that locates the
failure: request id, session id, table, partition, block id, row range, or the byte offset
and row of a data stream. Errors answered by the service carry its ``code`` and HTTP
``status``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TunnelError",
    "DataStreamError",
    "ChecksumError",
    "StreamTruncatedError",
    "RecordValidationError",
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
            if name == "code" and context.get(name) is None:
                continue
            setattr(self, name, context.pop(name, None))
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
