"""Paths and small helpers shared by the provider tests."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

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


def secret_forms(secret: str) -> set[str]:
    """The secret as it could appear: plain, URL-encoded, hex, and base64 at any offset."""
    raw = secret.encode()
    found = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret), raw.hex()}
    found.add(raw.hex().upper())
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        # Skip the characters mixing padding bytes in; drop the tail that depends on
        # what follows the secret.
        start = (pad * 4 + 2) // 3
        found.add(encoded[start : len(encoded) - 4])
        urlsafe = base64.urlsafe_b64encode(b"\0" * pad + raw).decode()
        found.add(urlsafe[start : len(urlsafe) - 4])
    return found
