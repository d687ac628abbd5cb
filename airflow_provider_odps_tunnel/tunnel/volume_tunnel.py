"""Volume tunnels: files of partitioned volumes (sessions) and of file-system volumes.

Bodies use the CRC-32 framing of ``volume_codec`` and only ``deflate`` compression.
Readers verify every chunk and resume at the current byte after a broken connection, by
asking for the rest of the range again. A file written into a partitioned volume is spooled
as it streams out and, after a broken connection, a 5xx or throttling, sent again whole
(writing a file name again replaces the file; appends are not sent again).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .base import BaseTunnel
from .codec.compression import (
    CompressOption,
    build_compress_option,
    decompressing_stream,
    make_compressor,
)
from .codec.volume_framing import VolumeFrameDecoder, VolumeFrameEncoder
from .errors import TunnelError
from .io.body import StreamingBody
from .io.resend import send_resendable
from .options import normalize_tags, options
from .transport.resources import project_resource, quote_name, volume_resource
from .transport.rest import ResponseStream, RestClient

__all__ = [
    "VolumeTunnel",
    "VolumeFSTunnel",
    "VolumeUploadSession",
    "VolumeDownloadSession",
    "VolumeReader",
    "VolumeWriter",
]

log = logging.getLogger(__name__)

_ZLIB = CompressOption.CompressAlgorithm.ODPS_ZLIB
_RAW = CompressOption.CompressAlgorithm.ODPS_RAW


def _deflate_only(option: CompressOption | None) -> CompressOption | None:
    if option is None or option.algorithm is _RAW:
        return None
    if option.algorithm is not _ZLIB:
        raise TunnelError(f"volumes only support deflate compression, not {option.algorithm.value}")
    return option


def _format_file_name(name: str) -> str:
    if name.startswith("/"):
        raise TunnelError(f"file name {name!r} must not start with '/'")
    return re.sub("/+", "/", name)


def _headers(tags: list[str] | None, version: int = 4, **extra: Any) -> dict[str, Any]:
    headers: dict[str, Any] = {"x-odps-tunnel-version": version}
    if tags:
        headers["odps-tunnel-tags"] = ",".join(tags)
    headers.update({k: v for k, v in extra.items() if v is not None})
    return headers


class VolumeReader:
    """A file's bytes: ``read(size)``, ``readline``, ``readlines``, iteration by line.

    ``open_at(offset)`` returns the framed body of the file from ``offset``; after a
    failure the reader opens it again at the first byte it has not returned.
    """

    def __init__(self, open_at: Callable[[int], BinaryIO]):
        self._open_at = open_at
        self._pos = 0
        self._decoder: VolumeFrameDecoder | None = None
        self._failures = 0
        self._line_buffer = b""

    def _read_raw(self, size: int) -> bytes:
        while True:
            try:
                if self._decoder is None:
                    self._decoder = VolumeFrameDecoder(self._open_at(self._pos))
                data = self._decoder.read(size)
            except Exception as exc:
                self._decoder = None
                self._failures += 1
                if self._failures > options.retry_times:
                    raise
                log.warning("volume read failed at byte %d (%r); resuming there", self._pos, exc)
                continue
            self._failures = 0
            self._pos += len(data)
            return data

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes (all remaining bytes when None); ``b""`` at the end."""
        want = -1 if size is None or size < 0 else size
        head, self._line_buffer = self._line_buffer, b""
        if want >= 0 and len(head) >= want:
            self._line_buffer = head[want:]
            return head[:want]
        rest = self._read_raw(-1 if want < 0 else want - len(head))
        return head + rest

    def readline(self, size: int = sys.maxsize) -> bytes:
        """The next line, ``\\n`` included (``\\r\\n`` kept as is)."""
        while b"\n" not in self._line_buffer and len(self._line_buffer) < size:
            more = self._read_raw(65536)
            if not more:
                break
            self._line_buffer += more
        end = self._line_buffer.find(b"\n")
        cut = min(size, end + 1 if end >= 0 else len(self._line_buffer))
        line, self._line_buffer = self._line_buffer[:cut], self._line_buffer[cut:]
        return line

    def readlines(self) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def close(self) -> None:
        self._decoder = None

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VolumeWriter:
    """Streams one file: ``write(bytes or str)`` then ``close()``; memory stays a few chunks.

    Leaving a ``with`` block by an exception aborts the request, so no partial file is
    stored. ``close`` returns the HTTP response.
    """

    def __init__(
        self,
        request_callback: Callable[[Iterator[bytes]], Any],
        compress_option: CompressOption | None = None,
    ):
        self._encoder = VolumeFrameEncoder()
        self._body = StreamingBody(
            request_callback, options.chunk_size, make_compressor(_deflate_only(compress_option))
        )
        self._closed = False

    def write(self, data: bytes | str, encoding: str = "utf-8") -> None:
        if self._closed:
            raise TunnelError("write to a closed VolumeWriter")
        if isinstance(data, str):
            data = data.encode(encoding)
        framed = self._encoder.feed(bytes(data))
        if framed:
            self._body.write(framed)

    def close(self) -> Any:
        if self._closed:
            return None
        self._closed = True
        self._body.write(self._encoder.finish())
        return self._body.close()

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            self._closed = True
            self._body.abort(exc)


