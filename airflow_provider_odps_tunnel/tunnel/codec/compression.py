"""HTTP body compression of the tunnel (protocol §7): options, tokens, compressors, readers.

The tunnel compresses a whole request or response body (a record stream or a framed Arrow
stream); the protocol's own CRCs are computed on the uncompressed bytes. Every codec here is
a maintained library: ``zlib`` (the zlib container, RFC 1950, which is what ``deflate``
means to the service), python-snappy (the Snappy *framing* format), ``lz4.frame`` and
``zstandard``. This module only adapts them to two shapes: a push compressor for
:class:`~.body.StreamingBody` and a pull reader that inflates a response incrementally.
"""

from __future__ import annotations

import enum
import io
import zlib
from typing import Any, BinaryIO, Protocol

from ..errors import DataStreamError, StreamTruncatedError, TunnelError

__all__ = [
    "CompressAlgorithm",
    "CompressOption",
    "Compressor",
    "build_compress_option",
    "make_compressor",
    "decompressing_stream",
]

# Compressed bytes pulled from the raw body per step. Snappy cannot cap its output, so this
# bounds it: a 16 KiB piece inflates to at most a few hundred KiB.
_INPUT_PIECE = 16 * 1024
# python-snappy compresses each call into its own frames; batching writes to the format's
# block size keeps small writes (Arrow CRC words, record flushes) from costing a frame each.
_SNAPPY_BLOCK = 64 * 1024


class CompressAlgorithm(enum.Enum):
    """A tunnel compression algorithm and its ``Content-Encoding`` token."""

    ODPS_RAW = "RAW"
    ODPS_ZLIB = "ZLIB"
    ODPS_SNAPPY = "SNAPPY"
    ODPS_ZSTD = "ZSTD"
    ODPS_LZ4 = "LZ4"
    ODPS_ARROW_LZ4 = "ARROW_LZ4"

    def get_encoding(self, legacy: bool = True) -> str | None:
        """The HTTP token announcing this algorithm; None for no compression.

        ``legacy=False`` gives the upper-case tokens of the Arrow preview endpoint, which
        only knows ZSTD and LZ4_FRAME.
        """
        if self is CompressAlgorithm.ODPS_RAW:
            return None
        tokens = _TOKENS if legacy else _PREVIEW_TOKENS
        try:
            return tokens[self]
        except KeyError:
            raise TunnelError(f"compression {self.value} has no preview encoding") from None

    @classmethod
    def from_encoding(cls, encoding: str | None) -> CompressAlgorithm:
        """The algorithm of a ``Content-Encoding`` token (case-insensitive)."""
        key = encoding.strip().lower() if encoding else "identity"
        try:
            return _FROM_TOKEN[key]
        except KeyError:
            known = ", ".join(sorted(_FROM_TOKEN))
            raise TunnelError(
                f"unsupported content encoding {encoding!r}; the tunnel uses {known}"
            ) from None


_TOKENS = {
    CompressAlgorithm.ODPS_ZLIB: "deflate",
    CompressAlgorithm.ODPS_SNAPPY: "x-snappy-framed",
    CompressAlgorithm.ODPS_ZSTD: "zstd",
    CompressAlgorithm.ODPS_LZ4: "x-lz4-frame",
    CompressAlgorithm.ODPS_ARROW_LZ4: "x-odps-lz4-frame",
}
_PREVIEW_TOKENS = {
    CompressAlgorithm.ODPS_ZSTD: "ZSTD",
    CompressAlgorithm.ODPS_LZ4: "LZ4_FRAME",
    CompressAlgorithm.ODPS_ARROW_LZ4: "LZ4_FRAME",
}
_FROM_TOKEN = {
    "identity": CompressAlgorithm.ODPS_RAW,
    "deflate": CompressAlgorithm.ODPS_ZLIB,
    "zstd": CompressAlgorithm.ODPS_ZSTD,
    "x-lz4-frame": CompressAlgorithm.ODPS_LZ4,
    "x-snappy-framed": CompressAlgorithm.ODPS_SNAPPY,
    "x-odps-lz4-frame": CompressAlgorithm.ODPS_ARROW_LZ4,
    "lz4_frame": CompressAlgorithm.ODPS_ARROW_LZ4,
}


