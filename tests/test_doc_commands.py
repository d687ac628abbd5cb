"""Every emulator command shown in the docs and the README runs as written.

The shell blocks of the Markdown pages are read, continuation lines joined, and each
``odps-tunnel-emulator`` line run with the console script of this environment: the
data-directory commands one after the other on a fresh directory, the serving commands
(``serve`` or no subcommand) on a free port until the server answers, then stopped.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from polling import wait_until

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
SCRIPT = Path(sys.executable).with_name("odps-tunnel-emulator")
SUBCOMMANDS = {
    "serve",
    "create-project",
    "create-table",
    "drop-table",
    "create-partition",
    "drop-partition",
    "list-partitions",
}


def shell_lines(page: Path) -> list[str]:
    """The commands of a page: the lines of its ``bash`` blocks (continuation lines joined,
    comments gone), then the inline code spans of its prose."""
    text = page.read_text()
    lines: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [span.strip() for span in re.findall(r"`([^`\n]+)`", prose)]
    return lines


def emulator_commands(page: Path) -> list[list[str]]:
    found = []
    for line in shell_lines(page):
        head = line.split(maxsplit=1)[0]
        if Path(head).name == "odps-tunnel-emulator" and " " in line:
            found.append(shlex.split(line)[1:])
    return found


DOC_COMMANDS = [
    pytest.param(page, args, id=f"{page.relative_to(REPO)}:{' '.join(args)[:60]}")
    for page in PAGES
    for args in emulator_commands(page)
]


def test_the_docs_show_emulator_commands():
    """The scan finds the commands it is meant to check (it would pass vacuously otherwise)."""
    serving = [args for _, args in (p.values for p in DOC_COMMANDS) if is_serving(args)]
    assert len(DOC_COMMANDS) >= 8, DOC_COMMANDS
    assert any(args and args[0] == "serve" for args in serving)


def is_serving(args: list[str]) -> bool:
    return not args or args[0] == "serve" or args[0] not in SUBCOMMANDS


def with_option(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option``'s value replaced (the docs' placeholder paths and ports)."""
    out = list(args)
    for i, word in enumerate(out[:-1]):
        if word == option:
            out[i + 1] = value
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # an ODPS error answer (no signature) is an answer
    except OSError:
        return False


@pytest.mark.parametrize("page,args", DOC_COMMANDS)
def test_doc_command_runs(page: Path, args: list[str], tmp_path: Path):
    data_dir = str(tmp_path / "data")
    args = with_option(args, "--data-dir", data_dir)
    if not is_serving(args):
        # Data-directory commands assume the ones shown before them on the page ran.
        for earlier in emulator_commands(page):
            earlier = with_option(earlier, "--data-dir", data_dir)
            if is_serving(earlier):
                continue
            done = subprocess.run([str(SCRIPT), *earlier], capture_output=True, text=True)
            assert done.returncode == 0, f"{' '.join(earlier)}\n{done.stdout}\n{done.stderr}"
            if earlier == args:
                return
        pytest.fail(f"{args} not found again on {page}")
    port = free_port()
    args = with_option(args, "--port", str(port))
    server = subprocess.Popen(
        [str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(
            lambda: server.poll() is not None or answers(f"http://127.0.0.1:{port}/api/projects"),
            timeout=60,
            message=f"odps-tunnel-emulator {' '.join(args)} to answer on port {port}",
        )
        assert server.poll() is None, server.communicate()[0]
    finally:
        server.terminate()
        server.communicate(timeout=30)
