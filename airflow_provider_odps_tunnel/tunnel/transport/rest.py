"""The HTTP transport of the tunnel client: signing, pooling, timeouts, retries, errors.

One :class:`RestClient` per endpoint and entry object holds one pooled
``requests.Session``. Every request is signed with the v2 scheme of ``signing`` (plus the
STS token header when the credentials carry one). Failures are retried by the client's
one retry mechanism (``retry``, on tenacity), with the rules of the endpoint (protocol
§8.3):

* a tunnel client (``tunnel=True``, the default) follows pyodps 0.13.2's tunnel retry
  handler (``retry.request_policy``): 308 and 429 until ``options.tunnel_retry_deadline``,
  5xx and 408 at most 7 times, waits 1, 2, 4, ... 64 s, any method; other 4xx never;
  failures without an answer as below. Every attempt carries the headers
  ``odps-tunnel-retry-trace-id`` (one id per logical request, a :class:`RetryTrace`) and
  ``odps-tunnel-retry-index`` (0, 1, 2, ...);
* the service endpoint's client (``tunnel=False``) follows pyodps' REST layer
  (``retry.service_policy``): throttling, and 5xx answers of idempotent requests only.

In both, a connection that could not be opened is retried for any method (nothing was
sent), a broken connection or read timeout only for idempotent methods (GET, PUT, DELETE)
and POSTs the caller declares safe (``retry_post=True``); every wait is at least the
``Retry-After``/``HoldClientMillis`` the service asked for. A body that cannot be
produced twice (a one-shot iterator) is only retried while none of it was sent. Errors
answered by the service become the ``errors`` hierarchy with the request id and the
caller's context (session, table, partition, block, row range).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import requests
import urllib3

from ... import __version__
from ..codec import signing
from ..codec.compression import decompressing_stream
from ..errors import (
    TunnelConnectionError,
    TunnelError,
    TunnelTimeoutError,
    parse_error_response,
)
from ..options import options
from .gather import GatherAdapter
from .retry import Attempt, RetryTrace, request_policy, service_policy

__all__ = [
    "Credentials",
    "RestClient",
    "ResponseStream",
    "USER_AGENT",
    "open_body",
    "sent_but_unanswered",
]

USER_AGENT = (
    f"airflow-provider-odps-tunnel/{__version__} Python/{platform.python_version()} "
    f"{platform.system()}"
)
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_TRANSFER_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally with an STS token or, instead, a bearer token."""

    access_id: str | None
    secret_access_key: str | None
    sts_token: str | None = None
    bearer_token: str | None = None

    @classmethod
    def from_account(cls, account: Any) -> Credentials:
        """Credentials read from a pyodps account object (duck-typed: ``access_id``,
        ``secret_access_key``, ``sts_token``, ``token``)."""
        return cls(
            getattr(account, "access_id", None),
            getattr(account, "secret_access_key", None),
            getattr(account, "sts_token", None),
            getattr(account, "token", None) if not hasattr(account, "access_id") else None,
        )

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(access_id={self.access_id!r})"


