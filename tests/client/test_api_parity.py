"""API parity with pyodps 0.13.2's ``odps.tunnel``: every public class it exports (and the
classes its sessions hand out) exists in ours with the same members and parameters.

For each pyodps class the test lists the differences, one string each:

* the class is missing from ours;
* a public method, property, attribute (class-level or set as ``self.x`` in its methods),
  enum member or nested class is missing, or has another kind (method against attribute);
* an enum member has another value;
* a method's parameters differ: a pyodps parameter is missing, has another kind
  (positional / keyword-only / ``*args`` / ``**kwargs``) or position, or is optional in
  pyodps and required in ours. Ours may add parameters after pyodps's, as long as they
  are keyword-only with a default (or a ``**kwargs``).

One test per pyodps class, with the class name as id (``-k Stream`` selects the stream
session's classes). ``ALLOWED`` lists the deliberate differences, each with its reason;
``docs/parity.md`` mirrors it. ``python -m tests.client.test_api_parity`` prints every
difference and their count.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import odps.tunnel as py_tunnel
import pytest
from odps.tunnel import base as py_base
from odps.tunnel import hasher as py_hasher
from odps.tunnel import instancetunnel as py_instancetunnel
from odps.tunnel import tabletunnel as py_tabletunnel
from odps.tunnel import volumetunnel as py_volumetunnel
from odps.tunnel.io import reader as py_reader
from odps.tunnel.io import writer as py_writer

from airflow_provider_odps_tunnel import tunnel as ours

OUR_PACKAGE = "airflow_provider_odps_tunnel"

# Base classes of pyodps whose members are not part of the tunnel API: the model layer
# that parses and serialises the sessions' JSON (parse, serialize, parent, serial,
# deserial, extract). Ours parses JSON in the session modules and exposes the fields.
SKIPPED_PY_BASES = ("odps.serializers",)

# Dunder methods that are protocol, so part of the API (iteration, slicing, length, with).
PROTOCOL_DUNDERS = frozenset(
    {"__iter__", "__next__", "__len__", "__getitem__", "__enter__", "__exit__", "__contains__"}
)

# Classes users construct themselves: their __init__ is API too. Sessions, readers and
# writers are made by the tunnels, so their constructors are not compared.
CONSTRUCTED = frozenset(
    {
        "TableTunnel",
        "InstanceTunnel",
        "VolumeTunnel",
        "VolumeFSTunnel",
        "CompressOption",
        "RecordHasher",
    }
)

# Deliberate differences: (pyodps class id, member) -> reason. A member listed here
# excuses every difference of that member ('' is the class itself). Mirrored in
# docs/parity.md; test_allow_list_entries_are_used drops entries nothing needs any more.
ALLOWED: dict[tuple[str, str], str] = {}

# pyodps's request plumbing on its session base classes: public by name only, they take
# pyodps's own response objects and build its request dicts. Ours builds headers and
# parameters in TableSession._headers/_params and maps errors in transport/rest.py.
_PLUMBING = {
    "check_tunnel_response": "takes a pyodps response object; ours raises from transport/rest.py",
    "get_common_headers": "pyodps's header builder; ours is TableSession._headers (same headers sent)",
    "get_common_params": "pyodps's query builder; ours is TableSession._params (same parameters sent)",
    "normalize_partition_spec": "pyodps's spec-to-string helper; ours normalises in codec/partition.py",
    "retry_handler": "pyodps's retry machinery object; ours is one policy, transport/retry.py",
}
_TABLE_SESSIONS = (
    "TableDownloadSession",
    "TableUploadSession",
    "TableStreamUploadSession",
    "TableUpsertSession",
)
for _session in _TABLE_SESSIONS:
    for _member, _reason in _PLUMBING.items():
        ALLOWED[(_session, _member)] = _reason
for _session in ("VolumeDownloadSession", "VolumeUploadSession"):
    for _member in ("check_tunnel_response", "get_common_headers", "retry_handler"):
        ALLOWED[(_session, _member)] = _PLUMBING[_member]
ALLOWED[("InstanceDownloadSession", "retry_handler")] = _PLUMBING["retry_handler"]


@dataclass(frozen=True)
class Case:
    """One pyodps class and how to find its counterpart in ours."""

    id: str
    theirs: type
    locate: Callable[[], Any]
    # for a module-level alias of a nested class (TableDownloadStatus): our parent's
    # nested class the alias must be the very same object as
    same_as: Callable[[], Any] | None = None


def _our_attr(path: str) -> Callable[[], Any]:
    """A locator of ``module:Name.Nested`` below ``tunnel`` (or ``Name.Nested`` in ``tunnel``)."""

    def locate() -> Any:
        module_name, _, qualname = path.rpartition(":")
        obj: Any = ours
        if module_name:
            obj = importlib.import_module(f"{ours.__name__}.{module_name}")
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj

    return locate


def _nested_classes(cls: type) -> list[tuple[str, type]]:
    return [
        (name, value)
        for name, value in vars(cls).items()
        if inspect.isclass(value) and not name.startswith("_")
    ]


def _cases() -> list[Case]:
    """Every public class of ``odps.tunnel``, their nested classes, and the classes the
    sessions return that pyodps does not export."""
    exported = {
        name: value
        for name, value in vars(py_tunnel).items()
        if inspect.isclass(value) and not name.startswith("_")
    }
    aliases = {value: name for name, value in exported.items() if name != value.__name__}
    cases: list[Case] = []
    for name, cls in sorted(exported.items()):
        if name in aliases.values():
            parent, _, nested = cls.__qualname__.rpartition(".")
            cases.append(Case(name, cls, _our_attr(name), _our_attr(f"{parent}.{nested}")))
            continue
        cases.append(Case(name, cls, _our_attr(name)))
        for nested_name, nested in _nested_classes(cls):
            if nested not in aliases:
                qual = f"{name}.{nested_name}"
                cases.append(Case(qual, nested, _our_attr(qual)))
    # Reachable but not exported by pyodps: (pyodps class, where ours lives, id).
    reachable = [
        (py_tabletunnel.Slot, "Slot", "Slot"),
        (py_writer.StreamRecordWriter, "StreamRecordWriter", "StreamRecordWriter"),
        # TableTunnel.open_preview_reader(arrow=False) returns it
        (py_reader.ArrowRecordReader, "ArrowRecordReader", "ArrowRecordReader-preview"),
        (py_volumetunnel.VolumeReader, "VolumeReader", "VolumeReader"),
        (py_volumetunnel.VolumeWriter, "VolumeWriter", "VolumeWriter"),
        (py_volumetunnel.VolumeFSWriter, "VolumeFSWriter", "VolumeFSWriter"),
        # open_record_reader(..., buffered=True) returns it
        (py_reader.BufferedRecordReader, "BufferedRecordReader", "BufferedRecordReader"),
        # what the readers' and writers' ``metrics`` return
        (py_base.TunnelMetrics, "TunnelMetrics", "TunnelMetrics"),
    ]
    for cls, path, case_id in reachable:
        cases.append(Case(case_id, cls, _our_attr(OUR_PATHS.get(path, path))))
    return cases


# Where ours keeps classes it does not export from ``tunnel`` (module:Name below tunnel).
OUR_PATHS = {
    "StreamRecordWriter": "sessions.stream_upload:StreamRecordWriter",
    "ArrowRecordReader": "sessions.preview:PreviewRecordReader",
    "VolumeReader": "io.volume:VolumeReader",
    "VolumeWriter": "io.volume:VolumeWriter",
    "TunnelMetrics": "io.metrics:TunnelMetrics",
}

# Pure-Python twins of pyodps's compiled classes (same API), for their constructors.
PY_TWINS = {"RecordHasher": py_hasher.RecordHasher}

# pyodps modules whose classes' ``self.x = ...`` assignments count as public attributes
PY_SOURCE_MODULES = (py_tabletunnel, py_instancetunnel, py_volumetunnel, py_reader, py_writer)


# ---------------------------------------------------------------------------------------
# member discovery


def _self_attributes(cls: type) -> set[str]:
    """Public names a class's own methods assign as ``self.name`` (instance attributes)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return set()
    names = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                    and not sub.attr.startswith("_")
                ):
                    names.add(sub.attr)
    return names


