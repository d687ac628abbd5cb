"""Volume tunnels: files of partitioned volumes (sessions) and of file-system volumes.

The sessions are in :mod:`.sessions.volume`, the readers and writers in :mod:`.io.volume`
(both re-exported here under their old names). Readers verify every chunk and resume at
the current byte after a broken connection, by asking for the rest of the range again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .errors import TunnelError
from .io.volume import VolumeReader, VolumeWriter, deflate_only
from .options import normalize_tags
from .sessions.volume import VolumeDownloadSession, VolumeUploadSession, volume_headers
from .transport.resources import volume_resource
from .transport.rest import open_body

__all__ = [
    "VolumeTunnel",
    "VolumeFSTunnel",
    "VolumeUploadSession",
    "VolumeDownloadSession",
    "VolumeReader",
    "VolumeWriter",
]


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
    """Files of file-system volumes, addressed by path (no sessions)."""

    def _fs_headers(self, volume: str, path: str, tags: Any, **extra: Any) -> dict[str, Any]:
        return volume_headers(
            normalize_tags(tags),
            **{"x-odps-volume-fs-path": f"/{volume}/{path.lstrip('/')}"},
            **extra,
        )

    @staticmethod
    def _name_and_option(
        volume: Any, compress_option: CompressOption | None, *compress: Any
    ) -> tuple[str, CompressOption | None]:
        """The volume's name and the (deflate or no) compression of a file request."""
        name = volume if isinstance(volume, str) else volume.name
        return name, deflate_only(build_compress_option(compress_option, *compress))

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
        """A reader of ``path`` from ``start`` for ``length`` bytes (to the end if None)."""
        name, option = self._name_and_option(
            volume, compress_option, compress_algo, compress_level, compress_strategy
        )
        first = start or 0
        client = self.tunnel_rest

        def open_at(offset: int) -> BinaryIO:
            end = "" if length is None else str(first + length - 1)
            headers = self._fs_headers(
                name,
                path,
                tags,
                Range=f"bytes={first + offset}-{end}",
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
    ) -> VolumeWriter:
        """A writer of ``path``; ``close()`` stores the file and commits it."""
        name, option = self._name_and_option(
            volume, compress_option, compress_algo, compress_level, compress_strategy
        )
        client = self.tunnel_rest
        resource = volume_resource(self._project, name)

        def upload(chunks: Iterator[bytes]) -> Any:
            headers = self._fs_headers(
                name,
                path,
                tags,
                **{
                    "Content-Type": "application/octet-stream",
                    "Content-Encoding": "deflate" if option else None,
                },
            )
            resp = client.request(
                "POST", resource, params={"replication": replication}, headers=headers, data=chunks
            )
            session_id = resp.headers.get("x-odps-volume-sessionid")
            if not session_id:
                raise TunnelError("the volume write was not given a session id")
            commit_headers = self._fs_headers(
                name, path, tags, **{"x-odps-volume-sessionid": session_id, "Content-Length": "0"}
            )
            return client.request("PUT", resource, headers=commit_headers)

        return VolumeWriter(upload, option)
