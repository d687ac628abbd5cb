"""Volume framing: the protocol document's example, round trips and damaged bodies."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.tunnel import ChecksumError, StreamTruncatedError
from airflow_provider_odps_tunnel.tunnel.codec.volume_framing import (
    VolumeFrameDecoder,
    VolumeFrameEncoder,
)

EXAMPLE = bytes.fromhex(
    "00000004 41424344 6af18610 45464748 2bc7fe16 494a b0f60f36".replace(" ", "")
)


def frame(data: bytes, chunk_size: int, pieces: int = 3) -> bytes:
    encoder = VolumeFrameEncoder(chunk_size)
    step = max(1, len(data) // pieces)
    out = b"".join(encoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out + encoder.finish()


def test_protocol_example():
    assert frame(b"ABCDEFGHIJ", 4) == EXAMPLE
    assert VolumeFrameDecoder(io.BytesIO(EXAMPLE)).read() == b"ABCDEFGHIJ"


def test_empty_file_is_the_header_alone():
    assert frame(b"", 8) == b"\x00\x00\x00\x08"
    assert VolumeFrameDecoder(io.BytesIO(b"\x00\x00\x00\x08")).read() == b""


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700), st.integers(1, 9))
def test_round_trip(data, chunk_size, pieces):
    body = frame(data, chunk_size, pieces)
    decoder = VolumeFrameDecoder(io.BytesIO(body))
    out = b""
    while chunk := decoder.read(97):
        out += chunk
    assert out == data


def test_flipped_bit_and_truncation_are_detected():
    body = bytearray(frame(bytes(range(256)) * 8, 100))
    body[150] ^= 0x01
    with pytest.raises(ChecksumError) as info:
        VolumeFrameDecoder(io.BytesIO(bytes(body))).read()
    assert info.value.offset == 108  # the second chunk starts after 4 + 100 + 4 bytes
    with pytest.raises(StreamTruncatedError):
        VolumeFrameDecoder(io.BytesIO(b"\x00\x00")).read()
