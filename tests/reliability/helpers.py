"""Helpers of the reliability tests: signed raw requests, fuzz settings and reports, fingerprints."""

from __future__ import annotations

import email.utils
import hashlib
import time
from collections import Counter
from urllib.parse import parse_qsl, unquote

import pytest
import requests

from airflow_provider_odps_tunnel.tunnel.codec.signing import authorization, canonical_string

from .conftest import show

TIMEOUT = 10


def signed_service(
    emulator, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> requests.Response:
    """A signed request without parameters to the service endpoint (``/api``)."""
    return signed_raw(emulator, method, path, "", body, headers=headers, service=True)


def assert_odps_error(resp: requests.Response, status: int | None = None) -> dict:
    """A 4xx (or the given status) with the service's JSON error body."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert {"Code", "Message", "RequestId"} <= set(body), body
    assert body["Code"] and isinstance(body["Message"], str)
    return body


def signed_raw(
    emulator,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    service: bool = False,
    timeout: float = TIMEOUT,
) -> requests.Response:
    """A signed request whose path and query go on the wire exactly as given.

    ``path`` (below the endpoint) and ``query`` are already percent-encoded, so they may carry
    bytes that are not UTF-8 (``%FF``), NULs or traversal; the signature is computed the way
    the server does: over the whole query URL-decoded, then split. ``service`` sends it to
    the service endpoint (``/api``) instead of the tunnel endpoint.
    """
    headers = {"x-odps-tunnel-version": "6", **(headers or {})}
    headers.setdefault("Date", email.utils.formatdate(time.time(), usegmt=True))
    params = parse_qsl(unquote(query), keep_blank_values=True)
    canonical = canonical_string(method, path, params, headers)
    headers["Authorization"] = authorization(
        emulator.access_id, emulator.secret_access_key, canonical
    )
    base = emulator.endpoint if service else emulator.tunnel_endpoint
    prepared = requests.Request(method, base + path, data=body, headers=headers).prepare()
    prepared.url = base + path + (f"?{query}" if query else "")  # no re-quoting
    with requests.Session() as session:
        return session.send(prepared, timeout=timeout)


def project_fingerprint(emulator, tables: list[str]) -> tuple:
    """The project's table names, plus partitions and row checksums of ``tables``."""
    catalog = emulator.catalog
    names = tuple(sorted(catalog.list_tables(emulator.project)))
    detail = []
    for table in tables:
        data = catalog.read_table(emulator.project, table, None)
        rows = sorted(repr(tuple(r.values())) for r in data.to_pylist())
        partitions = sorted(s.to_param() for s in catalog.list_partitions(emulator.project, table))
        detail.append(
            (table, tuple(partitions), len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        )
    return names, tuple(detail)


# Hypothesis settings of every fuzz test: derandomised (the same examples every run) and
# bounded, so the whole folder stays fast.
FUZZ_EXAMPLES = 30
FUZZ_CASES: Counter = Counter()  # examples run, per "module: test", for the printed count


def fuzz_settings(max_examples: int = FUZZ_EXAMPLES):
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def fuzz_lines(module: str) -> list[str]:
    """The printed count: this module's cases per test, and the total of every module so far."""
    mine = {k.split(": ", 1)[1]: v for k, v in FUZZ_CASES.items() if k.startswith(module + ": ")}
    return [
        f"{module}: {sum(mine.values())} fuzz cases run: {mine}",
        f"fuzz cases run so far in this session (all modules): {sum(FUZZ_CASES.values())}",
    ]


def fuzz_report(module: str):
    """A module-scoped autouse fixture for a fuzz module: prints the module's case count at
    the end, and fails if any request of the module was answered with a 5xx."""

    @pytest.fixture(scope="module", autouse=True)
    def report(request, emulator):
        mark = request_log_mark(emulator)
        yield
        show(request, fuzz_lines(module))
        assert server_errors_since(emulator, mark) == []

    return report


def expect_odps_answer(resp: requests.Response, ok: tuple[int, ...] = (200,)) -> None:
    """A success in ``ok`` (its body read to the end), or a 4xx with the ODPS error body."""
    if resp.status_code in ok:
        return
    assert_odps_error(resp)


def request_log_mark(emulator) -> int:
    """Where the emulator's request log ends now (see :func:`server_errors_since`)."""
    path = emulator.request_log_path
    return path.stat().st_size if path.exists() else 0


def server_errors_since(emulator, mark: int) -> list[dict]:
    """Request log lines written after ``mark`` that answered a 5xx or dropped the connection."""
    import json

    with open(emulator.request_log_path, "rb") as fh:
        fh.seek(mark)
        lines = [json.loads(line) for line in fh.read().splitlines() if line.strip()]
    return [e for e in lines if not isinstance(e.get("status"), int) or e["status"] >= 500]


def mutations(good: bytes):
    """Hypothesis strategy of broken versions of a valid body: truncated, bytes flipped
    (wrong tags, bad checksums), a huge varint length spliced in, or junk."""
    from hypothesis import strategies as st

    truncated = st.integers(0, len(good) - 1).map(lambda n: good[:n])
    flipped = st.lists(
        st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)), min_size=1, max_size=4
    ).map(lambda flips: _flip(good, flips))
    huge = st.integers(0, len(good)).map(
        lambda at: good[:at] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + good[at:]
    )
    return st.one_of(truncated, flipped, huge, st.binary(max_size=512))


def _flip(good: bytes, flips) -> bytes:
    data = bytearray(good)
    for at, mask in flips:
        data[at] ^= mask
    return bytes(data)
