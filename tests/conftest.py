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

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """Golden tunnel-codec vectors, kept in ``<repo>/../shared/vectors``."""
    if not VECTORS_DIR.is_dir():
        pytest.fail(
            f"golden vectors not found: expected the directory {VECTORS_DIR} "
            "(the shared/ folder must sit next to the repository checkout)",
            pytrace=False,
        )
    return VECTORS_DIR
