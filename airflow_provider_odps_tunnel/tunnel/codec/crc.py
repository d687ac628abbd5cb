"""Checksums of the tunnel formats, from maintained native libraries.

CRC32C (Castagnoli) protects records and Arrow frames; plain CRC32 protects volume files.
The ``crc32c`` package uses the CPU's CRC instruction and accepts any buffer (bytes,
memoryview, ``pyarrow.Buffer``) without a copy, which is what makes Arrow framing cheap.
"""

from __future__ import annotations

import zlib

from crc32c import crc32c as _crc32c

__all__ = ["crc32c", "crc32"]


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C of ``data``, continuing from ``crc``; the CRC of no bytes is 0."""
    return _crc32c(data, crc)


def crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The ordinary (zlib) CRC-32, used by the volume tunnel."""
    return zlib.crc32(data, crc)
