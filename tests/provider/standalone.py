"""Run ``airflow standalone`` (scheduler, dag-processor, api-server, triggerer) for a test.

Everything listens on loopback and free ports, with SQLite and the LocalExecutor, in a
temporary AIRFLOW_HOME. :meth:`AirflowStandalone.stop` ends every process it started, by
pid: the standalone process and each of its descendants.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

_TASK_TITLE = re.compile(r"^airflow worker -- ([0-9a-f-]{36})$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowStandalone:
    """One ``airflow standalone`` with its own home, DAG bundle and environment."""

    def __init__(self, home: Path, dags_dir: Path, env: dict[str, str], parallelism: int = 3):
        self.home = home
        self.db_path = home / "airflow.db"
        api_port = free_port()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))
        }
        self.env.update(
            {
                "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                    [
                        {
                            "name": "dags",
                            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                            "kwargs": {"path": str(dags_dir), "refresh_interval": 5},
                        }
                    ]
                ),
                **env,
            }
        )
        self.process: subprocess.Popen | None = None
        self._log = None
        self._known: dict[int, psutil.Process] = {}

    def start(self) -> AirflowStandalone:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.home / "standalone.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
        )
        return self

    def _remember_children(self) -> None:
        """Keep handles on every descendant, so stop() can end them after reparenting."""
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            for child in root.children(recursive=True):
                self._known.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Read the metadata DB (read-only)."""
        if not self.db_path.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
                return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # not migrated yet, or locked for a moment
            return []
        finally:
            self._remember_children()

    def airflow(self, *args: str, timeout: float = 120) -> str:
        """Run an ``airflow`` CLI command against this instance."""
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def task_processes(self) -> dict[str, psutil.Process]:
        """The processes running task code, by task instance id (hex, without dashes).

        The task runner titles itself ``airflow worker -- <ti id>``; the LocalExecutor
        worker that supervises it is ``airflow worker -- LocalExecutor: <ti id>``.
        """
        self._remember_children()
        found = {}
        for proc in self._known.values():
            try:
                title = proc.cmdline()[0].strip()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, IndexError):
                continue
            match = _TASK_TITLE.match(title)
            if match:
                found[match.group(1).replace("-", "")] = proc
        return found

    def log_tail(self, lines: int = 60) -> str:
        path = self.home / "standalone.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the standalone process and each descendant, then SIGKILL what is left."""
        self._remember_children()
        procs = list(self._known.values())
        if self.process is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.insert(0, psutil.Process(self.process.pid))
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=20)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        if self.process is not None:
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
