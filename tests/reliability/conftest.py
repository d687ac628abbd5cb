"""Fixtures of the reliability suite: fast retries, our client, checksums of table contents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import pytest

from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel
from airflow_provider_odps_tunnel.tunnel.options import options


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "retry_delay", 0.001)
    monkeypatch.setattr(options, "retry_max_delay", 0.01)


@pytest.fixture
def odps(emulator) -> ODPS:
    return ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )


@pytest.fixture
def tunnel(odps: ODPS) -> TableTunnel:
    return TableTunnel(odps)


@pytest.fixture
def faults(emulator) -> Iterator:
    emulator.faults.clear()
    yield emulator.faults
    emulator.faults.clear()


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
