"""The request log: one JSON line per request, so a user can see what their client did.

Each line holds the time, request id, method, path, query parameters (any whose name
suggests a secret is dropped; headers, including ``Authorization``, are never logged), the
status, request and response body bytes, duration in milliseconds, the route's session
kind, the session (or instance) id involved, and the injected fault if one fired. Lines go
to ``requests.jsonl`` in the data directory and, optionally, to stderr.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["RequestLog", "public_params"]

_SECRET = re.compile(r"secret|token|signature|password|passwd|credential|accesskey|authoriz", re.I)


def public_params(params: dict[str, str]) -> dict[str, str]:
    """``params`` without the ones that may carry a secret."""
    return {k: v for k, v in params.items() if not _SECRET.search(k)}


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
