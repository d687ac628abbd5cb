"""Running an emulator: in a background thread of this process, or as a child process.

:class:`Emulator` is the Python entry point (a context manager). In-process, uvicorn serves
the app from a daemon thread on a socket bound before start, so ``port=0`` picks a free port
and :meth:`Emulator.restart` reuses it. With ``subprocess=True`` the server runs as
``python -m airflow_provider_odps_tunnel.emulator serve`` (what crash tests need:
:meth:`Emulator.kill` sends SIGKILL); faults and the clock are then driven over the admin
HTTP resources, with the same Python API.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess as _subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import uvicorn

from .app import EmulatorApp
from .catalog import Catalog
from .cli import option_args
from .clock import Clock
from .faults import FaultRegistry
from .state import EmulatorConfig, EmulatorState

__all__ = ["Emulator", "RemoteFaults", "RemoteClock"]

_START_TIMEOUT = 30.0
_POLL = 0.02


class RemoteFaults:
    """The fault API of a child-process emulator, over ``/__emulator__/faults``."""

    def __init__(self, base_url: str):
        self._url = base_url + "/__emulator__/faults"

    def add(self, **spec: Any) -> dict[str, Any]:
        resp = requests.post(self._url, data=json.dumps(spec), timeout=10)
        if resp.status_code != 200:
            raise ValueError(resp.json().get("error", resp.text))
        return resp.json()

    def clear(self) -> None:
        requests.delete(self._url, timeout=10).raise_for_status()

    @property
    def injected(self) -> list[dict[str, Any]]:
        return requests.get(self._url, timeout=10).json()["injected"]

    @property
    def active(self) -> list[dict[str, Any]]:
        return requests.get(self._url, timeout=10).json()["faults"]

    @property
    def counts(self) -> dict[str, int]:
        return requests.get(self._url, timeout=10).json()["counts"]


class RemoteClock:
    """The clock of a child-process emulator, over ``/__emulator__/clock``."""

    def __init__(self, base_url: str):
        self._url = base_url + "/__emulator__/clock"

    def _post(self, spec: dict[str, Any]) -> float:
        resp = requests.post(self._url, data=json.dumps(spec), timeout=10)
        resp.raise_for_status()
        return float(resp.json()["now"])

    def now(self) -> float:
        return float(requests.get(self._url, timeout=10).json()["now"])

    @property
    def offset(self) -> float:
        return float(requests.get(self._url, timeout=10).json()["offset"])

    def advance(self, seconds: float) -> float:
        return self._post({"advance": seconds})

    def set(self, timestamp: float) -> float:
        return self._post({"set": timestamp})

    def reset(self) -> None:
        self._post({"reset": True})


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class Emulator:
    """A local MaxCompute tunnel emulator serving ``data_dir``.

    ``endpoint`` is the service endpoint (``http://HOST:PORT/api``) to give ``ODPS(...)``;
    ``tunnel_endpoint`` (``http://HOST:PORT``) is what the tunnel router returns. ``auth``
    verifies v2 signatures made with ``access_id``/``secret_access_key``. Extra keyword
    arguments are :class:`EmulatorConfig` fields (``session_lifetime``, ``max_field_size``,
    ``preview_limit``, ``instance_result_limit``, ``session_rate_limit``,
    ``commit_rate_limit``, ``instance_wait``, ``upsert_commit_delay``, ``request_log``,
    ``request_log_stderr``).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        project: str = "test_project",
        access_id: str = "test-access-id",
        secret_access_key: str = "test-secret",
        auth: bool = True,
        subprocess: bool = False,
        log_level: str = "warning",
        **options: Any,
    ):
        self.config = EmulatorConfig(
            data_dir=Path(data_dir).resolve(),
            host=host,
            port=port,
            project=project,
            access_id=access_id,
            secret_access_key=secret_access_key,
            auth=auth,
            **options,
        )
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.subprocess = subprocess
        self.log_level = log_level
        self.catalog = Catalog(self.config.data_dir)
        self.catalog.create_project(project)
        self._faults = FaultRegistry()
        self._clock = Clock(self.config.data_dir / "clock.json")
        self._state: EmulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: _subprocess.Popen | None = None
        self._port = port

    # ------------------------------------------------------------------ properties
    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self._port}/api"

    @property
    def tunnel_endpoint(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def project(self) -> str:
        return self.config.project

    @property
    def access_id(self) -> str:
        return self.config.access_id

    @property
    def secret_access_key(self) -> str:
        return self.config.secret_access_key

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def faults(self) -> FaultRegistry | RemoteFaults:
        """Fault injection (see ``faults``); survives restarts of an in-process emulator."""
        if self.subprocess:
            return RemoteFaults(self.tunnel_endpoint)
        return self._faults

    @property
    def clock(self) -> Clock | RemoteClock:
        """The emulator's clock: ``advance(seconds)``, ``set(epoch)``, ``reset()``, ``now()``.

        Session expiry and rate-limit windows follow it; it survives restarts."""
        if self.subprocess:
            return RemoteClock(self.tunnel_endpoint)
        return self._clock

    @property
    def request_log_path(self) -> Path:
        """The JSON-lines request log (when ``request_log`` is on)."""
        return self.data_dir / "requests.jsonl"

    @property
    def pid(self) -> int:
        """The process serving requests (this one, or the child with ``subprocess=True``)."""
        if self.subprocess:
            if self._process is None:
                raise RuntimeError("the emulator process is not running")
            return self._process.pid
        return os.getpid()

    @property
    def running(self) -> bool:
        if self.subprocess:
            return self._process is not None and self._process.poll() is None
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        """Start serving; returns once the server accepts connections."""
        if self.running:
            return self
        if self.subprocess:
            self._start_process()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        sock = _bind(self.host, self._port)
        self._port = sock.getsockname()[1]
        self._state = EmulatorState(
            EmulatorConfig(**{**self.config.__dict__, "port": self._port}),
            faults=self._faults,
            clock=self._clock,
        )
        self._state.port = self._port
        config = uvicorn.Config(
            EmulatorApp(self._state),
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=120,
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="odps-tunnel-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(_POLL)
        sock.close()  # uvicorn serves from its own duplicate of the socket

    def _start_process(self) -> None:
        if not self._port:
            probe = _bind(self.host, 0)
            self._port = probe.getsockname()[1]
            probe.close()
        ready = self.data_dir / "emulator.ready.json"
        ready.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "airflow_provider_odps_tunnel.emulator",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self._port),
            "--log-level",
            self.log_level,
            "--ready-file",
            str(ready),
            *option_args(self.config),
        ]
        log = open(self.data_dir / "emulator.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self._process = _subprocess.Popen(cmd, stdout=log, stderr=_subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the emulator process did not start; see {self.data_dir / 'emulator.log'}"
                )
            time.sleep(_POLL)

    def stop(self) -> None:
        """Stop serving (gracefully); committed data and sessions stay on disk."""
        if self.subprocess:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=15)
                except _subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
            return
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._state is not None:
            self._state.close()
        self._server = self._thread = self._state = None

    def kill(self) -> None:
        """SIGKILL a child-process emulator (crash tests); in-process emulators cannot be."""
        if not self.subprocess:
            raise RuntimeError("kill() needs Emulator(..., subprocess=True)")
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self) -> Emulator:
        """Stop and start again on the same port and data directory."""
        self.stop()
        return self.start()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Emulator {self.tunnel_endpoint} data_dir={self.data_dir}>"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
