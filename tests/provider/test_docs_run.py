"""The examples of the documentation run as written, against a private emulator.

A code block of a page in ``docs/`` runs when the line before it is ``<!-- test: run -->``
(the convention is described in ``docs/index.md``, "Examples that run"):

* a ``python`` block is executed; then every DAG it defined is run with ``dag.test()`` for
  the logical date 2024-06-01, and must succeed;
* a ``bash`` block is run with ``bash -e``, the console scripts of this environment first on
  the ``PATH``.

HTML comments, invisible on the site, prepare and check: ``<!-- test: setup ... -->`` holds
Python run before the next block, ``<!-- test: check ... -->`` Python run after it. Both
see the helpers of ``_namespace`` (``create_table``, ``write_parquet``, ``read_table``,
``emulator``, ``pa``). Each page gets its own emulator, with ``odps_tunnel_default``
pointing at it, and its own directory, which replaces ``/tmp/odps_example`` in every
block, so that pages can show plain paths.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import connection_json
from .data import create_table, read_table
from .helpers import REPO_ROOT, load_dag_module

pytestmark = pytest.mark.usefixtures("airflow_db")

DOCS = REPO_ROOT / "docs"
LOGICAL_DATE = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)
EXAMPLE_DIR = "/tmp/odps_example"
BUNDLES = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
_MARKERS = re.compile(
    r"<!-- test: (?P<kind>setup|check)\n(?P<code>.*?)-->"
    r"|<!-- test: run -->\n```(?P<lang>python|bash)\n(?P<block>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class Step:
    """One thing to do for a page: ``setup``/``check`` Python, or a ``python``/``bash``
    block to run, with the line it starts on (for failure messages)."""

    kind: str
    code: str
    line: int


def page_steps(page: Path) -> list[Step]:
    """The marked steps of ``page``, in page order."""
    text = page.read_text()
    steps = []
    for match in _MARKERS.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if match["kind"]:
            steps.append(Step(match["kind"], match["code"], line))
        else:
            steps.append(Step(match["lang"], match["block"], line))
    return steps


def pages_with_examples() -> list[Path]:
    return [
        p
        for p in sorted(DOCS.rglob("*.md"))
        if any(s.kind in ("python", "bash") for s in page_steps(p))
    ]


def test_the_pages_the_convention_promises_have_examples_that_run():
    names = {p.name for p in pages_with_examples()}
    assert {"getting-started.md", "connection.md"} <= names
    # A marker that matches no block (a typo, a block of another language) is a mistake.
    for page in sorted(DOCS.rglob("*.md")):
        marked = len(re.findall(r"^<!-- test: ", page.read_text(), re.M))
        assert marked == len(page_steps(page)), (
            f"{page.name}: a test marker is not followed by a block"
        )


@pytest.fixture
def page_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A private emulator as ``odps_tunnel_default``: pages create tables freely."""
    from airflow_provider_odps_tunnel.emulator import Emulator

    emu = Emulator(tmp_path / "emulator").start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT", connection_json(emu))
        # dag.test() runs only DAGs of a configured bundle: the page's blocks are one.
        bundles = json.loads(os.environ[BUNDLES])
        bundles.append(
            {
                "name": "docs-examples",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(tmp_path), "refresh_interval": 0},
            }
        )
        monkeypatch.setenv(BUNDLES, json.dumps(bundles))
        yield emu
    finally:
        emu.stop()


def _namespace(emu: Any) -> dict[str, Any]:
    """What setup and check code can use."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write_parquet(path: str, table: pa.Table) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    return {
        "emulator": emu,
        "pa": pa,
        "create_table": lambda name, columns, partitions="", **kw: create_table(
            emu, name, columns, partitions, **kw
        ),
        "read_table": lambda name, partition=None: read_table(emu, name, partition),
        "write_parquet": write_parquet,
    }


def _run_python(code: str, namespace: dict[str, Any], path: Path, where: str) -> None:
    """Run the block as the DAG file ``path`` (``dag.test()`` re-reads a DAG from its
    file), then every DAG it made; its globals join ``namespace`` for later checks."""
    path.write_text(code)
    module = load_dag_module(path)
    for dag in _dags_defined(vars(module)):
        run = dag.test(logical_date=LOGICAL_DATE)
        states = {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()}
        assert run.state == "success", f"{where}: DAG {dag.dag_id} ended {run.state}: {states}"
    namespace.update({k: v for k, v in vars(module).items() if not k.startswith("__")})


def _dags_defined(module_globals: dict[str, Any]) -> list[Any]:
    """The DAGs a block made: bound to a name, or (``with DAG(...):`` without ``as``) the
    DAG of an operator or task output it bound."""
    from airflow.sdk import DAG, BaseOperator

    found: dict[str, Any] = {}
    for value in module_globals.values():
        if isinstance(value, DAG):
            found[value.dag_id] = value
        operator = value if isinstance(value, BaseOperator) else getattr(value, "operator", None)
        dag = getattr(operator, "dag", None)
        if isinstance(dag, DAG):
            found[dag.dag_id] = dag
    return list(found.values())


def _run_bash(code: str, cwd: Path, where: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-e", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"{where}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: p.name)
def test_the_examples_of_the_page_run(page: Path, page_emulator: Any, tmp_path: Path):
    examples = tmp_path / "odps_example"
    examples.mkdir()
    namespace = _namespace(page_emulator)
    for step in page_steps(page):
        code = step.code.replace(EXAMPLE_DIR, str(examples))
        where = f"{page.name}:{step.line}"
        if step.kind == "bash":
            _run_bash(code, examples, where)
        elif step.kind == "python":
            module = tmp_path / f"{page.stem.replace('-', '_')}_{step.line}.py"
            _run_python(code, namespace, module, where)
        else:
            exec(compile(code, where, "exec"), namespace)