def _is_public(name: str) -> bool:
    return not name.startswith("_") or name in PROTOCOL_DUNDERS


def _kind(value: Any) -> str:
    """'method', 'class', 'enum member' or 'attribute' for a class's static attribute."""
    if isinstance(value, enum.Enum):
        return "enum member"
    if inspect.isclass(value):
        return "class"
    if isinstance(value, (staticmethod, classmethod)) or inspect.isroutine(value):
        return "method"
    if type(value).__name__ in (
        "cython_function_or_method",
        "wrapper_descriptor",
        "method_descriptor",
    ):
        return "method"
    return "attribute"


def _py_members(cls: type) -> dict[str, tuple[str, Any]]:
    """pyodps's public members: name -> (kind, static value or None)."""
    members: dict[str, tuple[str, Any]] = {}
    if issubclass(cls, enum.Enum):
        return {name: ("enum member", member) for name, member in cls.__members__.items()}
    for base in reversed(cls.__mro__):
        if base is object or base.__module__.startswith(SKIPPED_PY_BASES):
            continue
        for name, value in vars(base).items():
            if _is_public(name):
                members[name] = (_kind(value), value)
        if any(base.__module__ == module.__name__ for module in PY_SOURCE_MODULES):
            for name in _self_attributes(base):
                members.setdefault(name, ("attribute", None))
    if cls.__name__ in CONSTRUCTED:
        # a compiled class shows a generic __init__; its pure-Python twin has the real one
        twin = PY_TWINS.get(cls.__name__, cls)
        members["__init__"] = ("method", twin.__init__)
    return members


