"""The pyodps program of docs/emulator.md runs as written."""

from __future__ import annotations

from pathlib import Path


def test_pyodps_example_runs(repo_root: Path, capsys):
    text = (repo_root / "docs" / "emulator.md").read_text()
    block = text.split("<!-- runnable: pyodps-example -->", 1)[1]
    example = block.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "docs/emulator.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["[\"ds='20240101'\"]", "[['eu', 150000000], ['us', 49990000]]", "15000"]
