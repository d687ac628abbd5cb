"""What the table sessions share: the table, partition, quota, tags and common headers."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from ..codec.compression import CompressOption
from ..codec.partition import PartitionSpec
from ..codec.record import Record
from ..codec.schema import TableSchema
from ..options import normalize_tags
from ..transport.resources import TableRef
from ..transport.rest import RestClient

__all__ = ["TableSession", "SessionStatus", "StatusEnum", "TUNNEL_VERSION"]

TUNNEL_VERSION = 6


class StatusEnum(enum.StrEnum):
    """Base of the session status enums: upper-case values, as pyodps's, that compare
    equal to their text (and so across the enums of different session kinds)."""

    @classmethod
    def parse(cls, value: Any) -> Any:
        """The status of a response; an unknown value is ``Unknown``, never an error."""
        try:
            return cls(str(value or "unknown").upper())
        except ValueError:
            return cls("UNKNOWN")


class SessionStatus(StatusEnum):
    """Session states of every session kind (upper-case values, as pyodps)."""

    Unknown = "UNKNOWN"
    Normal = "NORMAL"
    Initiating = "INITIATING"
    Closes = "CLOSES"
    Closing = "CLOSING"
    Closed = "CLOSED"
    Canceled = "CANCELED"
    Expired = "EXPIRED"
    Critical = "CRITICAL"
    Committing = "COMMITTING"
    Committed = "COMMITTED"
    Aborted = "ABORTED"
    Failed = "FAILED"


class TableSession:
    """Base of the table sessions: one table (and partition) through one tunnel client."""

    Status = SessionStatus
    id: str | None = None
    schema: TableSchema | None = None
    #: Headers every request of the session carries, after ``x-odps-tunnel-version``.
    _base_headers: Mapping[str, str] = {
        "odps-tunnel-date-transform": "v1",
        "odps-tunnel-sdk-support-schema-evolution": "true",
    }

    def __init__(
        self,
        client: RestClient,
        table: Any,
        partition_spec: str | PartitionSpec | None,
        compress_option: CompressOption | None = None,
        quota_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        self._client = client
        self._table = TableRef.of(table, client.project, client.schema)
        spec = PartitionSpec(partition_spec) if partition_spec else PartitionSpec()
        self._partition_spec = spec
        self._compress_option = compress_option
        self._quota_name = quota_name
        self._tags = normalize_tags(tags)
        self.status = SessionStatus.Unknown

    def __repr__(self) -> str:
        part = f" partition={self._partition_spec.to_param()}" if self._partition_spec else ""
        return f"<{type(self).__name__} id={self.id} table={self._table}{part}>"

    @property
    def table(self) -> TableRef:
        return self._table

    @property
    def partition_spec(self) -> PartitionSpec:
        return self._partition_spec

    @property
    def quota_name(self) -> str | None:
        return self._quota_name

    def _resource(self) -> str:
        return self._table.resource()

    def _label(self) -> str:
        """What the session reads or writes, as errors name it (``table`` context)."""
        return str(self._table)

    def _headers(
        self, content_length: int | None = None, chunked: bool = False, **extra: Any
    ) -> dict[str, Any]:
        headers: dict[str, Any] = {"x-odps-tunnel-version": TUNNEL_VERSION, **self._base_headers}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        if chunked:
            headers["Content-Type"] = "application/octet-stream"
        if self._tags:
            headers["odps-tunnel-tags"] = ",".join(self._tags)
        headers.update({k: v for k, v in extra.items() if v is not None})
        return headers

    def _params(self, *flags: str, **params: Any) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [(flag, "") for flag in flags]
        out += [(k, v) for k, v in params.items() if v is not None]
        if self._partition_spec:
            out.append(("partition", self._partition_spec.to_param()))
        if self._quota_name:
            out.append(("quotaName", self._quota_name))
        return out

    def _context(self, **extra: Any) -> dict[str, Any]:
        context = {
            "session_id": self.id,
            "table": self._label(),
            "partition": self._partition_spec.to_param() or None,
        }
        context.update(extra)
        return context

    def _request(
        self,
        method: str,
        *flags: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        resource: str | None = None,
        context: Mapping[str, Any] | None = None,
        **kw: Any,
    ):
        return self._client.request(
            method,
            resource or self._resource(),
            params=self._params(*flags, **(params or {})),
            headers=headers if headers is not None else self._headers(content_length=0),
            context=self._context(**(context or {})),
            **kw,
        )

    def new_record(self, values: list[Any] | None = None) -> Record:
        """A record of the session's schema (data columns, then partition columns)."""
        return Record(schema=self.schema, values=values)
