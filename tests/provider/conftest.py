"""Fixtures of the provider tests: Airflow's metadata DB, DAG bundles, the emulator, connections.

The block below runs when pytest first collects this directory. ``dag.test()`` only runs
DAGs that live in a configured DAG bundle, so two local bundles are configured: the example
DAGs (``dags_examples/``) and the test DAGs (``tests/dags/``). Airflow reads this option when
a run starts, not at import, so setting it here is early enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import EXAMPLES_DIR, TEST_DAGS_DIR

os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "examples",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(EXAMPLES_DIR), "refresh_interval": 0},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(TEST_DAGS_DIR), "refresh_interval": 0},
        },
    ]
)


class FakeTaskStateStore:
    """A dict-backed stand-in for ``context["task_state_store"]`` (same get/set/delete API)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.data[key] = json.loads(json.dumps(value))  # JSON only, as the real store
        self.writes.append(key)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()


@pytest.fixture
def state_store() -> FakeTaskStateStore:
    return FakeTaskStateStore()


def connection_json(emu: Any, **extra: Any) -> str:
    """The ``AIRFLOW_CONN_*`` value for an ``odps_tunnel`` connection to ``emu``."""
    return json.dumps(
        {
            "conn_type": "odps_tunnel",
            "login": emu.access_id,
            "password": emu.secret_access_key,
            "extra": {"project": emu.project, "endpoint": emu.endpoint, **extra},
        }
    )


@pytest.fixture
def odps_conn(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The session emulator, reachable as ``odps_tunnel_default``; faults cleared after use."""
    monkeypatch.setenv("AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT", connection_json(emulator))
    emulator.faults.clear()
    yield emulator
    emulator.faults.clear()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB (SQLite, in the AIRFLOW_HOME the root conftest made)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )
