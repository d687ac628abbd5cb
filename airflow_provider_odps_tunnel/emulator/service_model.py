"""The service's throughput model (off by default): bandwidth per connection, a limit on
data streams in flight, and a fixed latency per request.

On one machine the emulator moves a body as fast as the CPU allows, while the service caps
each block write and each download request at about 10 MB/s and counts every one of them
against a slot quota. With this model, a load through the emulator scales with parallel
writers the way it does against the service:

* **bandwidth caps** (bytes per second, per request body and per response body; a request
  is one connection at a time, so this is the per-connection cap): a token bucket per body
  with a burst of :data:`BURST` bytes, paced in the event loop by sleeping between the
  pieces of the body received or sent. uvicorn stops reading a socket whose data the
  application does not take, so a capped upload also slows the client's sending; other
  connections are served meanwhile. Small bodies (session JSON, commits) fit in the burst
  and pass at once;
* **concurrent streams**: at most N data bodies (block, stream and upsert PUTs; table and
  instance downloads) in flight per table or per project; one more is answered 429
  ``FlowExceeded`` with ``Retry-After`` (which the client and pyodps retry with back-off)
  before its body is read. A stream holds its slot until its answer has been sent;
* **request latency**: seconds added before handling each request (not the admin ones).

Bandwidth and latency are real time (``time.monotonic``), not the emulator's clock, which
tests move to expire sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import EmulatorError

__all__ = ["BURST", "STREAM_SCOPES", "ServiceModel", "TokenBucket", "parse_rate", "format_rate"]

BURST = 64 * 1024
STREAM_SCOPES = ("table", "project")
# Seconds a refused stream is told to wait: a slot frees when any stream ends, which the
# emulator cannot predict; the clients' own back-off (1, 2, 4, ... s) does the rest.
_RETRY_AFTER = 1
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*(?:/\s*s)?\s*\Z", re.IGNORECASE)
_UPLOAD_KINDS = frozenset({"upload", "stream", "upsert"})
_DOWNLOAD_KINDS = frozenset({"download", "instance"})

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def parse_rate(value: Any) -> int | None:
    """Bytes per second from ``8MB``, ``8 MiB/s``, ``512KB``, ``10000000`` or a number.

    Decimal units (``KB``, ``MB``, ``GB``: powers of 1000, as the service's "10 MB/s") and
    binary ones (``KiB``, ``MiB``, ``GiB``); None, ``""`` and 0 mean no cap (None).
    """
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        rate = int(value)
    else:
        match = _RATE.match(str(value))
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _UNITS:
            raise ValueError(f"bandwidth {value!r} is not a rate such as 8MB, 512KiB or 1000000")
        rate = int(float(match.group(1)) * _UNITS[unit])
    if rate < 0:
        raise ValueError(f"bandwidth {value!r} is negative")
    return rate or None


def format_rate(rate: int | None) -> str:
    """A rate for messages and the startup banner: ``8.0 MB/s`` or ``off``."""
    return "off" if rate is None else f"{rate / 10**6:g} MB/s"


class TokenBucket:
    """``rate`` bytes per second with up to ``burst`` bytes at once.

    :meth:`take` spends tokens for bytes that moved (or are about to) and answers how long
    to wait so that the average stays at ``rate``: the bucket may go into debt, and the
    wait is the time the debt takes to refill.
    """

    def __init__(self, rate: int, burst: int = BURST, clock: Callable[[], float] = time.monotonic):
        if rate < 1:
            raise ValueError(f"a token bucket needs a rate >= 1 byte/s, not {rate}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self, size: int) -> float:
        """Spend ``size`` bytes; the seconds to wait before the next byte may move."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        return max(0.0, -self._tokens / self.rate)


def _paced_receive(receive: Receive, rate: int) -> Receive:
    """``receive`` that, after each piece of the request body, waits as the cap says."""
    bucket = TokenBucket(rate)

    async def paced() -> dict:
        message = await receive()
        size = len(message.get("body", b""))
        if size:
            wait = bucket.take(size)
            if wait:
                await asyncio.sleep(wait)
        return message

    return paced


def _paced_send(send: Send, rate: int) -> Send:
    """``send`` that sends the response body in pieces of at most :data:`BURST` bytes,
    waiting before each as the cap says."""
    bucket = TokenBucket(rate)

    async def paced(message: dict) -> None:
        body = message.get("body", b"")
        if message["type"] != "http.response.body" or len(body) <= BURST:
            if body:
                wait = bucket.take(len(body))
                if wait:
                    await asyncio.sleep(wait)
            await send(message)
            return
        view = memoryview(body)
        more = message.get("more_body", False)
        for start in range(0, len(body), BURST):
            piece = bytes(view[start : start + BURST])
            wait = bucket.take(len(piece))
            if wait:
                await asyncio.sleep(wait)
            last = start + BURST >= len(body)
            await send({**message, "body": piece, "more_body": more if last else True})

    return paced


def is_data_stream(method: str, kind: str | None, params: dict[str, str]) -> bool:
    """Whether a request moves table data (what the service counts as a slot): a block,
    stream or upsert PUT, or a table or instance download GET (``?data``)."""
    if kind in _UPLOAD_KINDS:
        return method == "PUT"
    return kind in _DOWNLOAD_KINDS and method == "GET" and "data" in params


class ServiceModel:
    """One emulator's caps, stream counters and latency (from its ``EmulatorConfig``)."""

    def __init__(
        self,
        upload_bandwidth: int | None = None,
        download_bandwidth: int | None = None,
        stream_limit: int | None = None,
        stream_limit_scope: str = "table",
        request_latency: float = 0.0,
    ):
        if stream_limit_scope not in STREAM_SCOPES:
            raise ValueError(
                f"stream_limit_scope {stream_limit_scope!r} is not one of {STREAM_SCOPES}"
            )
        if stream_limit is not None and stream_limit < 1:
            raise ValueError(f"stream_limit must be at least 1, not {stream_limit}")
        if request_latency < 0:
            raise ValueError(f"request_latency must be >= 0, not {request_latency}")
        self.upload_bandwidth = upload_bandwidth
        self.download_bandwidth = download_bandwidth
        self.stream_limit = stream_limit
        self.stream_limit_scope = stream_limit_scope
        self.request_latency = request_latency
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any) -> ServiceModel:
        return cls(
            config.upload_bandwidth,
            config.download_bandwidth,
            config.stream_limit,
            config.stream_limit_scope,
            config.request_latency,
        )

    def pace(self, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """``receive`` and ``send`` of one request, paced by the caps that are on."""
        if self.upload_bandwidth:
            receive = _paced_receive(receive, self.upload_bandwidth)
        if self.download_bandwidth:
            send = _paced_send(send, self.download_bandwidth)
        return receive, send

    def to_json(self) -> dict[str, Any]:
        """The settings and the data streams now in flight per key (``project.table`` or
        ``project``), as the admin resource ``/__emulator__/service`` answers them."""
        with self._lock:
            in_flight = dict(self._in_flight)
        return {
            "upload_bandwidth": self.upload_bandwidth,
            "download_bandwidth": self.download_bandwidth,
            "stream_limit": self.stream_limit,
            "stream_limit_scope": self.stream_limit_scope,
            "request_latency": self.request_latency,
            "in_flight": in_flight,
        }

    async def admit(
        self,
        method: str,
        kind: str | None,
        params: dict[str, str],
        args: dict[str, str],
        held: contextlib.ExitStack,
    ) -> None:
        """Wait the request latency, then take a stream slot for a data request (given
        back when ``held`` closes, after the answer), or raise 429 ``FlowExceeded``."""
        if self.request_latency:
            await asyncio.sleep(self.request_latency)
        if self.stream_limit is None or not is_data_stream(method, kind, params):
            return
        project = args.get("project", "")
        key = project
        if self.stream_limit_scope == "table" and args.get("table"):
            key = f"{project}.{args['table']}"
        with self._lock:
            count = self._in_flight.get(key, 0)
            if count >= self.stream_limit:
                raise EmulatorError(
                    "FlowExceeded",
                    f"Your flow quota is exceeded: at most {self.stream_limit} data streams "
                    f"at once on {self.stream_limit_scope} {key}",
                    429,
                    headers={"Retry-After": str(_RETRY_AFTER)},
                )
            self._in_flight[key] = count + 1
        held.callback(self._release, key)

    def _release(self, key: str) -> None:
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
