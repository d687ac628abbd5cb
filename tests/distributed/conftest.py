"""Fixtures of the distributed-Airflow test: the emulator with a per-connection cap, the cluster.

The cluster code lives in ``scripts/distributed_airflow`` (shared with ``make demo-distributed``),
so ``scripts/`` goes on ``sys.path`` here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from distributed_airflow.cluster import AirflowCluster  # noqa: E402
from distributed_airflow.scenario import emulator_env  # noqa: E402

from airflow_provider_odps_tunnel.emulator import Emulator  # noqa: E402

#: Bytes per second each block stream may move: slow enough that writers are mid-block
#: for seconds, so a killed worker interrupts block bodies.
CAP = 128 * 1024
#: Never reached: set so the emulator counts the block bodies in flight (which tells the
#: test when every writer is mid-block).
STREAMS = 64


@pytest.fixture
def capped_emulator(tmp_path: Path) -> Iterator[Any]:
    """An emulator of its own (a child process) capping each upload body at ``CAP``."""
    emu = Emulator(
        tmp_path / "emulator", subprocess=True, upload_bandwidth=CAP, stream_limit=STREAMS
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def cluster(capped_emulator: Any, tmp_path: Path) -> Iterator[AirflowCluster]:
    """PostgreSQL, Redis, Airflow's components and two Celery workers of two slots each."""
    airflow = AirflowCluster(
        tmp_path / "cluster",
        SCRIPTS / "distributed_airflow" / "dags",
        env=emulator_env(capped_emulator),
        concurrency=2,
    )
    try:
        airflow.start_services()
        airflow.start_airflow()
        airflow.add_worker()
        airflow.add_worker()
        airflow.start_sampling()
        yield airflow
    finally:
        airflow.stop()
