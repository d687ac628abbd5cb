"""Serving an emulator: :func:`serve`, and :class:`Emulator` to run one from Python.

:func:`serve` is the one start-up: it binds the socket, loads the data directory, serves it
with uvicorn until told to stop, and closes the state; the ``odps-tunnel-emulator``
command, :class:`Emulator` and the pytest fixtures all go through it. :class:`Emulator` is
the Python entry point (a context manager). In-process, :func:`serve` runs in a daemon
thread on a socket bound before start, so ``port=0`` picks a free port and
:meth:`Emulator.restart` reuses it. With ``subprocess=True`` the server runs as
``python -m airflow_provider_odps_tunnel.emulator serve`` (what crash tests need:
:meth:`Emulator.kill` sends SIGKILL); faults and the clock are then driven over the admin
HTTP resources, with the same Python API. Nothing here needs an HTTP client library.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import os
import signal
import socket
import subprocess as _subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from .app import EmulatorApp
from .catalog import Catalog
from .clock import Clock
from .faults import FaultRegistry
from .http_protocol import http_protocol
from .state import EmulatorConfig, EmulatorState

__all__ = ["Emulator", "RemoteFaults", "RemoteClock", "serve", "option_args", "SERVE_OPTIONS"]

_START_TIMEOUT = 30.0
_POLL = 0.02

# EmulatorConfig field -> ``serve`` flag, for the options that take a value.
SERVE_OPTIONS = {
    "host": "--host",
    "project": "--project",
    "access_id": "--access-id",
    "secret_access_key": "--secret-access-key",
    "session_lifetime": "--session-lifetime",
    "max_field_size": "--max-field-size",
    "preview_limit": "--preview-limit",
    "instance_result_limit": "--instance-result-limit",
    "session_rate_limit": "--session-rate-limit",
    "commit_rate_limit": "--commit-rate-limit",
    "instance_wait": "--instance-wait",
    "upsert_commit_delay": "--upsert-commit-delay",
    "upsert_hasher": "--upsert-hasher",
    "upsert_idle_timeout": "--upsert-idle-timeout",
    "download_init_delay": "--download-init-delay",
    "quotas": "--quotas",
    "protected_projects": "--protected-projects",
    "upload_bandwidth": "--upload-bandwidth",
    "download_bandwidth": "--download-bandwidth",
    "stream_limit": "--stream-limit",
    "stream_limit_scope": "--stream-limit-scope",
    "request_latency": "--request-latency",
}


def option_args(config: EmulatorConfig) -> list[str]:
    """``serve`` flags reproducing ``config`` (used to start a child-process emulator)."""
    args: list[str] = []
    for name, value in config.options().items():
        if name in SERVE_OPTIONS and value is not None:
            args += [SERVE_OPTIONS[name], str(value)]
    if not config.auth:
        args.append("--no-auth")
    if not config.request_log:
        args.append("--no-request-log")
    if config.request_log_stderr:
        args.append("--request-log-stderr")
    if not config.download_metrics:
        args.append("--no-download-metrics")
    if config.idempotent_commit:
        args.append("--idempotent-commit")
    if config.upsert_partial_update:
        args.append("--upsert-partial-update")
    return args


def _admin_call(base_url: str, method: str, path: str, spec: dict[str, Any] | None = None) -> Any:
    """One request to an emulator's admin resource; its JSON answer, or ValueError."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        body = None if spec is None else json.dumps(spec).encode()
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        answer = json.loads(data) if data else None
    except ValueError:
        answer = None
    if resp.status != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ValueError(error or f"{method} {path}: HTTP {resp.status} {data[:200]!r}")
    return answer


class RemoteFaults:
    """The fault API of a child-process emulator, over ``/__emulator__/faults``."""

    def __init__(self, base_url: str):
        self._base = base_url

    def _call(self, method: str, spec: dict[str, Any] | None = None) -> Any:
        return _admin_call(self._base, method, "/__emulator__/faults", spec)

    def add(self, **spec: Any) -> dict[str, Any]:
        return self._call("POST", spec)

    def clear(self) -> None:
        self._call("DELETE")

    @property
    def injected(self) -> list[dict[str, Any]]:
        return self._call("GET")["injected"]

    @property
    def active(self) -> list[dict[str, Any]]:
        return self._call("GET")["faults"]

    @property
    def counts(self) -> dict[str, int]:
        return self._call("GET")["counts"]


