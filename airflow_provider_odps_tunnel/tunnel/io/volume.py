"""Reading and writing the files of volumes: the CRC-32 framed bodies of ``volume_framing``.

:class:`VolumeReader` verifies every chunk and, after a failure, re-opens the body at the
first byte it has not returned yet (``options.retry_times`` times in a row);
:class:`VolumeWriter` streams a file as it is written, in a few chunks of memory, and
:class:`VolumeFSWriter` also commits the file of a file-system volume on ``close``. Volumes
only know ``deflate`` compression (:func:`deflate_only`). All get their requests as
callables from the sessions and tunnels.

The reader's API is pyodps 0.13.2's (``odps/tunnel/volumetunnel.py`` ``VolumeReader``):
``read`` returns bytes and ``None`` at the end; ``readline``, ``readlines`` and iteration
return text decoded with ``encoding``, every line ending (``\\n``, ``\\r\\n`` or a lone
``\\r``) given back as ``\\n``.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..codec.compression import CompressOption, make_compressor
from ..codec.volume_framing import DEFAULT_CHUNK_SIZE, VolumeFrameDecoder, VolumeFrameEncoder
from ..errors import TunnelError
from ..options import options
from .body import StreamingBody

__all__ = ["VolumeReader", "VolumeWriter", "VolumeFSWriter", "deflate_only"]

log = logging.getLogger(__name__)

_ZLIB = CompressOption.CompressAlgorithm.ODPS_ZLIB
_RAW = CompressOption.CompressAlgorithm.ODPS_RAW
_READ_SIZE = 65536


def deflate_only(option: CompressOption | None) -> CompressOption | None:
    """``option`` if it is deflate, None for none or raw; any other algorithm is an error."""
    if option is None or option.algorithm is _RAW:
        return None
    if option.algorithm is not _ZLIB:
        raise TunnelError(f"volumes only support deflate compression, not {option.algorithm.value}")
    return option


class VolumeReader:
    """A file's bytes: ``read(size)``; its lines as text: ``readline``, ``readlines``, iteration.

    ``open_at(offset)`` returns the framed body of the file from ``offset``; after a
    failure the reader opens it again at the first byte it has not returned.
    """

    def __init__(self, open_at: Callable[[int], BinaryIO]):
        self._open_at = open_at
        self._pos = 0
        self._decoder: VolumeFrameDecoder | None = None
        self._failures = 0
        self._buffer = b""
        self._offset = 0
        # the last line ended with "\r": a "\n" right after it belongs to that line
        self._after_cr = False

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

    def _fill(self) -> bool:
        """Append the next piece of the file to the buffer; False at the end."""
        more = self._read_raw(_READ_SIZE)
        self._buffer = self._buffer[self._offset :] + more
        self._offset = 0
        return bool(more)

    def _take(self, count: int) -> bytes:
        """The next ``count`` buffered bytes (fewer if fewer are buffered)."""
        data = self._buffer[self._offset : self._offset + count]
        self._offset += len(data)
        return data

    def _buffered(self) -> int:
        return len(self._buffer) - self._offset

    def read(self, size: int | None = None, break_line: bool = False) -> bytes | None:
        """Up to ``size`` bytes (all remaining when None), ``None`` at the end of the file.

        ``break_line`` stops after the first line ending, given back as ``\\n``.
        """
        if size == 0:
            return b""
        limit = sys.maxsize if size is None or size < 0 else size
        if break_line:
            return self._read_line(limit)
        head = self._take(limit)
        if len(head) < limit:
            head += self._read_raw(-1 if limit == sys.maxsize else limit - len(head))
        return head or None

    def _line_end(self, limit: int) -> int:
        """Offset of the first ``\\r`` or ``\\n`` buffered within ``limit`` bytes, else -1."""
        stop = self._offset + limit
        ends = [
            i
            for i in (
                self._buffer.find(b"\n", self._offset, stop),
                self._buffer.find(b"\r", self._offset, stop),
            )
            if i >= 0
        ]
        return min(ends) if ends else -1

    def _read_line(self, limit: int) -> bytes | None:
        if self._after_cr:
            if not self._buffered():
                self._fill()
            if self._buffer.startswith(b"\n", self._offset):
                self._offset += 1
            self._after_cr = False
        end = self._line_end(limit)
        while end < 0 and self._buffered() < limit and self._fill():
            end = self._line_end(limit)
        if end < 0:
            return self._take(limit) or None
        self._after_cr = self._buffer[end : end + 1] == b"\r"
        line = self._take(end - self._offset) + b"\n"
        self._offset += 1
        return line

    def readline(self, size: int = sys.maxsize, encoding: str = "utf-8") -> str | None:
        """The next line (at most ``size`` bytes) as text ending in ``\\n``; None at the end."""
        line = self.read(size, break_line=True)
        return None if line is None else line.decode(encoding)

    def readlines(self, size: int = sys.maxsize, encoding: str = "utf-8") -> list[str]:
        """The remaining lines as text (each at most ``size`` bytes)."""
        return list(self._lines(size, encoding))

    def _lines(self, size: int, encoding: str) -> Iterator[str]:
        while (line := self.readline(size, encoding)) is not None:
            yield line

    def __iter__(self) -> Iterator[str]:
        return self._lines(sys.maxsize, "utf-8")

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

    #: Bytes of file data per CRC-framed chunk (pyodps's ``VolumeWriter.CHUNK_SIZE``).
    CHUNK_SIZE = DEFAULT_CHUNK_SIZE

    def __init__(
        self,
        request_callback: Callable[[Iterator[bytes]], Any],
        compress_option: CompressOption | None = None,
    ):
        self._encoder = VolumeFrameEncoder(self.CHUNK_SIZE)
        self._body = StreamingBody(
            request_callback, options.chunk_size, make_compressor(deflate_only(compress_option))
        )
        self._closed = False

    def write(
        self, buf: bytes | bytearray | str | int | io.BytesIO, encoding: str = "utf-8"
    ) -> None:
        """Append ``buf``: bytes, text (encoded with ``encoding``), one byte as an int, or
        the contents of a ``BytesIO``."""
        if self._closed:
            raise TunnelError("write to a closed VolumeWriter")
        if isinstance(buf, str):
            buf = buf.encode(encoding)
        elif isinstance(buf, int):
            buf = bytes([buf])
        elif isinstance(buf, io.BytesIO):
            buf = buf.getvalue()
        framed = self._encoder.feed(bytes(buf))
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


class VolumeFSWriter(VolumeWriter):
    """A :class:`VolumeWriter` of a file-system volume: ``close`` stores the file, then
    ``commit(response)`` makes it visible (a file-system write is two requests)."""

    def __init__(
        self,
        request_callback: Callable[[Iterator[bytes]], Any],
        commit: Callable[[Any], Any],
        compress_option: CompressOption | None = None,
    ):
        super().__init__(request_callback, compress_option)
        self._commit = commit

    def close(self) -> Any:
        """Send the rest of the file and commit it; returns the write's HTTP response."""
        result = super().close()
        if result is not None:
            self._commit(result)
        return result
