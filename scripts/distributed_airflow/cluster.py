"""A distributed Airflow on one machine: CeleryExecutor workers that share nothing local.

:class:`AirflowCluster` starts PostgreSQL (metadata DB and Celery result backend), Redis
(the broker), migrates the DB, then runs the API server, scheduler, DAG processor and
triggerer, and any number of Celery workers. Every component is its own process group with
its own ``AIRFLOW_HOME``, working directory, ``TMPDIR`` and ``HOME``, so a task can only
reach another task's data through what Airflow shares (metadata DB, XCom, broker) and what
the DAG's run names (source files by URI, the ODPS endpoint). Everything listens on
127.0.0.1 on free ports and lives in one throw-away directory; :meth:`AirflowCluster.stop`
ends every process, also after a failure.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import psycopg2

from .services import PostgreSQL, ProcessGroup, Redis, free_port, stop_groups

__all__ = ["AirflowCluster", "Worker"]

_TASK_TITLE = re.compile(r"^airflow worker -- ([0-9a-f-]{36})$")
BIN = Path(sys.executable).parent


class Worker:
    """One Celery worker: a process group with a home, working and temporary directory."""

    def __init__(self, name: str, group: ProcessGroup, root: Path):
        self.name = name
        self.group = group
        self.root = root
        self.peak_rss = 0  # bytes, the whole worker (all of its processes at one moment)
        self.peak_task_rss = 0  # bytes, the largest single task process

    def task_processes(self) -> dict[str, psutil.Process]:
        """The processes running task code here, by task instance id (hex, no dashes)."""
        found = {}
        for proc in self.group.members():
            try:
                title = proc.cmdline()[0].strip()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, IndexError):
                continue
            match = _TASK_TITLE.match(title)
            if match:
                found[match.group(1).replace("-", "")] = proc
        return found

    def ready(self) -> bool:
        """Whether Celery reports the worker ready to take tasks."""
        log = self.group.log
        return log.exists() and f"{self.name}@localhost ready" in log.read_text(errors="replace")

    def sample_rss(self) -> None:
        total = 0
        for proc in self.group.members():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                rss = proc.memory_info().rss
                total += rss
                if _TASK_TITLE.match((proc.cmdline() or [""])[0].strip()):
                    self.peak_task_rss = max(self.peak_task_rss, rss)
        self.peak_rss = max(self.peak_rss, total)


class AirflowCluster:
    """PostgreSQL, Redis and Airflow's components with Celery workers, in ``root``.

    ``dags_dir`` is the DAG bundle every component reads (the same code on every host);
    ``env`` is added to every component's environment (connections, for example);
    ``concurrency`` is the task slots of each worker.
    """

    def __init__(
        self,
        root: Path,
        dags_dir: Path,
        env: Mapping[str, str] | None = None,
        concurrency: int = 4,
        api_workers: int = 1,
    ):
        self.root = root
        self.dags_dir = dags_dir
        self.concurrency = concurrency
        self.postgres = PostgreSQL()
        self.redis = Redis(root / "redis")
        self.api_port = free_port()
        self.components: dict[str, ProcessGroup] = {}
        self.workers: list[Worker] = []
        self._extra = dict(env or {})
        self._api_workers = api_workers
        # Shared by every component, as a deployment shares them through its config.
        self._fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self._jwt_secret = secrets.token_hex(32)
        self._expected_dead: list[ProcessGroup] = []
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()

    # ------------------------------------------------------------------ configuration
    def base_env(self) -> dict[str, str]:
        """The configuration every component shares (as ``AIRFLOW__*`` variables)."""
        keep = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME", "PYTHONPATH")
        env = {k: v for k, v in os.environ.items() if not k.startswith(keep)}
        pg = self.postgres
        env.update(
            {
                "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CORE__PARALLELISM": "64",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": str(self._api_workers),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                    f"http://127.0.0.1:{self.api_port}/execution/"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # A task whose worker died stops heartbeating: fail it (and so retry it)
                # after 20 s rather than the default 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                    [
                        {
                            "name": "dags",
                            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                            "kwargs": {"path": str(self.dags_dir), "refresh_interval": 5},
                        }
                    ]
                ),
                **self._extra,
            }
        )
        return env

    def _own_dirs(self, name: str) -> tuple[Path, dict[str, str]]:
        """A component's own directory with home, tmp and AIRFLOW_HOME; its env additions."""
        base = self.root / name
        for sub in ("airflow", "home", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        return base, {
            "AIRFLOW_HOME": str(base / "airflow"),
            "HOME": str(base / "home"),
            "TMPDIR": str(base / "tmp"),
        }

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run an ``airflow`` CLI command against the cluster; its stdout."""
        base, dirs = self._own_dirs("cli")
        proc = subprocess.run(
            [str(BIN / "airflow"), *args],
            env={**self.base_env(), **dirs},
            cwd=base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    # ------------------------------------------------------------------ life cycle
    def start_services(self) -> None:
        """PostgreSQL and Redis, then ``airflow db migrate``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.redis.start()
        deadline = time.monotonic() + 30
        while not self.redis.ready():
            if time.monotonic() > deadline or not self.redis.group.alive():
                raise RuntimeError("Redis did not start:\n" + self.redis.group.tail())
            time.sleep(0.05)
        self.airflow("db", "migrate", timeout=600)

    def start_component(self, name: str, *argv: str) -> ProcessGroup:
        base, dirs = self._own_dirs(name)
        group = ProcessGroup(
            name,
            [str(BIN / "airflow"), *argv],
            env={**self.base_env(), **dirs},
            cwd=base,
            log=base / f"{name}.log",
        )
        self.components[name] = group
        return group

    def start_airflow(self) -> None:
        """The API server, scheduler, DAG processor and triggerer."""
        self.start_component("api-server", "api-server")
        self.start_component("scheduler", "scheduler")
        self.start_component("dag-processor", "dag-processor")
        self.start_component("triggerer", "triggerer")

    def restart_scheduler(self) -> None:
        """Stop the scheduler (SIGTERM, as a deploy or a host restart does) and start anew."""
        self.components["scheduler"].stop()
        self.start_component("scheduler", "scheduler")

    def add_worker(self) -> Worker:
        """One more Celery worker (its own process group and directories)."""
        name = f"worker{len(self.workers) + 1}"
        base, dirs = self._own_dirs(name)
        argv = [str(BIN / "airflow"), "celery", "worker", "-H", f"{name}@localhost"]
        argv += ["-c", str(self.concurrency), "--skip-serve-logs"]
        argv += ["--without-gossip", "--without-mingle"]
        group = ProcessGroup(
            name, argv, env={**self.base_env(), **dirs}, cwd=base, log=base / f"{name}.log"
        )
        worker = Worker(name, group, base)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.group.alive()]

    def start_sampling(self, interval: float = 0.5) -> None:
        """Sample every worker's memory in the background (peak RSS)."""

        def loop() -> None:
            while not self._sampling.wait(interval):
                for worker in self.live_workers():
                    worker.sample_rss()

        self._sampler = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        """Stop every process this cluster started and remove PostgreSQL's files."""
        self._sampling.set()
        groups = [w.group for w in self.workers] + list(self.components.values())
        with contextlib.suppress(Exception):
            stop_groups(groups, timeout=15)
        with contextlib.suppress(Exception):
            self.redis.stop()
        self.postgres.stop()

    # ------------------------------------------------------------------ observing
    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Rows of a query on the metadata DB."""
        with contextlib.closing(psycopg2.connect(self.postgres.dsn)) as db:
            db.autocommit = True
            with db.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()

    def api_ready(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=3)
        try:
            conn.request("GET", "/api/v2/monitor/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def scheduler_ready(self) -> bool:
        rows = self.query(
            "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' "
            "AND latest_heartbeat > now() - interval '20 seconds'"
        )
        return bool(rows)

    def dag_parsed(self, dag_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM dag WHERE dag_id = %s", dag_id))

    def failed_component(self) -> str | None:
        """A component or worker that exited (with its log tail), else None."""
        for group in [*self.components.values(), *(w.group for w in self.workers)]:
            if not group.alive() and group not in self._expected_dead:
                return group.tail()
        return None

    def kill_worker(self, worker: Worker) -> None:
        """SIGKILL every process of ``worker`` at once, as if its host died."""
        self._expected_dead.append(worker.group)
        worker.group.kill()

    def logs_tail(self, lines: int = 30) -> str:
        groups = [*self.components.values(), *(w.group for w in self.workers)]
        return "\n".join(g.tail(lines) for g in groups)
