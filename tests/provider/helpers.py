"""Paths and small helpers shared by the provider tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "dags_examples"
TEST_DAGS_DIR = REPO_ROOT / "tests" / "dags"


def load_dag_module(path: Path) -> Any:
    """The module of the DAG file ``path`` (imported fresh, under a unique name); its
    ``dag`` attribute is the DAG, and its globals are shared with ``dag.test()`` runs."""
    name = f"_dagfile_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
