"""Packaging checks: provider metadata, entry point registration, Airflow-free tunnel client."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import airflow_provider_odps_tunnel
from airflow_provider_odps_tunnel.get_provider_info import get_provider_info

DIST_NAME = "airflow-provider-odps-tunnel"
HOOK_CLASS = "airflow_provider_odps_tunnel.hooks.tunnel.OdpsTunnelHook"


def _airflow_schema(name: str) -> dict:
    # find_spec locates the installed airflow package without importing (initialising) it.
    spec = importlib.util.find_spec("airflow")
    assert spec is not None and spec.submodule_search_locations, "apache-airflow is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / name
    return json.loads(path.read_text(encoding="utf-8"))


def _validate(instance: object, schema: dict) -> None:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    cls(schema).validate(instance)


def _connection_type(info: dict, conn_type: str) -> dict:
    matches = [c for c in info.get("connection-types", []) if c["connection-type"] == conn_type]
    assert len(matches) == 1, f"expected exactly one {conn_type!r} connection type, got {matches}"
    return matches[0]


def test_provider_info_matches_airflow_schema():
    _validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))


def test_connection_types_match_provider_yaml_schema():
    # provider_info.schema.json does not describe conn-fields / ui-field-behaviour;
    # provider.yaml.schema.json does, and is stricter about them.
    yaml_schema = _airflow_schema("provider.yaml.schema.json")
    schema = dict(yaml_schema["properties"]["connection-types"])
    schema["$schema"] = yaml_schema["$schema"]
    _validate(get_provider_info()["connection-types"], schema)


def test_provider_info_declares_odps_tunnel_connection():
    info = get_provider_info()
    assert info["package-name"] == DIST_NAME
    assert info["versions"][0] == airflow_provider_odps_tunnel.__version__

    conn = _connection_type(info, "odps_tunnel")
    assert conn["hook-class-name"] == HOOK_CLASS
    fields = conn["conn-fields"]
    assert set(fields) == {
        "project",
        "endpoint",
        "tunnel_endpoint",
        "quota_name",
        "schema",
        "sts_token",
    }
    # Airflow flags a conn-field as sensitive exactly when its schema format is "password".
    sensitive = {name for name, f in fields.items() if f["schema"].get("format") == "password"}
    assert sensitive == {"sts_token"}
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"login": "AccessKey ID", "password": "AccessKey secret"}
    assert "login" not in behaviour["hidden-fields"]
    assert "password" not in behaviour["hidden-fields"]


def test_distribution_metadata_and_entry_point():
    dist = importlib.metadata.distribution(DIST_NAME)
    assert dist.version == airflow_provider_odps_tunnel.__version__

    eps = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert [ep.value for ep in eps] == [
        "airflow_provider_odps_tunnel.get_provider_info:get_provider_info"
    ]
    assert eps[0].load()() == get_provider_info()


def test_airflow_providers_manager_loads_connection_form():
    # In a subprocess: ProvidersManager is a process-wide singleton. It reads the form
    # metadata from the provider info without importing the hook class.
    code = (
        "import json\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "pm = ProvidersManager()\n"
        "print(json.dumps({\n"
        f"    'registered': {DIST_NAME!r} in pm.providers,\n"
        "    'behaviour': pm.field_behaviours.get('odps_tunnel'),\n"
        "    'widgets': {k: w.is_sensitive for k, w in pm.connection_form_widgets.items()\n"
        "                if k.startswith('extra__odps_tunnel__')},\n"
        "}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["registered"]
    assert result["behaviour"]["relabeling"]["login"] == "AccessKey ID"
    assert result["widgets"]["extra__odps_tunnel__sts_token"] is True
    assert result["widgets"]["extra__odps_tunnel__project"] is False


def _imported_airflow_modules(module: str, *, with_submodules: bool) -> list[str]:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"mod = importlib.import_module({module!r})\n"
        # A directory without __init__.py imports as a namespace package and would not be
        # packaged by `packages = find:`; require a regular package.
        "assert getattr(mod, '__file__', None), f'{mod.__name__} has no __init__.py'\n"
        f"if {with_submodules!r}:\n"
        "    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m == 'airflow' or m.startswith('airflow.'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("module", "with_submodules"),
    [
        ("airflow_provider_odps_tunnel", False),
        ("airflow_provider_odps_tunnel.get_provider_info", False),
        # The tunnel client must be usable without Airflow: check every module in it.
        ("airflow_provider_odps_tunnel.tunnel", True),
    ],
)
def test_module_imports_no_airflow(module, with_submodules):
    imported = _imported_airflow_modules(module, with_submodules=with_submodules)
    assert imported == [], f"{module} pulls in Airflow: {imported[:10]}"
