"""Volume tunnels: files of partitioned volumes (sessions) and of file-system volumes.

The sessions are in :mod:`.sessions.volume`, the readers and writers in :mod:`.io.volume`
(both re-exported here under their old names). Readers verify every chunk and resume at
the current byte after a broken connection, by asking for the rest of the range again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO
from xml.etree import ElementTree

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .errors import TunnelError
from .io.volume import VolumeFSWriter, VolumeReader, VolumeWriter, deflate_only
from .options import normalize_tags
from .sessions.volume import VolumeDownloadSession, VolumeUploadSession, volume_headers
from .transport.resources import volume_resource
from .transport.rest import RestClient, open_body

__all__ = [
    "VolumeTunnel",
    "VolumeFSTunnel",
    "VolumeUploadSession",
    "VolumeDownloadSession",
    "VolumeReader",
    "VolumeWriter",
    "VolumeFSWriter",
]

FS_PATH_HEADER = "x-odps-volume-fs-path"
FS_SESSION_HEADER = "x-odps-volume-sessionid"


class VolumeTunnel(BaseTunnel):
    """Sessions for the files of partitioned volumes."""

    def create_download_session(
        self,
        volume: Any,
        partition_spec: str,
        file_name: str,
        download_id: str | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        tags: str | list[str] | None = None,
    ) -> VolumeDownloadSession:
        """A download session of ``file_name``; ``download_id`` reattaches."""
        option = build_compress_option(
            compress_option, compress_algo, compress_level, compress_strategy
        )
        return VolumeDownloadSession(
            self.tunnel_rest,
            volume,
            partition_spec,
            file_name,
            download_id,
            option,
            self._quota_name,
            tags,
        )

    def create_upload_session(
        self,
        volume: Any,
        partition_spec: str,
        upload_id: str | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        tags: str | list[str] | None = None,
    ) -> VolumeUploadSession:
        """An upload session of the partition; ``upload_id`` reattaches."""
        option = build_compress_option(
            compress_option, compress_algo, compress_level, compress_strategy
        )
        return VolumeUploadSession(
            self.tunnel_rest, volume, partition_spec, upload_id, option, self._quota_name, tags
        )


class VolumeFSTunnel(BaseTunnel):
    """Files of file-system volumes, addressed by path (no sessions).

    The requests are pyodps 0.13.2's (``odps/tunnel/volumetunnel.py`` ``VolumeFSTunnel``):
    a read is one ``GET`` with ``x-odps-volume-fs-path`` and a closed ``Range:
    bytes=start-end``; without a ``length`` the file's length is read first from the
    path's metadata (``GET ...?meta`` on the service endpoint), as pyodps does. A write
    is a ``POST`` of the framed file, then a ``PUT`` with the ``x-odps-volume-sessionid``
    the ``POST`` answered, which commits it.
    """

    def _fs_headers(self, volume: str, path: str, tags: Any, **extra: Any) -> dict[str, Any]:
        return volume_headers(
            normalize_tags(tags),
            **{FS_PATH_HEADER: f"/{volume}/{path.lstrip('/')}"},
            **extra,
        )

    @staticmethod
    def _name_and_option(
        volume: Any, compress_option: CompressOption | None, *compress: Any
    ) -> tuple[str, CompressOption | None]:
        """The volume's name and the (deflate or no) compression of a file request."""
        name = volume if isinstance(volume, str) else volume.name
        return name, deflate_only(build_compress_option(compress_option, *compress))

    def _service_rest(self) -> RestClient:
        """The service endpoint's client (metadata lives there); the tunnel's if none is set."""
        if self._entry is not None and self._entry.endpoint:
            return self._entry.rest
        return self.tunnel_rest

    def _file_length(self, volume: Any, path: str) -> int:
        """The length in bytes of the file ``path`` of a file-system volume."""
        name = volume if isinstance(volume, str) else volume.name
        headers = {FS_PATH_HEADER: f"/{name}/{path.lstrip('/')}"}
        resp = self._service_rest().request(
            "GET", volume_resource(self._project, name), params={"meta": ""}, headers=headers
        )
        try:
            return int(ElementTree.fromstring(resp.content).findtext("Length") or 0)
        except (ElementTree.ParseError, ValueError) as exc:
            raise TunnelError(f"unreadable metadata of volume path /{name}/{path}: {exc}") from None

    def open_reader(
        self,
        volume: Any,
        path: str,
        start: int | None = None,
        length: int | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        tags: str | list[str] | None = None,
    ) -> VolumeReader:
        """A reader of ``length`` bytes of ``path`` from ``start`` (to the end if None)."""
        name, option = self._name_and_option(
            volume, compress_option, compress_algo, compress_level, compress_strategy
        )
        first = start or 0
        if length is None:
            length = self._file_length(name, path)
        last = first + length - 1  # inclusive; -1 for an empty file, as pyodps sends it
        client = self.tunnel_rest

        def open_at(offset: int) -> BinaryIO:
            headers = self._fs_headers(
                name,
                path,
                tags,
                Range=f"bytes={first + offset}-{last}",
                **{"Accept-Encoding": "deflate" if option else None},
            )
            resource = volume_resource(self._project, name)
            return open_body(client.request("GET", resource, headers=headers, stream=True))

        return VolumeReader(open_at)

    def open_writer(
        self,
        volume: Any,
        path: str,
        replication: int | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        tags: str | list[str] | None = None,
    ) -> VolumeFSWriter:
        """A writer of ``path``; ``close()`` stores the file and commits it."""
        name, option = self._name_and_option(
            volume, compress_option, compress_algo, compress_level, compress_strategy
        )
        client = self.tunnel_rest
        resource = volume_resource(self._project, name)
        headers = self._fs_headers(
            name,
            path,
            tags,
            **{
                "Content-Type": "application/octet-stream",
                "Content-Encoding": "deflate" if option else None,
            },
        )

        def upload(chunks: Iterator[bytes]) -> Any:
            params = {"replication": replication or None}
            return client.request("POST", resource, params=params, headers=headers, data=chunks)

        def commit(resp: Any) -> Any:
            session_id = resp.headers.get(FS_SESSION_HEADER)
            if not session_id:
                raise TunnelError("the volume write was not given a session id")
            commit_headers = self._fs_headers(
                name, path, tags, **{FS_SESSION_HEADER: session_id, "Content-Length": "0"}
            )
            return client.request("PUT", resource, headers=commit_headers)

        return VolumeFSWriter(upload, commit, option)