def _our_members(cls: type) -> dict[str, tuple[str, Any]]:
    """Our members: as for pyodps, plus annotated (dataclass) fields."""
    members: dict[str, tuple[str, Any]] = {}
    if issubclass(cls, enum.Enum):
        return {name: ("enum member", member) for name, member in cls.__members__.items()}
    for base in reversed(cls.__mro__):
        if base is object or not base.__module__.startswith(OUR_PACKAGE):
            continue
        for name in getattr(base, "__annotations__", {}):
            if _is_public(name) and "ClassVar" not in str(base.__annotations__[name]):
                members[name] = ("attribute", None)
        for name, value in vars(base).items():
            if _is_public(name):
                members[name] = (_kind(value), value)
        for name in _self_attributes(base):
            members.setdefault(name, ("attribute", None))
    members["__init__"] = ("method", cls.__init__)
    return members


# ---------------------------------------------------------------------------------------
# signatures


def _parameters(value: Any) -> list[inspect.Parameter] | None:
    """The parameters callers pass (without self/cls), or None if unknown (builtins)."""
    func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if not isinstance(value, staticmethod) and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return params


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _kind_name(param: inspect.Parameter) -> str:
    return {
        inspect.Parameter.POSITIONAL_ONLY: "positional-only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional-or-keyword",
        inspect.Parameter.VAR_POSITIONAL: "*args",
        inspect.Parameter.KEYWORD_ONLY: "keyword-only",
        inspect.Parameter.VAR_KEYWORD: "**kwargs",
    }[param.kind]


def _compatible_kind(theirs: inspect.Parameter, mine: inspect.Parameter) -> bool:
    if theirs.kind == mine.kind:
        return True
    # Cython reports positional-only where a Python def would not: accept ours being
    # callable by keyword as well.
    return (
        theirs.kind == inspect.Parameter.POSITIONAL_ONLY
        and mine.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    )


