"""Download sessions of a SQL instance's result, read by row ranges.

The session works like a table download session (same creation, reload, readers and
resume: :class:`~.table_download.DownloadSessionBase`), on the instance's resource. Arrow
bodies of instance results carry timestamps as ``struct<sec, nano>``, which the reader
turns into Arrow timestamps. When the project refuses an unlimited result download
(``NoPermission``), the session is created again with ``instance_tunnel_limit_enabled``,
which caps the result at 10,000 rows, as pyodps's ``Instance.open_reader`` does when no
``limit`` was given; an explicit ``limit=False`` raises the refusal instead.
"""

from __future__ import annotations

import logging
from typing import Any

from ..codec.compression import CompressOption
from ..errors import NoPermission
from ..transport.resources import TableRef, instance_resource
from ..transport.rest import RestClient
from .table_base import StatusEnum
from .table_download import DownloadSessionBase, OnException

__all__ = ["InstanceDownloadSession", "InstanceDownloadStatus"]

log = logging.getLogger(__name__)


class InstanceDownloadSession(DownloadSessionBase):
    """A download session of an instance's result (create with
    :meth:`InstanceTunnel.create_download_session`); ``id`` reattaches to it.

    ``limit`` (or its older name ``limit_enabled``) asks for the service's limited result
    (at most 10,000 rows); None (not given) falls back to it when the project refuses an
    unlimited download, False never does. ``project`` is the instance's project (default:
    the client's). ``timeout`` is accepted for compatibility (the client's read timeout
    applies).
    """

    class Status(StatusEnum):
        """The states of an instance download session, as pyodps names them."""

        Unknown = "UNKNOWN"
        Normal = "NORMAL"
        Closes = "CLOSES"
        Expired = "EXPIRED"
        Failed = "FAILED"
        Initiating = "INITIATING"

    _kind = "instance download"
    _unusable_states = (Status.Expired, Status.Failed)
    _base_headers: dict[str, str] = {}

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
        *,
        limit_enabled: bool | None = None,
        project: str | None = None,
    ):
        self.instance_id = instance if isinstance(instance, str) else instance.id
        self._limit = limit if limit is not None else limit_enabled
        self._limit_enabled = bool(self._limit)
        super().__init__(
            client,
            TableRef(project or _instance_project(instance) or client.project, self.instance_id),
            None,
            download_id,
            compress_option,
            quota_name,
            tags,
        )

    def __repr__(self) -> str:
        return f"<InstanceDownloadSession id={self.id} instance={self.instance_id}>"

    @property
    def project(self) -> str:
        """The instance's project."""
        return self._table.project

    def _resource(self) -> str:
        return instance_resource(self._table.project, self.instance_id)

    def _label(self) -> str:
        return f"instance {self.instance_id}"

    def _create(self) -> None:
        params = {"instance_tunnel_limit_enabled": "" if self._limit_enabled else None}
        try:
            resp = self._request("POST", "downloads", params=params, retry_post=True)
        except NoPermission as exc:
            if self._limit_enabled:
                raise
            if self._limit is not None:
                raise NoPermission(
                    f"the project refuses an unlimited download of the result of instance "
                    f"{self.instance_id} and limit=False forbids the 10,000-row fallback "
                    f"(pass limit=True to accept it): {exc.message}",
                    code=exc.code,
                    status=exc.status,
                    request_id=exc.request_id,
                    **self._context(),
                ) from exc
            log.warning(
                "unlimited download of instance %s refused; retrying limited to 10000 rows",
                self.instance_id,
            )
            self._limit_enabled = True
            return self._create()
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
        """A reader of result rows ``start .. start+count`` as records; ``buffered`` reads
        by requests of ``row_batch_size`` rows (and ``buffer_size`` bytes when the session
        supports it). Other keywords are ignored, as by pyodps."""
        return self._record_reader(
            start,
            count,
            compress,
            columns,
            False,
            buffered,
            row_batch_size,
            on_exception,
            buffer_size,
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


def _instance_project(instance: Any) -> str | None:
    """The project of an instance object (pyodps ``Instance.project`` or a name), if any."""
    owner = getattr(instance, "project", None)
    name = getattr(owner, "name", owner)
    return name if isinstance(name, str) else None


#: pyodps's module-level name of the instance download session states.
InstanceDownloadStatus = InstanceDownloadSession.Status
