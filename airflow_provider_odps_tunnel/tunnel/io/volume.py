"""Reading and writing the files of volumes: the CRC-32 framed bodies of ``volume_framing``.

:class:`VolumeReader` verifies every chunk and, after a failure, re-opens the body at the
first byte it has not returned yet (``options.retry_times`` times in a row);
:class:`VolumeWriter` streams a file as it is written, in a few chunks of memory. Volumes
only know ``deflate`` compression (:func:`deflate_only`). Both get their requests as
callables from the sessions and tunnels.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..codec.compression import CompressOption, make_compressor
from ..codec.volume_framing import VolumeFrameDecoder, VolumeFrameEncoder
from ..errors import TunnelError
from ..options import options
from .body import StreamingBody

__all__ = ["VolumeReader", "VolumeWriter", "deflate_only"]

log = logging.getLogger(__name__)

_ZLIB = CompressOption.CompressAlgorithm.ODPS_ZLIB
_RAW = CompressOption.CompressAlgorithm.ODPS_RAW


def deflate_only(option: CompressOption | None) -> CompressOption | None:
    """``option`` if it is deflate, None for none or raw; any other algorithm is an error."""
    if option is None or option.algorithm is _RAW:
        return None
    if option.algorithm is not _ZLIB:
        raise TunnelError(f"volumes only support deflate compression, not {option.algorithm.value}")
    return option


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
            request_callback, options.chunk_size, make_compressor(deflate_only(compress_option))
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
