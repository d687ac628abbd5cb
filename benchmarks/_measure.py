"""Shared measuring code of the benchmarks in this directory (not a benchmark itself).

Every benchmark compares like with like in one run and reports the same way:

* :func:`alternate` runs the compared things in alternating order (A B, B A, A B, ...) for
  ``--repeat`` rounds (:func:`common_args` adds ``--repeat`` and ``--quick``).
* :func:`timed` measures one call: wall seconds, client CPU seconds (this process with all
  its threads, ``time.process_time()``) and server CPU seconds (utime + stime of another
  process, e.g. a child emulator, from ``/proc/<pid>/stat``).
* :func:`spread` prints a figure as ``median (min–max)``; :func:`paired_ratios` divides the
  figures of one round by each other, so a ratio's spread comes from paired runs.
* :func:`pid_cpu`, :func:`pid_rss`, :class:`RssSampler` and :class:`ServerCpu` (a server
  that is killed and restarted) read ``/proc``; :func:`child_emulator` makes an emulator
  that runs as ``python -m airflow_provider_odps_tunnel.emulator serve`` in a child process.
* :func:`loopback_ceiling` moves raw bytes over loopback between two child processes (a
  socket sender and receiver, neither in the benchmark's process): the upper bound for
  any client on this machine.
* :func:`require` (a sanity check) and :class:`Targets` (verdicts on targets given on the
  command line) exit non-zero with a message; they are not ``assert``, which ``python -O``
  removes.

Run as a script, this file is that loopback pair: ``loopback-recv`` prints its port, then
reads until EOF; ``loopback-send PORT NBYTES`` sends. Each prints its figures as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")
MB = 1e6
LOOPBACK = "loopback, no service bandwidth cap"
_TICKS = os.sysconf("SC_CLK_TCK")
_CHUNK = 256 * 1024


def common_args(parser: argparse.ArgumentParser, quick: str) -> None:
    """``--repeat`` (rounds, default 3) and ``--quick`` (``quick`` says what it sets)."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds; each figure is the median (min–max) of these, order alternated per round",
    )
    parser.add_argument("--quick", action="store_true", help=f"a few-second check: {quick}")


def method(repeat: int, server: str = "") -> str:
    """The line saying how the figures below were measured."""
    server = server or "server CPU = the emulator child process (/proc/<pid>/stat)"
    return (
        f"figures: median (min–max) of {repeat} rounds, order alternated each round; "
        f"client CPU = this client process with its threads; {server}"
    )


# -- CPU and memory -----------------------------------------------------------------------


def self_cpu() -> float:
    """CPU seconds (user + system) of this process, all its threads."""
    return time.process_time()


def pid_cpu(pid: int) -> float:
    """CPU seconds (utime + stime) of process ``pid``, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()  # fields[0] is field 3, the state
    return (int(fields[11]) + int(fields[12])) / _TICKS


def reaped_children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_PAGE = os.sysconf("SC_PAGE_SIZE")


def pid_rss(pid: int | None = None) -> int:
    """Resident set size in bytes of ``pid`` (default: this process), from
    ``/proc/<pid>/statm`` (one short line: cheap to sample often)."""
    with open(f"/proc/{pid or os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


class ServerCpu:
    """CPU seconds, since construction, of a child server that may be killed and started
    again: the children reaped since then (``RUSAGE_CHILDREN``) plus the live one
    (``pid_of()``, None when none runs). Exact when the server is this process's only
    child process."""

    def __init__(self, pid_of: Callable[[], int | None]):
        self._pid_of = pid_of
        self._start = reaped_children_cpu() + self._live()

    def _live(self) -> float:
        pid = self._pid_of()
        try:
            return pid_cpu(pid) if pid else 0.0
        except OSError:  # it ended between the two reads
            return 0.0

    def seconds(self) -> float:
        return reaped_children_cpu() + self._live() - self._start


class RssSampler:
    """Samples the RSS of ``pid`` (default: this process) every ``interval`` seconds in a
    daemon thread. ``setup`` is the RSS when started; :meth:`lap` returns the peak since
    the start or the last lap."""

    def __init__(self, pid: int | None = None, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.setup = self._peak = pid_rss(pid)
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> int | None:
        try:
            rss = pid_rss(self.pid)
        except OSError:
            return None
        with self._lock:
            self._peak = max(self._peak, rss)
        return rss

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            if self._sample() is None:
                return

    def lap(self) -> int:
        now = self._sample()
        with self._lock:
            peak, self._peak = self._peak, now or 0
        return peak

    def stop(self) -> None:
        self._halt.set()
        self._thread.join()


# -- timing and repeating -----------------------------------------------------------------


@dataclass
class Sample:
    """One timed run: wall seconds, client CPU seconds, server CPU seconds (None: no server)."""

    wall: float
    cpu: float
    server_cpu: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def timed(fn: Callable[[], T], server_pid: int | None = None) -> tuple[Sample, T]:
    """Run ``fn`` once (garbage collected first) and measure it; also returns its result."""
    gc.collect()
    server = pid_cpu(server_pid) if server_pid else None
    cpu, started = self_cpu(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - started, self_cpu() - cpu
    if server is not None:
        server = pid_cpu(server_pid) - server
    return Sample(wall, cpu, server), result


def alternate(
    names: Sequence[str], repeat: int, run: Callable[[str, int], T]
) -> dict[str, list[T]]:
    """``run(name, round)`` for every name, ``repeat`` rounds, in the order of ``names`` in
    even rounds and the reverse in odd ones (A B C, C B A, A B C, ...)."""
    out: dict[str, list[T]] = {name: [] for name in names}
    for k in range(repeat):
        for name in names if k % 2 == 0 else list(reversed(names)):
            out[name].append(run(name, k))
    return out


def walls(samples: Iterable[Sample]) -> list[float]:
    return [s.wall for s in samples]


def rates(amount: float, samples: Iterable[Sample], scale: float = 1.0) -> list[float]:
    """``amount / scale`` per second of wall time, one value per run."""
    return [amount / scale / s.wall for s in samples]


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-round ratios of two figures measured in the same rounds."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Iterable[float | None], spec: str = ".2f", unit: str = "") -> str:
    """``median (min–max)`` of ``values``; ``n/a`` when there are none."""
    got = [v for v in values if v is not None]
    if not got:
        return "n/a"
    lo, mid, hi = min(got), statistics.median(got), max(got)
    return f"{mid:{spec}}{unit} ({lo:{spec}}–{hi:{spec}})"


def cpu_figures(samples: Sequence[Sample]) -> str:
    """Wall, client CPU and server CPU seconds of ``samples``, each median (min–max)."""
    text = (
        f"wall {spread(walls(samples), '.3f')} s, "
        f"client CPU {spread((s.cpu for s in samples), '.3f')} s"
    )
    if any(s.server_cpu is not None for s in samples):
        text += f", server CPU {spread((s.server_cpu for s in samples), '.2f')} s"
    return text


# -- a child emulator ---------------------------------------------------------------------


def child_emulator(data_dir: Any, **options: Any) -> Any:
    """An (unstarted) emulator serving ``data_dir`` from a child process, ``python -m
    airflow_provider_odps_tunnel.emulator serve``; use it as a context manager. Its CPU is
    ``pid_cpu(emu.pid)``, apart from the benchmark's."""
    from airflow_provider_odps_tunnel.emulator import Emulator

    return Emulator(data_dir, subprocess=True, log_level="warning", **options)


