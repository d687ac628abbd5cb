"""Body compression: options and tokens, round trips, golden zlib vectors, and pyodps parity."""

from __future__ import annotations

import io
import random
import zlib

import pytest

from airflow_provider_odps_tunnel.tunnel.codec.compression import (
    CompressOption,
    decompressing_stream,
    make_compressor,
)
from airflow_provider_odps_tunnel.tunnel.errors import (
    DataStreamError,
    StreamTruncatedError,
    TunnelError,
)

Algo = CompressOption.CompressAlgorithm
COMPRESSED = [a for a in Algo if a is not Algo.ODPS_RAW]
SNAPPY_STREAM_ID = bytes.fromhex("ff060000734e61507059")


def sample_data(seed: int = 1) -> bytes:
    """Random, repetitive and all-zero stretches: every codec path gets exercised."""
    rnd = random.Random(seed)
    parts = [rnd.randbytes(70_000), b"\x00" * 400_000, bytes(range(256)) * 700]
    parts.append(b"".join(rnd.choice([b"tunnel", b"arrow", b"\xff\xfe"]) for _ in range(30_000)))
    return b"".join(parts)


def compress_in_pieces(option: CompressOption, data: bytes, seed: int = 2) -> bytes:
    """Feed the compressor odd-sized pieces, as a writer does."""
    rnd = random.Random(seed)
    compressor = make_compressor(option)
    out = bytearray()
    pos = 0
    while pos < len(data):
        size = rnd.choice([1, 3, 4, 17, 1000, 65_537, 200_000])
        out += compressor.compress(data[pos : pos + size])
        pos += size
    out += compressor.flush()
    return bytes(out)


class TrickleStream:
    """A raw body that returns fewer bytes than asked, like a socket."""

    def __init__(self, data: bytes, step: int = 777):
        self._data = memoryview(data)
        self._step = step
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        out, self._data = bytes(self._data[:size]), self._data[size:]
        return out

    def close(self) -> None:
        self.closed = True


# ----------------------------------------------------------------- options and tokens


@pytest.mark.parametrize(
    ("spelling", "algo"),
    [
        ("zlib", Algo.ODPS_ZLIB),
        ("ZLIB", Algo.ODPS_ZLIB),
        ("snappy", Algo.ODPS_SNAPPY),
        ("zstd", Algo.ODPS_ZSTD),
        ("lz4", Algo.ODPS_LZ4),
        ("arrow_lz4", Algo.ODPS_ARROW_LZ4),
        ("raw", Algo.ODPS_RAW),
        ("odps_zstd", Algo.ODPS_ZSTD),
        (Algo.ODPS_SNAPPY, Algo.ODPS_SNAPPY),
        (None, Algo.ODPS_ZLIB),
    ],
)
def test_option_accepts_names_and_values(spelling, algo):
    option = CompressOption(spelling)
    assert option.algorithm is algo
    assert (option.level, option.strategy) == (1, 0)


def test_option_defaults_and_errors():
    assert CompressOption().algorithm is Algo.ODPS_ZLIB
    assert CompressOption(level=6, strategy=1) == CompressOption(Algo.ODPS_ZLIB, 6, 1)
    with pytest.raises(ValueError, match="unknown compression algorithm 'brotli'"):
        CompressOption("brotli")


TOKENS = {
    Algo.ODPS_RAW: None,
    Algo.ODPS_ZLIB: "deflate",
    Algo.ODPS_SNAPPY: "x-snappy-framed",
    Algo.ODPS_ZSTD: "zstd",
    Algo.ODPS_LZ4: "x-lz4-frame",
    Algo.ODPS_ARROW_LZ4: "x-odps-lz4-frame",
}


@pytest.mark.parametrize("algo", list(Algo))
def test_tokens_map_both_ways(algo):
    token = algo.get_encoding()
    assert token == TOKENS[algo]
    assert Algo.from_encoding(token) is algo
    if token:
        assert Algo.from_encoding(token.upper()) is algo


