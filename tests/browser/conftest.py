"""Fixtures of the browser test: the emulator, Airflow's components, Chromium.

One ``airflow standalone`` (API server, scheduler, DAG processor, triggerer) serves the
whole module: it starts on loopback in a throw-away AIRFLOW_HOME, with the example DAGs and
this folder's ``dags/`` in its DAG bundles and ``odps_tunnel_default`` pointing at the session
emulator. The simple auth manager makes every visitor an admin, so the browser needs no
login, and connection testing is enabled.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page
from polling import wait_until
from provider.helpers import EXAMPLES_DIR
from provider.standalone import AirflowStandalone

from .chromium import PageErrors, Screenshots, chromium
from .server_logs import ServerLogScanner

BROWSER_DAGS_DIR = Path(__file__).resolve().parent / "dags"
#: The DAGs the tests use; the server is ready once the DAG processor has parsed them.
DAG_IDS = ("example_odps_load", "browser_odps_sql")


def emulator_connection(emu: Any, secret: str | None = None) -> dict[str, Any]:
    """An ``odps_tunnel`` connection to ``emu``, its extra a dict (``secret`` replaces the
    emulator's key, to test a wrong one)."""
    return {
        "conn_type": "odps_tunnel",
        "login": emu.access_id,
        "password": secret or emu.secret_access_key,
        "extra": {"project": emu.project, "endpoint": emu.endpoint},
    }


@dataclass
class AirflowUi:
    """A running Airflow: its base URL, its processes and a scanner of its logs."""

    url: str
    standalone: AirflowStandalone
    logs: ServerLogScanner

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the REST API (``/api/v2`` + ``path``); returns the status and the JSON."""
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def healthy(self) -> bool:
        try:
            status, health = self.api("GET", "/monitor/health")
        except (OSError, ValueError):  # not listening yet
            return False
        return status == 200 and all(
            part.get("status") == "healthy"
            for name, part in health.items()
            if name in ("metadatabase", "scheduler", "dag_processor", "triggerer")
        )

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120) -> str:
        """Poll a DAG run until it ends; returns its state."""

        def ended() -> str | None:
            _, run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            state = (run or {}).get("state")
            return state if state in ("success", "failed") else None

        return wait_until(
            ended,
            timeout=timeout,
            interval=0.5,
            message=lambda: f"run {run_id} of {dag_id} to end\n{self.standalone.log_tail()}",
        )


@pytest.fixture(scope="module")
def airflow_ui(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUi]:
    home = tmp_path_factory.mktemp("airflow-ui-home")
    bundles = [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 5},
        }
        for name, path in (("examples", EXAMPLES_DIR), ("browser-test", BROWSER_DAGS_DIR))
    ]
    standalone = AirflowStandalone(  # the bundle list below replaces its one-folder bundle
        home,
        EXAMPLES_DIR,
        {
            "AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT": json.dumps(emulator_connection(emulator)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        },
    )
    ui = AirflowUi(
        f"http://127.0.0.1:{standalone.env['AIRFLOW__API__PORT']}",
        standalone,
        ServerLogScanner(home),
    )
    standalone.start()
    try:
        wait_until(
            ui.healthy,
            timeout=120,
            interval=0.5,
            message=lambda: f"Airflow to be healthy\n{standalone.log_tail()}",
        )
        wait_until(
            lambda: (
                len(standalone.query("SELECT dag_id FROM dag WHERE dag_id IN (?, ?)", *DAG_IDS))
                == len(DAG_IDS)
            ),
            timeout=120,
            interval=0.5,
            message=lambda: f"the DAG processor to parse {DAG_IDS}\n{standalone.log_tail()}",
        )
        yield ui
    finally:
        standalone.stop()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    """The folder of this run's screenshots (its path is printed: ``pytest -s`` shows it)."""
    shots = Screenshots(tmp_path_factory.mktemp("airflow-ui-screenshots"))
    print(f"\nscreenshots of the Airflow UI steps: {shots.folder}")
    return shots


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[tuple[Page, PageErrors]]:
    """A new tab, and what it reports as broken."""
    tab = browser.new_page()
    errors = PageErrors()
    errors.watch(tab)
    try:
        yield tab, errors
    finally:
        tab.close()
