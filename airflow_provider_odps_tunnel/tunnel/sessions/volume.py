"""Volume upload and download sessions: the files of a partitioned volume.

Bodies use the CRC-32 framing of ``volume_framing`` and only ``deflate`` compression
(:mod:`..io.volume`). A file written into a partitioned volume is spooled as it streams
out and, after a broken connection, a 5xx or throttling, sent again whole (writing a file
name again replaces the file; appends are not sent again).

The requests are pyodps 0.13.2's (``odps/tunnel/volumetunnel.py``), header by header:
creating, reloading and committing send ``Content-Length: 0`` and the tags and no tunnel
version; writing a file and reading one add ``x-odps-tunnel-version: 4``. Reading asks for
``deflate`` unless the session's compression is ``RAW``, as pyodps does; a download
reload names the partition, an upload reload sends no parameters at all.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from ..codec.compression import CompressOption
from ..errors import TunnelError
from ..io.resend import send_resendable
from ..io.volume import VolumeReader, VolumeWriter, deflate_only
from ..options import normalize_tags
from ..transport.resources import project_resource, quote_name
from ..transport.rest import RestClient, open_body

__all__ = ["VolumeUploadSession", "VolumeDownloadSession", "format_file_name", "volume_headers"]

#: ``x-odps-tunnel-version`` of volume data requests (pyodps sends 4, Java 6).
VOLUME_DATA_VERSION = 4
# pyodps's Content-Type of a file write, its spelling kept (the service ignores it; Java
# sends text/plain): volumetunnel.py VolumeUploadSession.open.
_WRITE_CONTENT_TYPE = "test/plain"


def format_file_name(name: str) -> str:
    """A file name as the service wants it: relative, with single slashes."""
    if name.startswith("/"):
        raise TunnelError(f"file name {name!r} must not start with '/'")
    return re.sub("/+", "/", name)


def volume_headers(tags: list[str] | None, **extra: Any) -> dict[str, Any]:
    """The headers of a volume request: the tags, then ``extra`` (None values left out)."""
    headers: dict[str, Any] = {}
    if tags:
        headers["odps-tunnel-tags"] = ",".join(tags)
    headers.update({k: v for k, v in extra.items() if v is not None})
    return headers


class _VolumeSession:
    """What both volume sessions share: the volume, partition, quota and tags, and
    creating (a POST naming ``project/volume/partition/file_name``) or reattaching by id."""

    kind = ""

    def __init__(
        self,
        client: RestClient,
        volume: Any,
        partition_spec: str,
        session_id: str | None,
        file_name: str,
        compress_option: CompressOption | None,
        quota_name: str | None,
        tags: str | list[str] | None,
    ):
        self._client = client
        self.project_name = client.project
        self.volume_name = volume if isinstance(volume, str) else volume.name
        self.partition_spec = partition_spec
        self._compress_option = compress_option
        self._quota_name = quota_name
        self._tags = normalize_tags(tags)
        self.id: str | None = None
        if session_id is None:
            target = f"{self.project_name}/{self.volume_name}/{partition_spec}/{file_name}"
            resp = self._request(
                "POST",
                with_id=False,
                params={"type": "volumefile", "target": target, "quotaName": quota_name},
                retry_post=True,
            )
            self._load(resp.json())
        else:
            self.id = session_id
            self.reload()

    def _load(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def resource(
        self,
        client: RestClient | None = None,
        endpoint: str | None = None,
        with_schema: bool = False,
    ) -> str:
        """The URL of this kind of session (``.../tunnel/uploads`` or ``.../downloads``) on
        ``endpoint``, or on the endpoint of ``client`` (default: the session's)."""
        base = endpoint if endpoint is not None else (client or self._client).endpoint
        return base + self._path(with_id=False)

    def _path(self, with_id: bool = True) -> str:
        base = f"{project_resource(self.project_name)}/tunnel/{self.kind}"
        return f"{base}/{quote_name(self.id)}" if with_id else base

    def _context(self) -> dict[str, Any]:
        return {"session_id": self.id, "table": f"volume {self.volume_name}"}

    def _request(self, method: str, with_id: bool = True, **kw: Any) -> Any:
        """A request of the session; without ``headers``, the bodiless ones' headers."""
        kw.setdefault("headers", volume_headers(self._tags, **{"Content-Length": "0"}))
        return self._client.request(method, self._path(with_id), context=self._context(), **kw)


class VolumeUploadSession(_VolumeSession):
    """Uploads files into a volume partition; :meth:`commit` makes them visible."""

    kind = "uploads"

    class Status(enum.StrEnum):
        """States of an upload session (pyodps's ``VolumeUploadSession.Status``)."""

        UNKNOWN = "UNKNOWN"
        NORMAL = "NORMAL"
        CLOSING = "CLOSING"
        CLOSED = "CLOSED"
        CANCELED = "CANCELED"
        EXPIRED = "EXPIRED"
        CRITICAL = "CRITICAL"

    class UploadFile(NamedTuple):
        """A file the server holds for the session: its name and length in bytes."""

        file_name: str
        file_length: int

    def __init__(
        self,
        client: RestClient,
        volume: Any,
        partition_spec: str,
        upload_id: str | None = None,
        compress_option: CompressOption | None = None,
        quota_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        self.status = self.Status.UNKNOWN
        self.file_list: list[VolumeUploadSession.UploadFile] = []
        super().__init__(
            client, volume, partition_spec, upload_id, "", compress_option, quota_name, tags
        )

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("UploadID", self.id)
        self.status = _status(self.Status, data.get("Status"))
        self.file_list = [
            self.UploadFile(f["FileName"], int(f["FileLength"])) for f in data.get("FileList") or []
        ]

    def reload(self) -> None:
        """Fetch the session again (its status and the files the server holds)."""
        self._load(self._request("GET").json())

    def open(self, file_name: str, compress: bool = False, append: bool = False) -> VolumeWriter:
        """A writer of ``file_name`` (``append`` continues an existing file)."""
        option = deflate_only(self._compress_option or CompressOption()) if compress else None
        params = {
            "blockid": format_file_name(file_name),
            "resume": "" if append else None,
            "quotaName": self._quota_name,
        }
        headers = volume_headers(
            self._tags,
            **{
                "Content-Type": _WRITE_CONTENT_TYPE,
                "x-odps-tunnel-version": VOLUME_DATA_VERSION,
                "Content-Encoding": "deflate" if option else None,
            },
        )

        def post(chunks: Iterator[bytes]) -> Any:
            if append:  # a second append would add the bytes twice
                return self._request("POST", params=params, headers=headers, data=chunks)
            return send_resendable(
                chunks,
                lambda body, repeatable: self._request(
                    "POST", params=params, headers=headers, data=body, retry_post=repeatable
                ),
                f"volume file {file_name}",
            )

        return VolumeWriter(post, option)

    def commit(self, files: str | list[str]) -> None:
        """Commit: ``files`` must be exactly the files the server holds."""
        if not files:
            raise ValueError("files to commit are required")
        files = [files] if isinstance(files, str) else files
        wanted = {format_file_name(f) for f in files}
        self.reload()
        held = {f.file_name for f in self.file_list}
        if wanted != held:
            raise TunnelError(
                f"files to commit differ from the server's: missing on the server "
                f"{sorted(wanted - held)}, extra on the server {sorted(held - wanted)}",
                **self._context(),
            )
        self._load(self._request("PUT", params={"quotaName": self._quota_name}).json())


class VolumeDownloadSession(_VolumeSession):
    """Downloads one file of a volume partition; :meth:`open` reads a byte range."""

    kind = "downloads"

    class Status(enum.StrEnum):
        """States of a download session (pyodps's ``VolumeDownloadSession.Status``)."""

        UNKNOWN = "UNKNOWN"
        NORMAL = "NORMAL"
        CLOSED = "CLOSED"
        EXPIRED = "EXPIRED"

    def __init__(
        self,
        client: RestClient,
        volume: Any,
        partition_spec: str,
        file_name: str | None = None,
        download_id: str | None = None,
        compress_option: CompressOption | None = None,
        quota_name: str | None = None,
        tags: str | list[str] | None = None,
    ):
        self.status = self.Status.UNKNOWN
        self.file_name = file_name
        self.file_length = 0
        super().__init__(
            client,
            volume,
            partition_spec,
            download_id,
            file_name or "",
            compress_option,
            quota_name,
            tags,
        )

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("DownloadID", self.id)
        self.status = _status(self.Status, data.get("Status"))
        info = data.get("File") or {}
        self.file_name = info.get("FileName", self.file_name)
        self.file_length = int(info.get("FileLength") or 0)
        where = data.get("Partition") or {}
        self.volume_name = where.get("Volume", self.volume_name)
        self.partition_spec = where.get("Partition", self.partition_spec)

    def reload(self) -> None:
        """Fetch the session again (its status and the file's name and length)."""
        params = {"partition": self.partition_spec or None, "quotaName": self._quota_name}
        self._load(self._request("GET", params=params).json())

    def open(self, start: int = 0, length: int = sys.maxsize) -> VolumeReader:
        """A reader of ``length`` bytes from ``start`` (to the end by default).

        The request asks for ``deflate`` unless the session's compression is ``RAW``."""
        option = deflate_only(self._compress_option or CompressOption())
        headers = volume_headers(
            self._tags,
            **{
                "Content-Length": "0",
                "x-odps-tunnel-version": VOLUME_DATA_VERSION,
                "Accept-Encoding": "deflate" if option else None,
            },
        )

        def open_at(offset: int) -> BinaryIO:
            params = {
                "data": "",
                "range": f"({start + offset},{length - offset})",
                "quotaName": self._quota_name,
            }
            return open_body(self._request("GET", params=params, headers=headers, stream=True))

        return VolumeReader(open_at)


def _status(status_enum: type[enum.StrEnum], value: Any) -> Any:
    """The session status of a response; an unknown value is ``UNKNOWN``, never an error."""
    try:
        return status_enum(str(value or "UNKNOWN").upper())
    except ValueError:
        return status_enum("UNKNOWN")