def test_token_aliases_and_preview_tokens():
    assert Algo.from_encoding("identity") is Algo.ODPS_RAW
    assert Algo.from_encoding("LZ4_FRAME") is Algo.ODPS_ARROW_LZ4
    assert Algo.ODPS_ZSTD.get_encoding(legacy=False) == "ZSTD"
    assert Algo.ODPS_LZ4.get_encoding(legacy=False) == "LZ4_FRAME"
    assert Algo.ODPS_ARROW_LZ4.get_encoding(legacy=False) == "LZ4_FRAME"
    assert Algo.ODPS_RAW.get_encoding(legacy=False) is None
    with pytest.raises(TunnelError, match="no preview encoding"):
        Algo.ODPS_ZLIB.get_encoding(legacy=False)
    with pytest.raises(TunnelError, match="unsupported content encoding 'br'"):
        Algo.from_encoding("br")
    with pytest.raises(TunnelError):
        decompressing_stream(io.BytesIO(b""), "gzip")


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize("algo", COMPRESSED)
def test_round_trip_read_in_large_pieces(algo):
    data = sample_data()
    body = compress_in_pieces(CompressOption(algo), data)
    stream = decompressing_stream(TrickleStream(body), algo.get_encoding())
    assert stream.read(len(data) // 2) == data[: len(data) // 2]
    assert stream.read() == data[len(data) // 2 :]
    assert stream.read(10) == b""


@pytest.mark.parametrize("algo", COMPRESSED)
def test_round_trip_byte_by_byte_and_readinto(algo):
    data = sample_data(seed=5)[:150_000]
    body = compress_in_pieces(CompressOption(algo), data, seed=9)
    stream = decompressing_stream(io.BytesIO(body), algo.get_encoding())
    head = bytearray()
    for _ in range(5000):
        head += stream.read(1)
    assert bytes(head) == data[:5000]
    buffer = bytearray(len(data))
    filled = 5000
    while True:
        got = stream.readinto(memoryview(buffer)[filled:])
        if not got:
            break
        filled += got
    assert filled == len(data)
    assert bytes(buffer[5000:]) == data[5000:]


@pytest.mark.parametrize("algo", COMPRESSED)
def test_empty_body(algo):
    compressor = make_compressor(CompressOption(algo))
    body = compressor.flush()
    assert decompressing_stream(io.BytesIO(body), algo.get_encoding()).read() == b""
    assert decompressing_stream(io.BytesIO(b""), algo.get_encoding()).read() == b""


def test_raw_and_identity_return_the_stream_itself():
    raw = io.BytesIO(b"abc")
    assert make_compressor(None) is None
    assert make_compressor(CompressOption(Algo.ODPS_RAW)) is None
    assert decompressing_stream(raw, None) is raw
    assert decompressing_stream(raw, "identity") is raw


def test_closing_the_stream_closes_the_body():
    raw = TrickleStream(zlib.compress(b"x"))
    stream = decompressing_stream(raw, "deflate")
    stream.close()
    assert raw.closed


# ----------------------------------------------------------------- formats


def test_zlib_vectors_inflate_to_the_record_streams(vectors_dir):
    for impl in ("c", "py"):
        compressed = (vectors_dir / f"typical.zlib.{impl}.bin").read_bytes()
        expected = (vectors_dir / f"typical.{impl}.bin").read_bytes()
        assert decompressing_stream(io.BytesIO(compressed), "deflate").read() == expected
        assert decompressing_stream(TrickleStream(compressed, 3), "deflate").read() == expected


def test_zlib_output_is_a_zlib_container():
    data = sample_data()
    body = compress_in_pieces(CompressOption("zlib", level=6, strategy=zlib.Z_FILTERED), data)
    assert zlib.decompress(body) == data
    assert body[0] == 0x78  # deflate, 32 KiB window


def test_raw_deflate_is_accepted_too():
    data = sample_data()
    squeezer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = squeezer.compress(data) + squeezer.flush()
    assert decompressing_stream(io.BytesIO(body), "deflate").read() == data


def test_snappy_output_is_the_framing_format():
    body = compress_in_pieces(CompressOption("snappy"), b"tunnel " * 50_000)
    assert body.startswith(SNAPPY_STREAM_ID)
    assert body.count(SNAPPY_STREAM_ID) == 1


def test_lz4_output_is_an_lz4_frame():
    import lz4.frame

    data = sample_data()
    for algo in (Algo.ODPS_LZ4, Algo.ODPS_ARROW_LZ4):
        body = compress_in_pieces(CompressOption(algo), data)
        assert body[:4] == bytes.fromhex("04224d18")
        assert lz4.frame.decompress(body) == data


def test_zstd_output_is_a_zstd_frame():
    import zstandard

    data = sample_data()
    body = compress_in_pieces(CompressOption("zstd", level=3), data)
    assert body[:4] == bytes.fromhex("28b52ffd")
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
    assert reader.read() == data


@pytest.mark.parametrize("algo", [Algo.ODPS_ZLIB, Algo.ODPS_LZ4, Algo.ODPS_ZSTD])
def test_concatenated_frames_are_read_in_turn(algo):
    first = compress_in_pieces(CompressOption(algo), b"first " * 1000)
    second = compress_in_pieces(CompressOption(algo), b"second " * 1000)
    stream = decompressing_stream(io.BytesIO(first + second), algo.get_encoding())
    assert stream.read() == b"first " * 1000 + b"second " * 1000


@pytest.mark.parametrize("algo", [Algo.ODPS_ZLIB, Algo.ODPS_SNAPPY, Algo.ODPS_LZ4])
def test_truncated_body_is_reported(algo):
    body = compress_in_pieces(CompressOption(algo), sample_data())
    stream = decompressing_stream(io.BytesIO(body[:-7]), algo.get_encoding())
    with pytest.raises(StreamTruncatedError, match="ends inside a compressed frame") as info:
        stream.read()
    assert info.value.offset == len(body) - 7


@pytest.mark.parametrize("algo", COMPRESSED)
def test_garbage_is_a_data_stream_error(algo):
    body = bytes(range(200, 256)) * 50 + compress_in_pieces(CompressOption(algo), sample_data())
    # Snappy reads the garbage as a chunk longer than the body: reported as truncation.
    with pytest.raises(DataStreamError):
        decompressing_stream(io.BytesIO(body), algo.get_encoding()).read()


@pytest.mark.parametrize("algo", [Algo.ODPS_ZLIB, Algo.ODPS_SNAPPY])
def test_corruption_inside_a_checked_format_is_caught(algo):
    """zlib (Adler-32) and Snappy framing (CRC32C per chunk) carry checksums; LZ4 and zstd
    frames as pyodps writes them do not, and rely on the CRCs of the body inside."""
    body = bytearray(compress_in_pieces(CompressOption(algo), sample_data()))
    body[len(body) // 2 : len(body) // 2 + 64] = bytes(64)
    with pytest.raises(DataStreamError, match="does not decompress"):
        decompressing_stream(io.BytesIO(bytes(body)), algo.get_encoding()).read()


def test_decompression_holds_only_a_step_in_memory():
    """A 64 MiB run of zeros inflates through a 64 KiB read without materialising."""
    import tracemalloc

    size = 64 * 1024 * 1024
    for algo in COMPRESSED:
        compressor = make_compressor(CompressOption(algo))
        zeros = bytes(1024 * 1024)
        body = b"".join(compressor.compress(zeros) for _ in range(size // len(zeros)))
        body += compressor.flush()
        stream = decompressing_stream(io.BytesIO(body), algo.get_encoding())
        tracemalloc.start()
        total = 0
        while chunk := stream.read(65536):
            total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert total == size
        assert peak < 8 * 1024 * 1024, (algo, peak)


# ----------------------------------------------------------------- pyodps parity


@pytest.mark.parametrize("algo", COMPRESSED)
def test_pyodps_reads_ours_and_we_read_pyodps(algo):
    from odps.tunnel.io import stream as odps_stream

    data = sample_data(seed=11)
    theirs_option = odps_stream.CompressOption(algo.value)

    ours = compress_in_pieces(CompressOption(algo), data)
    reader = odps_stream.get_decompress_stream(io.BytesIO(ours), theirs_option, requests=False)
    assert reader.read() == data

    sink = io.BytesIO()
    writer = odps_stream.get_compress_stream(sink, theirs_option)
    for start in range(0, len(data), 40_000):
        writer.write(data[start : start + 40_000])
    writer.flush()
    theirs = sink.getvalue()
    assert decompressing_stream(io.BytesIO(theirs), algo.get_encoding()).read() == data
