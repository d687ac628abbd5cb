"""The request log: one JSON line per request, so a user can see what their client did.

Each line holds the time, request id, method, path, query parameters (any whose name
suggests a secret is dropped; headers, including ``Authorization``, are never logged), the
status, request and response body bytes, duration in milliseconds, the route's session
kind, the session (or instance) id involved, and the injected fault if one fired. Two
headers are the exception to "no headers": the retry trace pair a client sends on every
tunnel request (``odps-tunnel-retry-trace-id``, ``odps-tunnel-retry-index``), which names no
secret and is what ties the attempts of one retried request together. Lines go to
``requests.jsonl`` in the data directory and, optionally, to stderr.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "RequestLog",
    "public_params",
    "retry_fields",
    "RETRY_TRACE_HEADER",
    "RETRY_INDEX_HEADER",
    "MAX_TRACE_LENGTH",
]

_SECRET = re.compile(r"secret|token|signature|password|passwd|credential|accesskey|authoriz", re.I)

RETRY_TRACE_HEADER = "odps-tunnel-retry-trace-id"
RETRY_INDEX_HEADER = "odps-tunnel-retry-index"
#: A trace id is a UUID (36 characters); a longer value is cut in a log line, so a client
#: cannot bloat every line, and is not remembered by a session (``replays``).
MAX_TRACE_LENGTH = 128


def public_params(params: dict[str, str]) -> dict[str, str]:
    """``params`` without the ones that may carry a secret."""
    return {k: v for k, v in params.items() if not _SECRET.search(k)}


def retry_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """The request's retry trace headers as log fields (``retry_trace_id``, ``retry_index``).

    Only the headers the request carries appear. The index is logged as a number when it is
    one (pyodps and our client send ``0``, ``1``, ...) and as the text sent otherwise, so a
    malformed value is still visible rather than dropped.
    """
    fields: dict[str, Any] = {}
    trace = headers.get(RETRY_TRACE_HEADER)
    if trace is not None:
        fields["retry_trace_id"] = trace[:MAX_TRACE_LENGTH]
    index = headers.get(RETRY_INDEX_HEADER)
    if index is not None:
        text = index.strip()
        fields["retry_index"] = int(text) if text.isdigit() else index[:MAX_TRACE_LENGTH]
    return fields


class RequestLog:
    """Appends JSON lines to ``path`` (None: no file) and optionally to stderr."""

    def __init__(self, path: Path | None, stderr: bool = False):
        self.path = path
        self._stderr = stderr
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        if path is not None:
            # Unbuffered: each line goes out in one write, so a reader never sees half a line.
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        return self._file is not None or self._stderr

    def write(self, entry: dict[str, Any]) -> None:
        # ASCII-only: a hostile path or parameter cannot put a line separator in a line.
        line = json.dumps(entry, default=str)
        with self._lock:
            if self._file is not None:
                self._file.write((line + "\n").encode("utf-8"))
            if self._stderr:
                print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
