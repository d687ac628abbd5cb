"""The repository is self-contained: section references point into docs/protocol.md, and
nothing reads from outside the checkout.

Code comments and pages cite the protocol notes as "§5" or "§5.2". Each cited number must
be a heading of docs/protocol.md (``## 5. ...`` or ``### 5.2 ...``), so that a reader who
follows a reference lands on the section meant. The golden vectors live in
``tests/vectors``; no test, benchmark, script or page may point at a folder beside the
checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = REPO / "docs" / "protocol.md"

# Where references and paths can appear, and which files are text worth reading.
SCANNED_DIRS = ("airflow_provider_odps_tunnel", "tests", "docs", "benchmarks", "scripts")
SCANNED_DIRS += ("dags_examples",)
TOP_LEVEL_FILES = ("README.md", "Makefile", "mkdocs.yml", "setup.py", "setup.cfg")
TOP_LEVEL_FILES += ("pyproject.toml",)
TEXT_SUFFIXES = {".py", ".pyx", ".pxd", ".md", ".txt", ".yml", ".yaml", ".toml", ".cfg"}
TEXT_SUFFIXES |= {".ini", ".sh", ".j2"}
SKIPPED_PARTS = {"__pycache__", ".venv", "build", ".pytest_cache", ".hypothesis"}

SECTION = "\N{SECTION SIGN}"
REFERENCE = re.compile(SECTION + r"\s*(\d+(?:\.\d+)?)")
TOP_HEADING = re.compile(r"^## (\d+)\. \S", re.M)
SUB_HEADING = re.compile(r"^### (\d+)\.(\d+) \S", re.M)

# Spelled in pieces so that this file does not match itself.
OUTSIDE_PATHS = [re.compile(re.escape(".." + sep + "shared")) for sep in ("/", "\\")] + [
    re.compile(r"parent\s*/\s*[\"']" + "shared" + r"[\"']"),
    re.compile(r"[\"']" + r"\.\.[\"']\s*,\s*[\"']" + "shared" + r"[\"']"),
    re.compile("shared" + r"/(?:vectors|docs|hooks)\b"),
]


def scanned_files() -> list[Path]:
    files = [REPO / name for name in TOP_LEVEL_FILES if (REPO / name).is_file()]
    for top in SCANNED_DIRS:
        for path in sorted((REPO / top).rglob("*")):
            rel = path.relative_to(REPO)
            if SKIPPED_PARTS.intersection(rel.parts) or not path.is_file():
                continue
            if path.suffix in TEXT_SUFFIXES:
                files.append(path)
    return files


def protocol_sections() -> set[str]:
    text = PROTOCOL.read_text(encoding="utf-8")
    return set(TOP_HEADING.findall(text)) | {f"{a}.{b}" for a, b in SUB_HEADING.findall(text)}


def references() -> list[tuple[str, int, str]]:
    """Every (file, line, "N" or "N.M") section reference in the scanned files."""
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        if SECTION not in text:
            continue
        rel = path.relative_to(REPO).as_posix()
        for lineno, line in enumerate(text.splitlines(), 1):
            found += [(rel, lineno, ref) for ref in REFERENCE.findall(line)]
    return found


def test_protocol_headings_are_numbered_like_the_source():
    text = PROTOCOL.read_text(encoding="utf-8")
    tops = TOP_HEADING.findall(text)
    assert tops == [str(n) for n in range(14)], "sections 0 to 13, once each and in order"
    subs = SUB_HEADING.findall(text)
    assert len(subs) == len(set(subs)), "a subsection number is used twice"
    # Each N.M sits under its own ## N., and numbers run 1, 2, 3, ... within a section.
    current, expected = None, 1
    for line in text.splitlines():
        top = TOP_HEADING.match(line)
        if top:
            current, expected = top.group(1), 1
            continue
        sub = SUB_HEADING.match(line)
        if sub:
            assert sub.group(1) == current, f"{line!r} is not under section {sub.group(1)}"
            assert int(sub.group(2)) == expected, f"{line!r}: expected {current}.{expected}"
            expected += 1


def test_every_section_reference_names_a_heading():
    sections = protocol_sections()
    dangling = [f"{f}:{n}: {SECTION}{ref}" for f, n, ref in references() if ref not in sections]
    assert not dangling, "references to sections docs/protocol.md lacks:\n" + "\n".join(dangling)


def test_references_are_found_where_they_are_expected():
    """Guards the scan itself: an empty result would make the test above pass vacuously."""
    refs = references()
    files = {f for f, _, _ in refs}
    assert len(refs) > 50
    assert any(f.startswith("airflow_provider_odps_tunnel/tunnel/") for f in files)
    assert any(f.startswith("airflow_provider_odps_tunnel/emulator/") for f in files)
    assert "docs/emulator.md" in files and "docs/protocol.md" in files


@pytest.mark.parametrize(
    "text",
    [
        "see " + "../" + "shared" + "/vectors",
        "Path(__file__).parent / " + '"shared"',
        "os.path.join(" + '"..", "shared")',
        "kept in " + "shared" + "/docs/tunnel-protocol.md",
    ],
)
def test_outside_path_patterns_match(text):
    assert any(p.search(text) for p in OUTSIDE_PATHS)


def test_nothing_points_outside_the_checkout():
    me = Path(__file__).resolve()
    hits = []
    for path in scanned_files():
        if path.resolve() == me:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE_PATHS):
                hits.append(f"{path.relative_to(REPO).as_posix()}:{lineno}: {line.strip()}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


def test_vectors_are_part_of_the_checkout(vectors_dir, repo_root):
    assert vectors_dir.resolve().is_relative_to(repo_root.resolve())
    assert vectors_dir.resolve() == (REPO / "tests" / "vectors").resolve()
    for name in ("README.md", "manifest.json", "typical.c.bin", "arrow_typical.jsonl"):
        assert (vectors_dir / name).is_file(), name
