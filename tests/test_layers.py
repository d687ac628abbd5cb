"""The package's layering, as the import contracts of ``.importlinter`` (import-linter).

``make test`` runs ``lint-imports`` too; here it runs on the package (every contract must
hold) and on a copy with forbidden imports added (the contracts must catch them). What the
static analysis cannot see is checked at run time: the packages Python imports for a
parent package or a third-party library, and the compiled codec (not Python source).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.api import read_configuration

from airflow_provider_odps_tunnel.tunnel import options
from airflow_provider_odps_tunnel.tunnel.codec import record_codec
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column
from airflow_provider_odps_tunnel.tunnel.errors import StreamTruncatedError

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_odps_tunnel"
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}  # one line per contract in the report
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(CONFIG)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def contract_names() -> dict[str, str]:
    """Contract id -> name, from the configuration."""
    return {c["id"]: c["name"] for c in read_configuration(str(CONFIG))["contracts_options"]}


def verdicts(report: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, from a lint-imports report."""
    names = contract_names().values()
    found = {}
    for line in report.splitlines():
        for name in names:
            match = re.fullmatch(re.escape(name) + r" (KEPT|BROKEN)\b.*", line.strip())
            if match:
                found[name] = match.group(1)
    return found


def test_every_contract_holds():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(verdicts(proc.stdout).values()) == {"KEPT"}
    assert len(verdicts(proc.stdout)) == len(contract_names()) >= 7


def test_contracts_catch_forbidden_imports(tmp_path):
    """A copy of the package with a forbidden import in the codec and one in the client."""
    copy = tmp_path / PACKAGE
    shutil.copytree(
        ROOT / PACKAGE,
        copy,
        ignore=lambda _dir, names: (
            [n for n in names if not n.endswith(".py") and not (Path(_dir) / n).is_dir()]
            + ["__pycache__"]
        ),
    )
    types_py = copy / "tunnel" / "codec" / "types.py"
    types_py.write_text(types_py.read_text() + "\nimport requests  # noqa\n")
    table_tunnel = copy / "tunnel" / "table_tunnel.py"
    table_tunnel.write_text(
        table_tunnel.read_text() + "\nfrom airflow_provider_odps_tunnel.hooks import tunnel\n"
    )
    proc = lint_imports(tmp_path, pythonpath=tmp_path)
    print(proc.stdout)  # shown with -s: which contracts broke, and the chains
    assert proc.returncode == 1, proc.stdout + proc.stderr
    names = contract_names()
    got = verdicts(proc.stdout)
    broken = {cid for cid, name in names.items() if got.get(name) == "BROKEN"}
    assert broken == {"codec-leaf", "emulator-standalone", "tunnel-standalone"}, proc.stdout
    assert len(got) == len(names)  # every other contract was checked and kept
    # The report names the offending imports (so the copy, not the installed package, was read).
    assert "airflow_provider_odps_tunnel.tunnel.codec.types -> requests" in proc.stdout
    assert (
        "airflow_provider_odps_tunnel.tunnel.table_tunnel -> "
        "airflow_provider_odps_tunnel.hooks.tunnel" in proc.stdout
    )


def test_forbidden_lists_name_every_child_of_tunnel():
    """import-linter forbids a package with all its descendants, so "all of tunnel but codec
    and errors" is a list of tunnel's children: it must name each one (a new module too)."""
    children = {
        path.stem if path.is_file() else path.name
        for path in (ROOT / PACKAGE / "tunnel").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    contracts = {c["id"]: c for c in read_configuration(str(CONFIG))["contracts_options"]}
    prefix = f"{PACKAGE}.tunnel."
    forbidden = {
        m.removeprefix(prefix)
        for m in contracts["emulator-standalone"]["forbidden_modules"]
        if m.startswith(prefix)
    }
    assert forbidden | {"codec", "errors"} == children
    assert not forbidden & {"codec", "errors"}


def _modules_after_import(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_emulator_loads_no_http_client_airflow_or_tunnel_client():
    """At run time, with what uvicorn and starlette import: no ``requests`` (the emulator
    talks to a child emulator with http.client), no Airflow, and of tunnel only the
    codecs, the errors and what the parent package's ``__init__`` loads (``options``)."""
    modules = _modules_after_import(
        "import airflow_provider_odps_tunnel.emulator.server\n"
        "import airflow_provider_odps_tunnel.emulator.cli\n"
        "import airflow_provider_odps_tunnel.emulator.pytest_plugin\n"
    )
    top = {m.split(".")[0] for m in modules}
    assert not top & {"requests", "airflow"}
    ours = {m for m in modules if m.startswith(f"{PACKAGE}.")}
    layers = ("hooks", "operators", "sensors", "triggers", "get_provider_info")
    assert not {m for m in ours if m.split(".")[1] in layers}
    allowed = (f"{PACKAGE}.tunnel.codec", f"{PACKAGE}.tunnel.errors", f"{PACKAGE}.tunnel.options")
    tunnel = {m for m in ours if m.startswith(f"{PACKAGE}.tunnel.")}
    assert {m for m in tunnel if not m.startswith(allowed)} == set()


# The compiled codec (_record_codec_c.pyx) is not Python source, so import-linter does not
# see its imports: check that it, like the reference codec, takes its settings as arguments.
CODECS = [
    pytest.param(record_codec.PyRecordEncoder, record_codec.PyRecordDecoder, id="python"),
    pytest.param(record_codec.RecordEncoder, record_codec.RecordDecoder, id="compiled"),
]


@pytest.mark.parametrize(("encoder", "decoder"), CODECS)
def test_codecs_take_settings_as_arguments_not_from_options(monkeypatch, encoder, decoder):
    monkeypatch.setattr(options, "string_as_binary", True)
    monkeypatch.setattr(options, "require_stream_footer", False)
    monkeypatch.setattr(options, "local_timezone", "Asia/Shanghai")
    columns = [Column("s", "string")]
    enc = encoder(columns)
    body = bytearray()
    enc.encode(["x"], body)
    records = bytes(body)
    body += enc.footer()
    # defaults: string_as_binary=False, require_footer=True, whatever the options say
    assert list(decoder(columns, io.BytesIO(bytes(body)))) == [["x"]]
    with pytest.raises(StreamTruncatedError):
        list(decoder(columns, io.BytesIO(records)))
    # explicit arguments
    assert list(decoder(columns, io.BytesIO(bytes(body)), string_as_binary=True)) == [[b"x"]]
    assert list(decoder(columns, io.BytesIO(records), require_footer=False)) == [["x"]]


def import_cycles(package: str) -> list[list[str]]:
    """The strongly connected groups of more than one module in ``package``'s import graph
    (imports in functions and under TYPE_CHECKING included, as import-linter sees them)."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    edges = {
        m: set(graph.find_modules_directly_imported_by(m)) & graph.modules for m in graph.modules
    }
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in edges[module]:
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return cycles


def test_no_import_cycles():
    """No two modules of ours import each other, directly or around a loop (the layers
    contracts order the layers; this also covers modules within one layer)."""
    assert import_cycles("airflow_provider_odps_tunnel") == []


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("def f():\n    from loopy import c\n")
    (package / "c.py").write_text("import loopy.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("loopy") == [["loopy.a", "loopy.b", "loopy.c"]]
