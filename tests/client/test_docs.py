"""The runnable example of docs/client.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_client_doc_example_runs(repo_root: Path, capsys):
    text = (repo_root / "docs" / "client.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(example, "docs/client.md", "exec"), {})
    assert "[[0.0, '2024'], [0.25, '2024'], [0.5, '2024']]" in capsys.readouterr().out
