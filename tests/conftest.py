"""Test-wide set-up.

The environment block below runs when pytest imports this file, which is before any test
module (and therefore Airflow) is imported: Airflow reads its configuration once, at import.
Every run gets a throw-away AIRFLOW_HOME with a SQLite database inside it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="odps-tunnel-airflow-home-")).resolve()
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"

import pytest  # noqa: E402  (imported after the environment is set, on purpose)

# One emulator for the whole run (fixtures `emulator` and `emulator_table`). With one per
# test folder, two servers answered for the same project name, and pyodps entries made in
# one folder's tests led the other folder's SQL tests to the wrong server.
pytest_plugins = ["airflow_provider_odps_tunnel.emulator.pytest_plugin"]

REPO_ROOT = Path(__file__).resolve().parent.parent
# The golden tunnel-codec vectors (pyodps 0.13.2 output), kept in the repository: see
# tests/vectors/README.md. Tests read them through the `vectors_dir` fixture below.
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """Golden tunnel-codec vectors, kept in ``tests/vectors`` of this repository."""
    if not (VECTORS_DIR / "manifest.json").is_file():
        pytest.fail(
            f"golden vectors not found: expected {VECTORS_DIR / 'manifest.json'} "
            "(tests/vectors/ is part of the repository checkout)",
            pytrace=False,
        )
    return VECTORS_DIR


@pytest.fixture(autouse=True)
def _forget_pyodps_global_endpoint():
    """pyodps copies the tunnel endpoint of every new ``ODPS(...)`` into its global options,
    where entries made later without one pick it up: reset it after each test so no test
    sends tunnel requests to a server another test chose."""
    yield
    import sys

    odps = sys.modules.get("odps")
    if odps is not None:
        odps.options.tunnel.endpoint = None