def signature_differences(
    theirs: list[inspect.Parameter], mine: list[inspect.Parameter]
) -> list[str]:
    """How our parameters differ from pyodps's (see the module docstring for the rules)."""
    diffs: list[str] = []
    our_by_name = {p.name: p for p in mine}
    our_var = {
        p.kind: p
        for p in mine
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    their_positional = [p.name for p in theirs if p.kind in _POSITIONAL]
    our_positional = [p.name for p in mine if p.kind in _POSITIONAL]
    for param in theirs:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if param.kind not in our_var:
                diffs.append(f"takes no {_kind_name(param)} ({param.name})")
            continue
        mine_param = our_by_name.get(param.name)
        if mine_param is None:
            diffs.append(f"parameter {param.name!r} missing")
            continue
        if not _compatible_kind(param, mine_param):
            diffs.append(
                f"parameter {param.name!r} is {_kind_name(mine_param)}, pyodps: {_kind_name(param)}"
            )
        elif param.kind in _POSITIONAL and our_positional.index(
            param.name
        ) != their_positional.index(param.name):
            diffs.append(
                f"parameter {param.name!r} at position {our_positional.index(param.name)}, "
                f"pyodps: {their_positional.index(param.name)}"
            )
        if (
            param.default is not inspect.Parameter.empty
            and mine_param.default is inspect.Parameter.empty
        ):
            diffs.append(f"parameter {param.name!r} is required, optional in pyodps")
    their_names = {p.name for p in theirs}
    for param in mine:
        if param.name in their_names or param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            continue
        if param.kind != inspect.Parameter.KEYWORD_ONLY or param.default is inspect.Parameter.empty:
            diffs.append(f"extra parameter {param.name!r} must be keyword-only with a default")
    return diffs


# ---------------------------------------------------------------------------------------
# comparing one class


def class_differences(case: Case) -> list[str]:
    """Every difference of our counterpart of ``case.theirs``, as ``Case.member: what``."""
    try:
        mine = case.locate()
    except (AttributeError, ImportError):
        return [f"{case.id}: class missing"]
    if not inspect.isclass(mine):
        return [f"{case.id}: is a {type(mine).__name__}, not a class"]
    diffs: list[str] = []
    if case.same_as is not None:
        try:
            nested = case.same_as()
        except AttributeError:
            nested = None
        if nested is not mine:
            diffs.append(f"{case.id}: is not the session's nested class")
    our_members = _our_members(mine)
    for name, (kind, value) in sorted(_py_members(case.theirs).items()):
        where = f"{case.id}.{name}"
        if kind == "class" and inspect.isclass(value) and (value.__name__ == name):
            continue  # a nested class is a case of its own
        if name not in our_members:
            diffs.append(f"{where}: missing ({kind})")
            continue
        our_kind, our_value = our_members[name]
        if kind == "enum member":
            if our_kind == "enum member" and our_value.value != value.value:
                diffs.append(f"{where}: value {our_value.value!r}, pyodps: {value.value!r}")
            continue
        if (kind == "method") != (our_kind == "method"):
            diffs.append(f"{where}: is a {our_kind} in ours, a {kind} in pyodps")
            continue
        if kind == "method" and not name.startswith("__") or name == "__init__":
            their_params = _parameters(value)
            our_params = _parameters(our_value)
            if their_params is not None and our_params is not None:
                diffs.extend(
                    f"{where}: {d}" for d in signature_differences(their_params, our_params)
                )
    return diffs


def _member_of(case_id: str, diff: str) -> str:
    """The member a difference is about ('' for the class itself)."""
    rest = diff[len(case_id) :]
    return rest[1:].split(":", 1)[0] if rest.startswith(".") else ""


def unexcused(case: Case) -> list[str]:
    """The differences of a case that ``ALLOWED`` does not excuse."""
    return [d for d in class_differences(case) if (case.id, _member_of(case.id, d)) not in ALLOWED]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity_with_pyodps(case: Case) -> None:
    diffs = unexcused(case)
    assert not diffs, "\n".join(diffs)


def test_allow_list_entries_are_used() -> None:
    """Every allow-list entry excuses a difference that still exists, so it never rots."""
    by_id = {c.id: c for c in CASES}
    stale = [
        key
        for key in ALLOWED
        if key[0] not in by_id
        or not any(_member_of(key[0], d) == key[1] for d in class_differences(by_id[key[0]]))
    ]
    assert not stale


def test_allow_list_is_documented() -> None:
    """docs/parity.md names every allowed member, so the page and the table agree."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "parity.md").read_text()
    undocumented = sorted({m for _, m in ALLOWED if f"`{m}`" not in page})
    assert not undocumented


def test_signature_rules() -> None:
    """The parameter rules on hand-made signatures, so a pass above means something."""

    def params(func: Callable[..., Any]) -> list[inspect.Parameter]:
        return list(inspect.signature(func).parameters.values())

    def theirs(start, count, compress=False, **kw): ...  # noqa: ANN001, ANN003, ANN202
    def same(start, count, compress=False, *, extra=1, **kw): ...  # noqa: ANN001, ANN003, ANN202
    def renamed(start, n, compress=False, **kw): ...  # noqa: ANN001, ANN003, ANN202
    def swapped(count, start, compress=False, **kw): ...  # noqa: ANN001, ANN003, ANN202
    def required(start, count, compress, **kw): ...  # noqa: ANN001, ANN003, ANN202
    def no_kwargs(start, count, compress=False): ...  # noqa: ANN001, ANN202
    def positional_extra(start, count, compress=False, extra=1, **kw): ...  # noqa: ANN001, ANN003, ANN202

    assert signature_differences(params(theirs), params(same)) == []
    assert signature_differences(params(theirs), params(renamed)) == [
        "parameter 'count' missing",
        "extra parameter 'n' must be keyword-only with a default",
    ]
    assert signature_differences(params(theirs), params(swapped)) == [
        "parameter 'start' at position 1, pyodps: 0",
        "parameter 'count' at position 0, pyodps: 1",
    ]
    assert signature_differences(params(theirs), params(required)) == [
        "parameter 'compress' is required, optional in pyodps"
    ]
    assert signature_differences(params(theirs), params(no_kwargs)) == ["takes no **kwargs (kw)"]
    assert signature_differences(params(theirs), params(positional_extra)) == [
        "extra parameter 'extra' must be keyword-only with a default"
    ]


def all_differences() -> dict[str, list[str]]:
    """Unexcused differences per class id (the script mode's data)."""
    return {case.id: unexcused(case) for case in CASES}


def main() -> int:
    """Print every unexcused difference and their count; the exit status is 1 if any."""
    total = 0
    for diffs in all_differences().values():
        for diff in diffs:
            print(diff)
        total += len(diffs)
    print(f"{total} differences ({len(ALLOWED)} allowed) in {len(CASES)} classes")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
