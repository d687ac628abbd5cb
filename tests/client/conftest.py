"""Fixtures of the client tests: an in-process emulator, an entry object, fast retries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from odps import ODPS as PyODPS
from odps.tunnel import TableTunnel as PyTableTunnel

from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.transport import retry


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait milliseconds, so failure tests stay fast (Retry-After still applies);
    a tunnel request answered 308/429 over and over gives up after 5 s instead of never."""
    monkeypatch.setattr(options, "retry_delay", 0.001)
    monkeypatch.setattr(options, "retry_max_delay", 0.01)
    monkeypatch.setattr(options, "tunnel_retry_base_delay", 0.001)
    monkeypatch.setattr(options, "tunnel_retry_max_delay", 0.01)
    monkeypatch.setattr(options, "tunnel_retry_deadline", 5.0)


class VirtualClock:
    """A clock for the client's retries and polls (``retry.clock``): sleeping only moves
    its time on, and each wait is recorded in ``sleeps``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """Every retry and poll of the client waits on a virtual clock: no real sleeping."""
    clock = VirtualClock()
    monkeypatch.setattr(retry, "clock", clock)
    return clock


@pytest.fixture
def odps(emulator) -> ODPS:
    """Our entry object, discovering the tunnel endpoint through the service endpoint."""
    return ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )


@pytest.fixture
def pyodps(emulator) -> PyODPS:
    """The official client, unchanged, on the emulator: the judge of our wire behaviour."""
    return PyODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        endpoint=emulator.endpoint,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )


@pytest.fixture
def py_tunnel(pyodps: PyODPS) -> PyTableTunnel:
    return PyTableTunnel(pyodps)


@pytest.fixture
def tunnel(odps: ODPS) -> TableTunnel:
    return TableTunnel(odps)


@pytest.fixture
def faults(emulator) -> Iterator:
    """The emulator's fault registry, emptied after the test."""
    emulator.faults.clear()
    yield emulator.faults
    emulator.faults.clear()
