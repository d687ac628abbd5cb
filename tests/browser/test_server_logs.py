"""The scanner that fails the browser test on errors the Airflow components logged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from . import server_logs
from .server_logs import ServerLogScanner


def _append(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


def test_finds_console_and_json_errors_once(tmp_path: Path) -> None:
    console = tmp_path / "standalone.log"
    task_log = tmp_path / "logs" / "dag_id=d" / "run_id=r" / "task_id=t" / "attempt=1.log"
    _append(
        console,
        "scheduler  | 2026-01-01T00:00:00Z [info     ] fine",
        "scheduler  | 2026-01-01T00:00:01Z [error    ] XCom not found",
    )
    _append(
        task_log,
        json.dumps({"level": "info", "event": "Block 0 written"}),
        json.dumps({"level": "error", "event": "Task failed"}),
        json.dumps({"level": "warning", "event": "x", "error_detail": "Traceback (most recent"}),
    )
    scanner = ServerLogScanner(tmp_path)
    found = scanner.new_errors()
    assert len(found) == 3, found
    assert found[0].startswith("standalone.log: ") and "XCom not found" in found[0]
    assert scanner.new_errors() == []  # each line is reported once

    _append(console, "api-server | Traceback (most recent call last):")
    _append(console, "api-server | [error    ] half a line")  # the newline comes later
    with console.open("a") as fh:
        fh.write("api-server | [error    ] still being written")
    assert [e.split(" | ")[0] for e in scanner.new_errors()] == ["standalone.log: api-server"] * 2
    with pytest.raises(AssertionError, match="still being written"):
        with console.open("a") as fh:
            fh.write("\n")
        scanner.assert_clean()


def test_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_logs, "ALLOWED", [(re.compile("expected one"), "a reason")])
    _append(tmp_path / "standalone.log", "x | [error    ] expected one", "x | [error    ] other")
    found = ServerLogScanner(tmp_path).new_errors()
    assert len(found) == 1 and "other" in found[0]