# -- the loopback ceiling -----------------------------------------------------------------


def loopback_ceiling(nbytes: int) -> Sample:
    """Send ``nbytes`` raw bytes over a loopback TCP connection between two child
    processes. ``wall`` is the receiver's time from accepting to EOF, ``cpu`` the
    sender's CPU and ``server_cpu`` the receiver's."""
    cmd = [sys.executable, os.path.abspath(__file__)]
    receiver = subprocess.Popen([*cmd, "loopback-recv"], stdout=subprocess.PIPE, text=True)
    try:
        port = receiver.stdout.readline().strip()
        sender = subprocess.run(
            [*cmd, "loopback-send", port, str(nbytes)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        received, _ = receiver.communicate(timeout=600)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    require(sender.returncode == 0, f"loopback sender failed: {sender.stderr[-2000:]}")
    require(receiver.returncode == 0, "loopback receiver failed")
    got, sent = json.loads(received), json.loads(sender.stdout)
    require(got["bytes"] == nbytes, f"loopback moved {got['bytes']} of {nbytes} bytes")
    return Sample(got["seconds"], sent["cpu"], got["cpu"])


def ceiling_line(nbytes: int, samples: Sequence[Sample]) -> str:
    return (
        f"loopback ceiling (raw TCP between two child processes, {LOOPBACK}): "
        f"{nbytes / MB:.1f} MB at {spread(rates(nbytes, samples, MB), '.0f')} MB/s; "
        f"sender CPU {spread((s.cpu for s in samples), '.3f')} s, "
        f"receiver CPU {spread((s.server_cpu for s in samples), '.3f')} s"
    )


def _loopback_receive() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        cpu, started = self_cpu(), time.perf_counter()
        buf, total = bytearray(_CHUNK), 0
        with conn:
            while n := conn.recv_into(buf):
                total += n
        wall, cpu = time.perf_counter() - started, self_cpu() - cpu
    print(json.dumps({"bytes": total, "seconds": wall, "cpu": cpu}))


def _loopback_send(port: int, nbytes: int) -> None:
    chunk = memoryview(bytes(_CHUNK))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        cpu = self_cpu()
        left = nbytes
        while left > 0:
            sock.sendall(chunk[: min(left, _CHUNK)])
            left -= _CHUNK
        sock.shutdown(socket.SHUT_WR)
        cpu = self_cpu() - cpu
    print(json.dumps({"cpu": cpu}))


# -- checks and verdicts ------------------------------------------------------------------


def require(condition: bool, message: str) -> None:
    """A sanity check that ``python -O`` keeps: exit non-zero with ``message``."""
    if not condition:
        raise SystemExit(f"check failed: {message}")


class Targets:
    """Verdicts on targets given on the command line: each is printed, and :meth:`finish`
    exits non-zero naming the ones not met."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def _verdict(self, label: str, met: bool, text: str) -> None:
        line = f"{label}: {text}"
        print(f"target {'met' if met else 'NOT MET'}: {line}")
        if not met:
            self.failed.append(line)

    def at_least(self, label: str, value: float, target: float) -> None:
        self._verdict(label, value >= target, f"{value:.2f} >= {target:g}")

    def at_most(self, label: str, value: float, target: float) -> None:
        self._verdict(label, value <= target, f"{value:.2f} <= {target:g}")

    def finish(self) -> None:
        if self.failed:
            raise SystemExit(f"{len(self.failed)} target(s) not met: " + "; ".join(self.failed))


def _main(argv: list[str]) -> None:
    if argv[:1] == ["loopback-recv"]:
        _loopback_receive()
    elif argv[:1] == ["loopback-send"] and len(argv) == 3:
        _loopback_send(int(argv[1]), int(argv[2]))
    else:
        print("benchmarks/_measure.py is the benchmarks' shared measuring code; nothing to run")


if __name__ == "__main__":
    _main(sys.argv[1:])
