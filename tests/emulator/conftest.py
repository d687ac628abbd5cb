"""Fixtures of the emulator tests: the emulator itself and pyodps pointed at it.

pyodps is the judge here: every test drives the emulator with the official client.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def odps_entry(emulator):
    from odps import ODPS

    return ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )


@pytest.fixture
def tunnel(odps_entry, emulator):
    from odps.tunnel import TableTunnel

    return TableTunnel(odps_entry, endpoint=emulator.tunnel_endpoint)