class _VolumeSession:
    """What both volume sessions share: the volume, partition, quota and tags."""

    kind = ""

    def __init__(
        self,
        client: RestClient,
        volume: Any,
        partition_spec: str,
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
        self.status = "UNKNOWN"

    def _resource(self, with_id: bool = True) -> str:
        base = f"{project_resource(self.project_name)}/tunnel/{self.kind}"
        return f"{base}/{quote_name(self.id)}" if with_id else base

    def _context(self) -> dict[str, Any]:
        return {"session_id": self.id, "table": f"volume {self.volume_name}"}

    def _request(self, method: str, with_id: bool = True, **kw: Any) -> Any:
        params = dict(kw.pop("params", {}) or {})
        params["quotaName"] = self._quota_name
        kw.setdefault("headers", _headers(self._tags, **{"Content-Length": "0"}))
        return self._client.request(
            method, self._resource(with_id), params=params, context=self._context(), **kw
        )


class VolumeUploadSession(_VolumeSession):
    """Uploads files into a volume partition; :meth:`commit` makes them visible."""

    kind = "uploads"

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
        super().__init__(client, volume, partition_spec, compress_option, quota_name, tags)
        self.file_list: list[tuple[str, int]] = []
        if upload_id is None:
            target = f"{self.project_name}/{self.volume_name}/{partition_spec}/"
            resp = self._request(
                "POST",
                with_id=False,
                params={"type": "volumefile", "target": target},
                retry_post=True,
            )
            self._load(resp.json())
        else:
            self.id = upload_id
            self.reload()

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("UploadID", self.id)
        self.status = str(data.get("Status", "UNKNOWN")).upper()
        self.file_list = [(f["FileName"], int(f["FileLength"])) for f in data.get("FileList") or []]

    def reload(self) -> None:
        self._load(self._request("GET").json())

    def open(self, file_name: str, compress: bool = False, append: bool = False) -> VolumeWriter:
        """A writer of ``file_name`` (``append`` continues an existing file)."""
        option = _deflate_only(self._compress_option or CompressOption()) if compress else None
        params = {"blockid": _format_file_name(file_name), "resume": "" if append else None}
        headers = _headers(
            self._tags,
            **{"Content-Type": "text/plain", "Content-Encoding": "deflate" if option else None},
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
        wanted = {_format_file_name(f) for f in files}
        self.reload()
        held = {name for name, _ in self.file_list}
        if wanted != held:
            raise TunnelError(
                f"files to commit differ from the server's: missing on the server "
                f"{sorted(wanted - held)}, extra on the server {sorted(held - wanted)}",
                **self._context(),
            )
        self._load(self._request("PUT").json())


class VolumeDownloadSession(_VolumeSession):
    """Downloads one file of a volume partition; :meth:`open` reads a byte range."""

    kind = "downloads"

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
        super().__init__(client, volume, partition_spec, compress_option, quota_name, tags)
        self.file_name = file_name
        self.file_length = 0
        if download_id is None:
            target = f"{self.project_name}/{self.volume_name}/{partition_spec}/{file_name}"
            resp = self._request(
                "POST",
                with_id=False,
                params={"type": "volumefile", "target": target},
                retry_post=True,
            )
            self._load(resp.json())
        else:
            self.id = download_id
            self.reload()

    def _load(self, data: dict[str, Any]) -> None:
        self.id = data.get("DownloadID", self.id)
        self.status = str(data.get("Status", "UNKNOWN")).upper()
        info = data.get("File") or {}
        self.file_name = info.get("FileName", self.file_name)
        self.file_length = int(info.get("FileLength") or 0)

    def reload(self) -> None:
        self._load(self._request("GET").json())

    def open(
        self, start: int = 0, length: int = sys.maxsize, compress: bool = False
    ) -> VolumeReader:
        """A reader of ``length`` bytes from ``start`` (to the end by default)."""
        length = min(length, max(0, self.file_length - start))
        option = _deflate_only(self._compress_option) if compress else None

        def open_at(offset: int) -> BinaryIO:
            headers = _headers(
                self._tags,
                **{"Content-Length": "0", "Accept-Encoding": "deflate" if option else None},
            )
            params = {"data": "", "range": f"({start + offset},{length - offset})"}
            resp = self._request("GET", params=params, headers=headers, stream=True)
            return decompressing_stream(ResponseStream(resp), resp.headers.get("Content-Encoding"))

        return VolumeReader(open_at)


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
        return VolumeDownloadSession(
            self.tunnel_rest,
            volume,
            partition_spec,
            file_name,
            download_id=download_id,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            quota_name=self._quota_name,
            tags=tags,
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
        return VolumeUploadSession(
            self.tunnel_rest,
            volume,
            partition_spec,
            upload_id=upload_id,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            quota_name=self._quota_name,
            tags=tags,
        )


class VolumeFSTunnel(BaseTunnel):
    """Files of file-system volumes, addressed by path (no sessions)."""

    def _fs_headers(self, volume: str, path: str, tags: Any, **extra: Any) -> dict[str, Any]:
        return _headers(
            normalize_tags(tags),
            **{"x-odps-volume-fs-path": f"/{volume}/{path.lstrip('/')}"},
            **extra,
        )

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
        name = volume if isinstance(volume, str) else volume.name
        option = _deflate_only(
            build_compress_option(compress_option, compress_algo, compress_level, compress_strategy)
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
            resp = client.request(
                "GET", volume_resource(self._project, name), headers=headers, stream=True
            )
            return decompressing_stream(ResponseStream(resp), resp.headers.get("Content-Encoding"))

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
        name = volume if isinstance(volume, str) else volume.name
        option = _deflate_only(
            build_compress_option(compress_option, compress_algo, compress_level, compress_strategy)
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