class CompressOption:
    """How a session compresses its bodies: an algorithm, a level and a zlib strategy.

    ``compress_algo`` is a :class:`CompressOption.CompressAlgorithm` or its name or value
    in any case (``"zlib"``, ``"ODPS_SNAPPY"``, ``"arrow_lz4"``); None means zlib, as in
    pyodps. ``level`` defaults to 1 and ``strategy`` (zlib only) to 0.
    """

    CompressAlgorithm = CompressAlgorithm  # the pyodps spelling: CompressOption.CompressAlgorithm

    def __init__(
        self,
        compress_algo: CompressAlgorithm | str | None = CompressAlgorithm.ODPS_ZLIB,
        level: int | None = None,
        strategy: int | None = None,
    ):
        self.algorithm = _parse_algorithm(compress_algo)
        self.level = 1 if level is None else int(level)
        self.strategy = 0 if strategy is None else int(strategy)

    def __repr__(self) -> str:
        return (
            f"CompressOption({self.algorithm.value}, level={self.level}, strategy={self.strategy})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompressOption) and (
            (self.algorithm, self.level, self.strategy)
            == (other.algorithm, other.level, other.strategy)
        )

    def __hash__(self) -> int:
        return hash((self.algorithm, self.level, self.strategy))


def _parse_algorithm(value: CompressAlgorithm | str | None) -> CompressAlgorithm:
    if value is None:
        return CompressAlgorithm.ODPS_ZLIB
    if isinstance(value, CompressAlgorithm):
        return value
    if isinstance(value, str):
        key = value.strip().upper()
        for algo in CompressAlgorithm:
            if key in (algo.value, algo.name):
                return algo
    names = ", ".join(a.value.lower() for a in CompressAlgorithm)
    raise ValueError(f"unknown compression algorithm {value!r}; expected one of {names}")


class _SnappyCompressor:
    """python-snappy's framing compressor, fed in whole 64 KiB blocks."""

    def __init__(self) -> None:
        import snappy

        self._inner = snappy.StreamCompressor()
        self._pending = bytearray()

    def compress(self, data: bytes) -> bytes:
        self._pending += data
        if len(self._pending) < _SNAPPY_BLOCK:
            return b""
        out = self._inner.compress(bytes(self._pending))
        self._pending.clear()
        return out

    def flush(self) -> bytes:
        out = self._inner.compress(bytes(self._pending)) if self._pending else b""
        self._pending.clear()
        return out


class _Lz4Compressor:
    """An LZ4 frame: the frame header goes out before the first compressed bytes."""

    def __init__(self, level: int):
        import lz4.frame

        self._inner = lz4.frame.LZ4FrameCompressor(compression_level=level)
        self._header: bytes | None = self._inner.begin()

    def _take_header(self) -> bytes:
        header, self._header = self._header or b"", None
        return header

    def compress(self, data: bytes) -> bytes:
        return self._take_header() + self._inner.compress(data)

    def flush(self) -> bytes:
        return self._take_header() + self._inner.flush()


def build_compress_option(
    compress_option: CompressOption | None = None,
    compress_algo: Any = None,
    compress_level: int | None = None,
    compress_strategy: int | None = None,
) -> CompressOption | None:
    """A session's compression: the option given, else one built from the algorithm."""
    if compress_option is not None:
        return compress_option
    if compress_algo is None:
        return None
    return CompressOption(compress_algo, compress_level, compress_strategy)


class Compressor(Protocol):
    """What compresses one body: ``zlib.compressobj`` and the adapters below."""

    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def make_compressor(option: CompressOption | None) -> Compressor | None:
    """A fresh compressor for one body under ``option``; None when nothing is compressed."""
    if option is None or option.algorithm is CompressAlgorithm.ODPS_RAW:
        return None
    algo = option.algorithm
    if algo is CompressAlgorithm.ODPS_ZLIB:
        return zlib.compressobj(option.level, zlib.DEFLATED, zlib.MAX_WBITS, 8, option.strategy)
    if algo is CompressAlgorithm.ODPS_SNAPPY:
        return _SnappyCompressor()
    if algo in (CompressAlgorithm.ODPS_LZ4, CompressAlgorithm.ODPS_ARROW_LZ4):
        return _Lz4Compressor(option.level)
    import zstandard

    return zstandard.ZstdCompressor(level=option.level).compressobj()


class _Decoder:
    """One codec behind :class:`_InflatingReader`: push compressed bytes, pull output.

    ``decompress(data, limit)`` may keep part of ``data`` for later calls (then
    ``needs_input`` is False) and returns at most ``limit`` bytes where the codec can cap
    its output. ``complete`` says the input seen so far ends on a frame boundary.
    """

    needs_input = True
    complete = True

    def decompress(self, data: bytes, limit: int) -> bytes:
        raise NotImplementedError


class _ZlibDecoder(_Decoder):
    """Deflate in the zlib container; raw deflate (no header) is accepted too, as HTTP
    clients do, by looking at the first two bytes. Concatenated streams are read in turn."""

    def __init__(self) -> None:
        self._obj: Any = None
        self._head = b""
        self._tail = b""
        self.complete = True

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._obj is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                self.complete = not data
                return b""
            self._head = b""
            cmf, flg = data[0], data[1]
            is_zlib = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)
        data = self._tail + data if self._tail else data
        out = self._obj.decompress(data, limit)
        self._tail = self._obj.unconsumed_tail
        self.needs_input = not self._tail
        self.complete = self._obj.eof
        if self._obj.eof and self._obj.unused_data:
            rest = self._obj.unused_data
            self._obj = None
            self._tail = b""
            self.needs_input = False
            self._head = rest
        return out