class RemoteClock:
    """The clock of a child-process emulator, over ``/__emulator__/clock``."""

    def __init__(self, base_url: str):
        self._base = base_url

    def _call(self, method: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        return _admin_call(self._base, method, "/__emulator__/clock", spec)

    def _post(self, spec: dict[str, Any]) -> float:
        return float(self._call("POST", spec)["now"])

    def now(self) -> float:
        return float(self._call("GET")["now"])

    @property
    def offset(self) -> float:
        return float(self._call("GET")["offset"])

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


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class _Server(uvicorn.Server):
    """uvicorn's server, told when it has started, stoppable by an event, and stopping on
    SIGINT/SIGTERM without re-raising the signal afterwards (so the state gets closed)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Any,
        stop: threading.Event | None,
        handle_signals: bool,
    ):
        super().__init__(config)
        self._on_started = on_started
        self._stop = stop
        self._handle_signals = handle_signals

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()

    async def on_tick(self, counter: int) -> bool:
        if self._stop is not None and self._stop.is_set():
            return True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    config: EmulatorConfig,
    *,
    sock: socket.socket | None = None,
    log_level: str = "info",
    configure_logging: bool = False,
    announce: bool = False,
    ready_file: str | os.PathLike[str] | None = None,
    started: threading.Event | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    faults: FaultRegistry | None = None,
    clock: Clock | None = None,
) -> None:
    """Serve ``config.data_dir`` until stopped; blocks, and closes the state on the way out.

    The server listens on ``sock`` (bound and listening; it is closed at the end) or else
    on a socket bound to ``config.host`` and ``config.port`` (0 picks a free port). Once it
    accepts connections it prints the endpoints, projects, key pair and data directory on
    stdout if ``announce`` is set, writes them as JSON (with the port) to ``ready_file`` if
    given, then sets ``started``. It stops when ``stop`` is set, or, run in the main thread
    with ``handle_signals``, on SIGINT or SIGTERM: open requests finish first.
    ``log_level`` is uvicorn's; ``configure_logging`` also sends the emulator's own log
    records to stderr at that level (what the command does). ``faults`` and ``clock`` are
    the registry and clock to use (an in-process :class:`Emulator` keeps them across
    restarts); by default the clock is the data directory's and the registry new.
    """
    if configure_logging:
        _configure_logging(log_level)
    if sock is None:
        sock = _bind(config.host, config.port)
    try:
        port = sock.getsockname()[1]
        config = dataclasses.replace(config, data_dir=Path(config.data_dir).resolve(), port=port)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        state = EmulatorState(config, faults=faults, clock=clock)
    except BaseException:
        sock.close()
        raise
    state.port = port

    def on_started() -> None:
        info = {
            "endpoint": f"http://{config.host}:{port}/api",
            "tunnel_endpoint": f"http://{config.host}:{port}",
            "projects": state.catalog.list_projects(),
            "access_id": config.access_id,
            "secret_access_key": config.secret_access_key,
            "auth": config.auth,
            "data_dir": str(config.data_dir),
            "request_log": str(state.request_log.path) if state.request_log.path else "off",
        }
        if announce:
            print("odps-tunnel-emulator serving")
            for key, value in info.items():
                print(f"  {key}: {value}")
            sys.stdout.flush()
        if ready_file:
            Path(ready_file).write_text(json.dumps({**info, "port": port}))
        if started is not None:
            started.set()

    server = _Server(
        uvicorn.Config(
            EmulatorApp(state),
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=120,
            http=http_protocol(),
        ),
        on_started,
        stop,
        handle_signals,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.close()


class Emulator:
    """A local MaxCompute tunnel emulator serving ``data_dir``.

    ``endpoint`` is the service endpoint (``http://HOST:PORT/api``) to give ``ODPS(...)``;
    ``tunnel_endpoint`` (``http://HOST:PORT``) is what the tunnel router returns. ``auth``
    verifies v2 signatures made with ``access_id``/``secret_access_key``. Extra keyword
    arguments are :class:`EmulatorConfig` fields (``session_lifetime``, ``max_field_size``,
    ``preview_limit``, ``instance_result_limit``, ``session_rate_limit``,
    ``commit_rate_limit``, ``instance_wait``, ``upsert_commit_delay``, ``quotas``,
    ``protected_projects``, ``download_init_delay``, ``download_metrics``,
    ``idempotent_commit``, ``request_log``, ``request_log_stderr``, and the service model's
    ``upload_bandwidth``, ``download_bandwidth``, ``stream_limit``, ``stream_limit_scope``,
    ``request_latency``).
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
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
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
        started, self._stop, self._thread_error = threading.Event(), threading.Event(), None
        options = {
            "sock": sock,
            "log_level": self.log_level,
            "started": started,
            "stop": self._stop,
            "faults": self._faults,
            "clock": self._clock,
        }

        def run() -> None:
            try:
                serve(dataclasses.replace(self.config, port=self._port), **options)
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._thread_error = exc

        self._thread = threading.Thread(target=run, name="odps-tunnel-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not started.wait(_POLL):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._stop.set()
                if isinstance(self._thread_error, Exception):
                    raise self._thread_error  # e.g. EmulatorError for a damaged data dir
                raise RuntimeError("the emulator did not start") from self._thread_error

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
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._stop = self._thread = None

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
