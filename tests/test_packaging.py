"""Packaging checks: provider metadata, entry point registration, regular packages.

That the tunnel client, the top-level package and the provider metadata import no Airflow
is an import contract of ``.importlinter``, checked by tests/test_layers.py.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema

import airflow_provider_odps_tunnel
from airflow_provider_odps_tunnel.get_provider_info import get_provider_info

DIST_NAME = "airflow-provider-odps-tunnel"
HOOK_CLASS = "airflow_provider_odps_tunnel.hooks.sql.OdpsSqlHook"


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


def test_every_package_directory_is_a_regular_package():
    # A directory without __init__.py imports as a namespace package and would not be
    # packaged by `packages = find:`; require a regular package.
    root = Path(airflow_provider_odps_tunnel.__file__).parent
    missing = sorted(
        str(directory.relative_to(root.parent))
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]
        if directory.name != "__pycache__"
        and any(directory.glob("*.py"))
        and not (directory / "__init__.py").exists()
    )
    assert missing == [], f"directories of modules without __init__.py: {missing}"


def test_endpoint_fields_show_their_examples_and_that_one_is_required():
    # Airflow 3.3 shows placeholders for the standard fields only: the extra fields carry
    # their examples in the description (shown under the field) and as schema examples.
    conn = _connection_type(get_provider_info(), "odps_tunnel")
    assert "placeholders" not in conn["ui-field-behaviour"]
    fields = conn["conn-fields"]
    for name, other in (("endpoint", "Tunnel endpoint"), ("tunnel_endpoint", "Service endpoint")):
        field = fields[name]
        (example,) = field["schema"]["examples"]
        assert example in field["description"]
        assert f"Required unless {other} is set" in field["description"]
        pattern = re.compile(field["schema"]["pattern"])
        assert pattern.match(example) and pattern.match("")
        assert not pattern.match("service.cn-hangzhou.maxcompute.aliyun.com")


def test_documentation_project_url_is_declared():
    # Airflow's Providers page links to the "Documentation" Project-URL of the distribution
    # (none declared: a link to a page that does not exist).
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    urls = dict(line.split("=", 1) for line in cfg["metadata"]["project_urls"].strip().splitlines())
    assert {k.strip(): v.strip() for k, v in urls.items()} == {
        "Documentation": "https://pypi.org/project/airflow-provider-odps-tunnel/"
    }
