"""The processes a distributed Airflow needs besides Airflow: PostgreSQL and Redis.

Each runs on loopback, on a free port, with its files in a throw-away directory, and is
stopped by :meth:`stop` (also after a failure). :class:`ProcessGroup` is how every
long-running process here is started: in a session of its own, so it and everything it
forks can be signalled as one group, the way a host going down takes all of its processes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

__all__ = ["free_port", "ProcessGroup", "stop_groups", "PostgreSQL", "Redis"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProcessGroup:
    """One command in a session (process group) of its own, its output in ``log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
    ):
        self.name = name
        self.log = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def members(self) -> list[psutil.Process]:
        """The leader and every process that descends from it (forks keep the group)."""
        try:
            leader = psutil.Process(self.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole group at once, without warning: a host that dies."""
        members = self.members()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for proc in members:  # descendants that left the group, if any
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout`` seconds."""
        stop_groups([self], timeout)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}):\n" + "\n".join(text)


def stop_groups(groups: Sequence[ProcessGroup], timeout: float = 20) -> None:
    """SIGTERM every group at once, then SIGKILL whatever is left after ``timeout`` s."""
    members = [proc for group in groups for proc in group.members()]
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group.pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    for group in groups:
        with contextlib.suppress(subprocess.TimeoutExpired):
            group.process.wait(timeout=10)
        group._log.close()


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "run scripts/system-packages.sh"
        )
    return found[-1].parent


class PostgreSQL:
    """A throw-away PostgreSQL cluster with one database, ``airflow``, trusting loopback.

    PostgreSQL refuses to run as root; when we are root it runs as the ``postgres`` user
    that the Debian package creates, in a directory that user owns.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="odps-dist-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            self.root.chmod(0o755)
            for path in (self.data, self.sockets):
                path.mkdir()
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        self.started = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``airflow`` database (psycopg2)."""
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=airflow dbname=airflow"

    def _run(self, *argv: str) -> None:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, user=self._user, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> PostgreSQL:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "airflow",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=300 -c shared_buffers=64MB"
        )
        self.started = True
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "airflow", "airflow",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                    "stop",
                )  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A throw-away Redis on loopback without persistence: the Celery broker."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.group: ProcessGroup | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        redis = shutil.which("redis-server")
        if redis is None:
            raise RuntimeError("redis-server is not installed: run scripts/system-packages.sh")
        argv = [redis, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.root)]
        self.group = ProcessGroup(
            "redis", argv, env=os.environ, cwd=self.root, log=self.root / "redis.log"
        )
        return self

    def ready(self) -> bool:
        """Whether Redis answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop(timeout=10)
