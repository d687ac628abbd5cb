"""Find the errors the Airflow components logged: tracebacks and error or critical lines.

Two kinds of files are read: ``standalone.log``, where ``airflow standalone`` prefixes each
component's console lines with its name (``scheduler  | ... [error    ] ...``), and the JSON
lines under ``$AIRFLOW_HOME/logs`` (task logs and the DAG processor's per-file logs), each a
record with a ``level``. Each scan reads only what was written since the previous one, so a
test is blamed only for errors logged while it ran.

:data:`ALLOWED` lists the error lines that are expected and why; anything else fails the test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: (pattern, why it is expected). Kept empty unless an error line is part of a normal run.
ALLOWED: list[tuple[re.Pattern[str], str]] = []

_CONSOLE_ERROR = re.compile(r"\[(error|critical)\s*\]|Traceback \(most recent call last\)")


class ServerLogScanner:
    """Reads the component logs of one ``AIRFLOW_HOME`` from where it stopped last time."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._offsets: dict[Path, int] = {}

    def _files(self) -> list[Path]:
        files = [self.home / "standalone.log"]
        logs = self.home / "logs"
        if logs.is_dir():
            files += sorted(logs.rglob("*.log"))
        return [f for f in files if f.is_file()]

    def _new_lines(self, path: Path) -> list[str]:
        start = self._offsets.get(path, 0)
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offsets[path] = start + end
        return data[:end].decode("utf-8", errors="replace").splitlines()

    def new_errors(self) -> list[str]:
        """The error lines logged since the last call, minus the allowed ones."""
        found = []
        for path in self._files():
            for line in self._new_lines(path):
                if _is_error(line) and not any(p.search(line) for p, _ in ALLOWED):
                    found.append(f"{path.relative_to(self.home)}: {line[:2000]}")
        return found

    def assert_clean(self) -> None:
        errors = self.new_errors()
        assert not errors, "the Airflow components logged errors:\n" + "\n".join(errors)


def _is_error(line: str) -> bool:
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return False
        text = json.dumps(record)
        return record.get("level") in ("error", "critical") or "Traceback" in text
    return bool(_CONSOLE_ERROR.search(line))