class _Lz4Decoder(_Decoder):
    """LZ4 frames, one after the other."""

    def __init__(self) -> None:
        import lz4.frame

        self._new = lz4.frame.LZ4FrameDecompressor
        self._obj = self._new()
        self._started = False
        self._carry = b""

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._carry:
            data, self._carry = self._carry + data, b""
        if data:
            self._started = True
        out = self._obj.decompress(data, max_length=limit)
        self.needs_input = self._obj.needs_input
        if self._obj.eof:
            self._carry = self._obj.unused_data or b""
            self._obj = self._new()
            self._started = bool(self._carry)
            self.needs_input = not self._carry
        self.complete = not self._started
        return out


class _SnappyDecoder(_Decoder):
    """The Snappy framing format (python-snappy checks every chunk's masked CRC32C)."""

    def __init__(self) -> None:
        import snappy

        self._obj = snappy.StreamDecompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        out = self._obj.decompress(data) if data else b""
        self.complete = not self._obj.remains
        return out


class _InflatingReader(io.RawIOBase):
    """A raw reader that inflates ``raw`` as it is read, holding one step of output."""

    def __init__(self, raw: Any, decoder: _Decoder, encoding: str):
        super().__init__()
        self._raw = raw
        self._decoder = decoder
        self._encoding = encoding
        self._out = memoryview(b"")
        self._raw_eof = False
        self.compressed_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._out:
            data = b""
            if self._decoder.needs_input and not self._raw_eof:
                data = bytes(self._raw.read(_INPUT_PIECE))
                self.compressed_bytes += len(data)
                self._raw_eof = not data
            try:
                # After the end of input this drains what the codec still holds.
                out = self._decoder.decompress(data, max(len(view), 1))
            except Exception as exc:  # each library raises its own error type
                raise DataStreamError(
                    f"the {self._encoding} body does not decompress: {exc}",
                    offset=self.compressed_bytes,
                ) from exc
            self._out = memoryview(out)
            if not out and self._raw_eof and self._decoder.needs_input:
                if not self._decoder.complete:
                    raise StreamTruncatedError(
                        f"the {self._encoding} body ends inside a compressed frame",
                        offset=self.compressed_bytes,
                    )
                return 0
        size = min(len(view), len(self._out))
        view[:size] = self._out[:size]
        self._out = self._out[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._raw, "close", None)
            if close is not None:
                close()
        super().close()


class _ZstdReader(io.RawIOBase):
    """zstandard's own bounded stream reader, across concatenated frames.

    zstandard cannot say whether the input ended inside a frame, so a truncated zstd body
    is seen by the framing it carries (record footer, Arrow CRCs), not here.
    """

    def __init__(self, raw: Any):
        import zstandard

        super().__init__()
        self._raw = raw
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=_INPUT_PIECE, read_across_frames=True
        )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._reader.readinto(buffer)
        except Exception as exc:  # zstandard.ZstdError
            raise DataStreamError(f"the zstd body does not decompress: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._raw, "close", None)
            if close is not None:
                close()
        super().close()


def decompressing_stream(raw: Any, content_encoding: str | None) -> BinaryIO:
    """A readable binary stream of ``raw`` (anything with ``read(n)``) decompressed.

    ``content_encoding`` is the response's ``Content-Encoding``; None or ``identity``
    returns ``raw`` itself. Otherwise the result supports ``read(n)`` (n bytes unless the
    body ends), ``read()`` and ``readinto``, and holds only a step of output in memory
    however large the body is. A body that is not valid for its codec raises
    :class:`DataStreamError`; one that ends inside a frame, where the codec can tell,
    :class:`StreamTruncatedError`. Closing the result closes ``raw``.
    """
    algo = CompressAlgorithm.from_encoding(content_encoding)
    if algo is CompressAlgorithm.ODPS_RAW:
        return raw
    token = algo.get_encoding()
    if algo is CompressAlgorithm.ODPS_ZSTD:
        inner: io.RawIOBase = _ZstdReader(raw)
    elif algo is CompressAlgorithm.ODPS_ZLIB:
        inner = _InflatingReader(raw, _ZlibDecoder(), token)
    elif algo is CompressAlgorithm.ODPS_SNAPPY:
        inner = _InflatingReader(raw, _SnappyDecoder(), token)
    else:
        inner = _InflatingReader(raw, _Lz4Decoder(), token)
    return io.BufferedReader(inner, buffer_size=64 * 1024)
