"""Provider metadata read by Airflow's ``ProvidersManager``.

Registered as the ``apache_airflow_provider`` entry point in ``setup.cfg``. Airflow calls
:func:`get_provider_info` at discovery time, so this module must stay cheap: no Airflow
imports, no I/O. The connection form is declared here (Airflow >= 3.2 reads ``conn-fields``
and ``ui-field-behaviour`` from the provider info without importing the hook).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_odps_tunnel import __version__

CONN_TYPE = "odps_tunnel"
#: The hook of the connection type: the tunnel hook that is also a ``common.sql`` DbApiHook,
#: so ``Connection.get_hook()`` serves the ``common.sql`` operators and ``GenericTransfer``.
HOOK_CLASS_NAME = "airflow_provider_odps_tunnel.hooks.sql.OdpsSqlHook"


#: Examples shown in the form. Airflow 3.3 applies ``placeholders`` to the standard fields
#: only, so the extra fields carry theirs in the description and as schema ``examples``.
SERVICE_ENDPOINT_EXAMPLE = "https://service.cn-hangzhou.maxcompute.aliyun.com/api"
TUNNEL_ENDPOINT_EXAMPLE = "https://dt.cn-hangzhou.maxcompute.aliyun.com"


def _endpoint(label: str, description: str, example: str) -> dict[str, Any]:
    """An optional URL field: empty, or ``http(s)://...`` (checked when the form is saved)."""
    return {
        "label": label,
        "description": description,
        "schema": {
            "type": ["string", "null"],
            "pattern": r"^(https?://\S+)?$",
            "examples": [example],
        },
    }


def _optional_string(label: str, description: str) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"]}}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-odps-tunnel",
        "name": "MaxCompute Tunnel",
        "description": (
            "Bulk upload and download for Alibaba Cloud MaxCompute (ODPS) tables through the "
            "Tunnel service."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "MaxCompute Tunnel",
                "external-doc-url": "https://www.alibabacloud.com/help/en/maxcompute/",
                "tags": ["alibaba"],
            }
        ],
        "hooks": [
            {
                "integration-name": "MaxCompute Tunnel",
                "python-modules": [
                    "airflow_provider_odps_tunnel.hooks.tunnel",
                    "airflow_provider_odps_tunnel.hooks.sql",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "MaxCompute Tunnel",
                "python-modules": [
                    "airflow_provider_odps_tunnel.operators.upload",
                    "airflow_provider_odps_tunnel.operators.transfer",
                    "airflow_provider_odps_tunnel.operators.export",
                    "airflow_provider_odps_tunnel.operators.upsert",
                    "airflow_provider_odps_tunnel.operators.stream",
                    "airflow_provider_odps_tunnel.operators.sql",
                    "airflow_provider_odps_tunnel.operators.sql_to_odps",
                ],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "Common SQL",
                "target-integration-name": "MaxCompute Tunnel",
                "python-module": "airflow_provider_odps_tunnel.operators.sql_to_odps",
                "how-to-guide": "/docs/howto-transfers.md",
            },
            {
                "source-integration-name": "Common IO",
                "target-integration-name": "MaxCompute Tunnel",
                "python-module": "airflow_provider_odps_tunnel.operators.transfer",
                "how-to-guide": "/docs/howto-transfers.md",
            },
            {
                "source-integration-name": "MaxCompute Tunnel",
                "target-integration-name": "Common IO",
                "python-module": "airflow_provider_odps_tunnel.operators.export",
                "how-to-guide": "/docs/howto-transfers.md",
            },
        ],
        "sensors": [
            {
                "integration-name": "MaxCompute Tunnel",
                "python-modules": [
                    "airflow_provider_odps_tunnel.sensors.partition",
                    "airflow_provider_odps_tunnel.sensors.session",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "MaxCompute Tunnel",
                "python-modules": [
                    "airflow_provider_odps_tunnel.triggers.tunnel",
                    "airflow_provider_odps_tunnel.triggers.sql",
                ],
            }
        ],
        "extra-links": ["airflow_provider_odps_tunnel.operators.links.OdpsLogViewLink"],
        # odps://project/schema/table: hooks/assets.py (Airflow 3 reads only "asset-uris").
        "asset-uris": [
            {
                "schemes": ["odps"],
                "handler": "airflow_provider_odps_tunnel.hooks.assets.sanitize_uri",
                "factory": "airflow_provider_odps_tunnel.hooks.assets.create_asset",
                "to_openlineage_converter": (
                    "airflow_provider_odps_tunnel.hooks.assets.convert_asset_to_openlineage"
                ),
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": "MaxCompute Tunnel",
                "conn-fields": {
                    "project": {
                        "label": "Project",
                        "description": "Default MaxCompute project.",
                        "schema": {"type": "string", "minLength": 1},
                    },
                    "endpoint": _endpoint(
                        "Service endpoint",
                        "MaxCompute service endpoint (for example "
                        f"{SERVICE_ENDPOINT_EXAMPLE} ). Required unless Tunnel endpoint is "
                        "set: fill in one of the two, or both.",
                        SERVICE_ENDPOINT_EXAMPLE,
                    ),
                    "tunnel_endpoint": _endpoint(
                        "Tunnel endpoint",
                        f"Tunnel endpoint (for example {TUNNEL_ENDPOINT_EXAMPLE} ). "
                        "Required unless Service endpoint is set; when empty, the service "
                        "endpoint is asked for it.",
                        TUNNEL_ENDPOINT_EXAMPLE,
                    ),
                    "quota_name": _optional_string(
                        "Quota name", "Tunnel quota to use. Leave empty for the shared quota."
                    ),
                    "schema": _optional_string(
                        "Schema",
                        "Schema inside the project, for projects with the three-tier model.",
                    ),
                    "sts_token": {
                        "label": "STS token",
                        "description": "Security token for temporary (STS) credentials.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "AccessKey ID", "password": "AccessKey secret"},
                },
            }
        ],
    }
