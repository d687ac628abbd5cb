"""Fixtures of the reliability suite: fast retries, our client (both shared with the client
tests), checksums of table contents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pytest
from client.conftest import fast_retries, faults, odps, tunnel  # noqa: F401 - fixtures


def fingerprint(rows: Iterable[Iterable]) -> tuple[int, str]:
    """Row count and an order-independent checksum of every value."""
    digests = sorted(hashlib.sha256(repr(tuple(r)).encode()).hexdigest() for r in rows)
    return len(digests), hashlib.sha256("".join(digests).encode()).hexdigest()


def table_fingerprint(emulator, table: str) -> tuple[int, str]:
    data = emulator.catalog.read_table(emulator.project, table, None)
    return fingerprint(tuple(r.values()) for r in data.to_pylist())


def show(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Print past pytest's capture, so the lines appear with or without ``-s``."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))
