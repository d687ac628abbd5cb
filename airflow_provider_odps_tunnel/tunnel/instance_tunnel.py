"""``InstanceTunnel``: reading the result of a SQL instance, by row ranges.

The session works like a table download session (same readers, same resume), on the
instance's resource. Arrow bodies of instance results carry timestamps as
``struct<sec, nano>``, which the reader turns into Arrow timestamps. When the project
refuses an unlimited result download (``NoPermission``), the session is created again with
``instance_tunnel_limit_enabled``, which caps the result at 10,000 rows, as pyodps does.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .errors import NoPermission
from .sessions.table_base import TUNNEL_VERSION, SessionStatus, TableSession
from .sessions.table_download import OnException, TableDownloadSession
from .transport.resources import TableRef, instance_resource
from .transport.rest import RestClient

__all__ = ["InstanceTunnel", "InstanceDownloadSession"]

log = logging.getLogger(__name__)


class InstanceDownloadSession(TableDownloadSession):
    """A download session of an instance's result (create with
    :meth:`InstanceTunnel.create_download_session`); ``id`` reattaches to it."""

    _kind = "instance download"
    _unusable_states = (SessionStatus.Expired, SessionStatus.Failed)

    def __init__(
        self,
        client: RestClient,
        instance: Any,
        download_id: str | None = None,
        limit: bool | None = None,
        compress_option: CompressOption | None = None,
        quota_name: str | None = None,
        timeout: float | None = None,
        tags: str | list[str] | None = None,
        **kw: Any,
    ):
        self.instance_id = instance if isinstance(instance, str) else instance.id
        TableSession.__init__(
            self,
            client,
            TableRef(client.project, self.instance_id),
            None,
            compress_option,
            quota_name,
            tags,
        )
        self._limit_enabled = bool(limit if limit is not None else kw.get("limit_enabled"))
        self.count = 0
        self.support_read_by_raw_size = False
        if download_id is None:
            self._create(False, timeout)
        else:
            self.id = download_id
            self.reload()

    def __repr__(self) -> str:
        return f"<InstanceDownloadSession id={self.id} instance={self.instance_id}>"

    def _resource(self) -> str:
        return instance_resource(self._table.project, self.instance_id)

    def _headers(self, content_length: int | None = None, chunked: bool = False, **extra: Any):
        headers: dict[str, Any] = {"x-odps-tunnel-version": TUNNEL_VERSION}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        if self._tags:
            headers["odps-tunnel-tags"] = ",".join(self._tags)
        headers.update({k: v for k, v in extra.items() if v is not None})
        return headers

    def _context(self, **extra: Any) -> dict[str, Any]:
        context = {"session_id": self.id, "table": f"instance {self.instance_id}"}
        context.update(extra)
        return context

    def _create(self, async_mode: bool, timeout: float | None) -> None:
        params = {"instance_tunnel_limit_enabled": "" if self._limit_enabled else None}
        try:
            resp = self._request("POST", "downloads", params=params, retry_post=True)
        except NoPermission:
            if self._limit_enabled:
                raise
            log.warning(
                "unlimited download of instance %s refused; retrying limited to 10000 rows",
                self.instance_id,
            )
            self._limit_enabled = True
            return self._create(async_mode, timeout)
        self._load(resp.json())

    def open_record_reader(
        self,
        start: int,
        count: int,
        compress: bool = False,
        columns: list[str] | None = None,
        buffered: bool = False,
        buffer_size: int | None = None,
        row_batch_size: int | None = None,
        on_exception: OnException = None,
        **_: Any,
    ) -> Any:
        """A reader of result rows ``start .. start+count`` as records."""
        return super().open_record_reader(
            start,
            count,
            compress=compress,
            columns=columns,
            append_partitions=False,
            buffered=buffered,
            buffer_size=buffer_size,
            row_batch_size=row_batch_size,
            on_exception=on_exception,
        )

    def open_arrow_reader(
        self,
        start: int,
        count: int,
        compress: bool = False,
        columns: list[str] | None = None,
        on_exception: OnException = None,
        **_: Any,
    ) -> Any:
        """A reader of result rows ``start .. start+count`` as Arrow batches (instance
        results carry timestamps as ``struct<sec, nano>``)."""
        return self._arrow_reader(
            start, count, compress, columns, on_exception, timestamp_as_struct=True
        )


class InstanceTunnel(BaseTunnel):
    """Creates (or reattaches to) download sessions of instance results."""

    def create_download_session(
        self,
        instance: Any,
        download_id: str | None = None,
        limit: bool | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        timeout: float | None = None,
        tags: str | list[str] | None = None,
        **kw: Any,
    ) -> InstanceDownloadSession:
        """A download session of ``instance`` (an id or an object with ``id``)."""
        return InstanceDownloadSession(
            self.tunnel_rest,
            instance,
            download_id=download_id,
            limit=limit,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            quota_name=self._quota_name,
            timeout=timeout,
            tags=tags,
            **kw,
        )