class _OneShotBody:
    """Wraps a body that can be iterated once, remembering whether any of it was sent.
    A body that can push its groups (``push_into``, see ``io.body``) still can."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self.started = False
        if hasattr(chunks, "push_into"):
            self._push = chunks.push_into
            self.push_into = self._push_into

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.started = True
            yield chunk

    def _push_into(self, send: Callable[[list], None]) -> None:
        def sending(group: list) -> None:
            self.started = True
            send(group)

        self._push(sending)


class _Chunks:
    """A sequence of byte chunks, sent chunked (and again on a retry)."""

    def __init__(self, chunks: Sequence[bytes]):
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


class ResponseStream:
    """The raw (still compressed) bytes of a streamed response, as a binary file.

    ``read`` never lets urllib3 decompress: the tunnel's ``Content-Encoding`` tokens are
    handled by ``compression.decompressing_stream``. ``bytes_read`` counts wire bytes.
    """

    def __init__(self, response: requests.Response):
        self.response = response
        self._raw = response.raw
        self.bytes_read = 0
        self.closed = False

    @property
    def headers(self) -> Mapping[str, str]:
        return self.response.headers

    def read(self, size: int = -1) -> bytes:
        try:
            if size is None or size < 0:
                chunks = []
                while chunk := self._raw.read(1 << 20, decode_content=False):
                    chunks.append(chunk)
                data = b"".join(chunks)
            else:
                data = self._raw.read(size, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise TunnelTimeoutError(f"reading the body of {self._what()} timed out") from exc
        except urllib3.exceptions.HTTPError as exc:  # a cut body, a reset connection
            raise TunnelConnectionError(
                f"reading the body of {self._what()} failed: {exc}"
            ) from exc
        self.bytes_read += len(data)
        return data

    def _what(self) -> str:
        request = self.response.request
        return f"{request.method} {request.path_url}" if request is not None else "a response"

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.response.close()


class RestClient:
    """Signed, pooled, retried HTTP requests to one endpoint.

    ``endpoint`` may carry a path prefix (``http://host/api``); resources are paths below
    it and are signed without the prefix. Every request carries ``curr_project`` (and
    ``curr_schema`` when a default schema is set), as pyodps does. ``tunnel`` says whose
    retry rules apply: the tunnel's (the default) or the service endpoint's.
    """

    def __init__(
        self,
        credentials: Credentials,
        endpoint: str,
        project: str | None = None,
        *,
        schema: str | None = None,
        namespace: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        pool_maxsize: int | None = None,
        tunnel: bool = True,
    ):
        self.credentials = credentials
        self.tunnel = tunnel
        self.endpoint = endpoint.rstrip("/")
        self.project = project
        self.schema = schema
        self.namespace = namespace
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TunnelError(f"invalid endpoint {endpoint!r}: expected http(s)://host[:port]")
        self.scheme = parts.scheme
        size = pool_maxsize or options.pool_maxsize
        self._session = requests.Session()
        # No default Accept-Encoding: "no header" is how the tunnel says "uncompressed".
        self._session.headers.pop("Accept-Encoding", None)
        # What requests takes from the environment (proxies and NO_PROXY, a CA bundle) is
        # read once, here: left to requests, it scans os.environ twice on every request.
        # Its other environment source, ~/.netrc, would replace the signed Authorization
        # header with a basic one: never wanted here.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.endpoint))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._session.verify = bundle
        adapter = GatherAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"RestClient({self.endpoint!r}, project={self.project!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    # -- request building -----------------------------------------------------------------

    def _timeout(self) -> tuple[float, float]:
        return (
            self.connect_timeout or options.connect_timeout,
            self.read_timeout or options.read_timeout,
        )

    def _params(self, params: Params | None) -> list[tuple[str, str]]:
        items = params.items() if isinstance(params, Mapping) else (params or [])
        out = [(str(k), "" if v is True else str(v)) for k, v in items if v is not None]
        names = {k for k, _ in out}
        if self.project and "curr_project" not in names:
            out.append(("curr_project", self.project))
        if self.schema and "curr_schema" not in names:
            out.append(("curr_schema", self.schema))
        return out

    def _headers(
        self, method: str, resource: str, params: list[tuple[str, str]], extra: Mapping | None
    ) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "x-odps-user-agent": USER_AGENT}
        if self.namespace:
            headers["x-odps-namespace-id"] = self.namespace
        for name, value in (extra or {}).items():
            if value is not None:
                headers[name] = str(value)
        headers["Date"] = signing.http_date()
        cred = self.credentials
        if cred.bearer_token:
            headers["x-odps-bearer-token"] = cred.bearer_token
        elif cred.access_id:
            canonical = signing.canonical_string(method, resource, params, headers)
            headers["Authorization"] = signing.authorization(
                cred.access_id, cred.secret_access_key or "", canonical
            )
            if cred.sts_token:
                headers["authorization-sts-token"] = cred.sts_token
        return headers

    def url(self, resource: str, params: list[tuple[str, str]]) -> str:
        query = "&".join(
            quote(k, safe="") if v == "" else f"{quote(k, safe='')}={quote(v, safe='')}"
            for k, v in params
        )
        return f"{self.endpoint}{resource}" + (f"?{query}" if query else "")

    # -- sending ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        resource: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, Any] | None = None,
        data: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        retry_post: bool = False,
        retry: bool = True,
        context: Mapping[str, Any] | None = None,
        trace: RetryTrace | None = None,
    ) -> requests.Response:
        """Send a request and return its 2xx response, or raise a :class:`TunnelError`.

        ``resource`` is the already-quoted path below the endpoint. ``params`` values of
        ``""`` or ``True`` are sent as bare flags; ``None`` values are left out. ``data``
        may be bytes, a re-iterable of chunks (sent chunked, re-sent on a retry) or a
        one-shot iterator. ``context`` is added to any error raised (``session_id``,
        ``table``, ``partition``, ``block_id``, ``row_range``). ``retry=False`` sends once
        (for callers that run their own loop with ``retry.request_policy``).

        On a tunnel client every attempt carries the retry headers of ``trace``: a new
        :class:`RetryTrace` per call when None; a caller that sends one logical write in
        several calls passes the same trace to each, so the indexes go on.
        """
        method = method.upper()
        plist = self._params(params)
        context = dict(context or {})
        one_shot = None
        if isinstance(data, list | tuple):  # requests would send a list as form fields
            data = _Chunks(data)
        if (
            data is not None
            and not isinstance(data, bytes | bytearray | memoryview)
            and iter(data) is data
        ):
            one_shot = data = _OneShotBody(data)
        idempotent = method in _IDEMPOTENT or retry_post
        what = f"{method} {resource}"
        if self.tunnel:
            trace = trace or RetryTrace()
            what = f"{what} (retry trace {trace.trace_id})"
        else:
            trace = None

        def allowed(exc: BaseException) -> bool:
            return retry and not (one_shot is not None and one_shot.started)

        def send(attempt: Attempt) -> requests.Response:
            extra = dict(headers or {})
            if trace is not None:
                extra.update(trace.next_headers())
            return self._send_once(method, resource, plist, extra, data, stream, context)

        policy = request_policy(idempotent) if self.tunnel else service_policy(idempotent)
        return policy.call(send, what=what, allowed=allowed)

    def _send_once(
        self,
        method: str,
        resource: str,
        plist: list[tuple[str, str]],
        headers: Mapping[str, Any] | None,
        data: Any,
        stream: bool,
        context: dict[str, Any],
    ) -> requests.Response:
        signed = self._headers(method, resource, plist, headers)
        try:
            resp = self._session.request(
                method,
                self.url(resource, plist),
                headers=signed,
                data=data,
                stream=stream,
                timeout=self._timeout(),
                allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            raise TunnelTimeoutError(f"{method} {resource} timed out: {exc}", **context) from exc
        except _TRANSFER_ERRORS as exc:
            err = TunnelConnectionError(f"{method} {resource} failed: {exc}", **context)
            raise err from exc
        if resp.status_code >= 300:
            try:
                body = resp.content
            except _TRANSFER_ERRORS:
                body = b""
            finally:
                resp.close()
            raise parse_error_response(resp.status_code, resp.headers, body, **context)
        return resp


def open_body(resp: requests.Response) -> BinaryIO:
    """The decompressed body of a streamed response (its ``Content-Encoding`` undone)."""
    return decompressing_stream(ResponseStream(resp), resp.headers.get("Content-Encoding"))


def sent_but_unanswered(exc: BaseException) -> bool:
    """True when a request was sent whole and its answer did not come within the read
    timeout: the server may have carried it out."""
    return isinstance(exc, TunnelTimeoutError) and isinstance(
        exc.__cause__, requests.exceptions.ReadTimeout
    )
