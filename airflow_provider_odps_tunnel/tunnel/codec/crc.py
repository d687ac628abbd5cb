"""Checksums of the tunnel formats, from maintained native libraries.

CRC32C (Castagnoli) protects records and Arrow frames; plain CRC32 protects volume files.
The ``crc32c`` package uses the CPU's CRC instruction and accepts any buffer (bytes,
memoryview, ``pyarrow.Buffer``) without a copy, which is what makes Arrow framing cheap.

An Arrow body carries a CRC of every chunk and one of the whole payload.
:func:`crc32c_combiner` derives the second from the first (the CRC of a concatenation
from the CRCs of its parts, as zlib's ``crc32_combine`` does), so the payload is read once.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable

from crc32c import crc32c as _crc32c

__all__ = ["crc32c", "crc32", "crc32c_combiner"]

_CASTAGNOLI = 0x82F63B78  # the polynomial, bit-reversed


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``crc``; the CRC of no bytes is 0."""
    return _crc32c(data, crc)


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The ordinary (zlib) CRC-32, used by the volume tunnel."""
    return zlib.crc32(data, crc)


def _times(matrix: list[int], vector: int) -> int:
    """``matrix`` (32 columns over GF(2)) applied to ``vector``."""
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, column) for column in matrix]


@functools.lru_cache(maxsize=8)
def crc32c_combiner(length: int) -> Callable[[int, int], int]:
    """``combine(crc_a, crc_b)``: the CRC32C of ``a + b`` from the CRC32Cs of ``a`` and of
    ``b``, for any ``a`` and a ``b`` of exactly ``length`` bytes.

    The CRC of ``a`` is carried over ``length`` zero bytes by one linear operator (built by
    repeated squaring, about a millisecond, once per length), applied with four table
    lookups.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, not {length}")
    odd = [_CASTAGNOLI] + [1 << n for n in range(31)]  # one zero bit
    even = _square(odd)  # two zero bits
    odd = _square(even)  # four zero bits
    operator = [1 << n for n in range(32)]
    left = length
    while left:
        even = _square(odd)  # one zero byte, then 4, 16, ...
        if left & 1:
            operator = [_times(even, column) for column in operator]
        left >>= 1
        if not left:
            break
        odd = _square(even)
        if left & 1:
            operator = [_times(odd, column) for column in operator]
        left >>= 1
    tables = []
    for k in range(4):
        columns = operator[8 * k : 8 * k + 8]
        table = [0] * 256
        for byte in range(1, 256):
            low = byte & -byte
            table[byte] = table[byte ^ low] ^ columns[low.bit_length() - 1]
        tables.append(table)
    t0, t1, t2, t3 = tables

    def combine(crc_a: int, crc_b: int) -> int:
        return (
            t0[crc_a & 0xFF]
            ^ t1[(crc_a >> 8) & 0xFF]
            ^ t2[(crc_a >> 16) & 0xFF]
            ^ t3[crc_a >> 24]
            ^ crc_b
        )

    return combine
