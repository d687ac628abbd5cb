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
HOOK_CLASS_NAME = "airflow_provider_odps_tunnel.hooks.tunnel.OdpsTunnelHook"


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
                "python-modules": ["airflow_provider_odps_tunnel.hooks.tunnel"],
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
                ],
            }
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
                "python-modules": ["airflow_provider_odps_tunnel.triggers.tunnel"],
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
                    "endpoint": {
                        "label": "Service endpoint",
                        "description": "MaxCompute service endpoint URL (ends with /api).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "tunnel_endpoint": _optional_string(
                        "Tunnel endpoint",
                        "Tunnel endpoint URL. Leave empty to let the service route the tunnel.",
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
                    "placeholders": {
                        "endpoint": "https://service.cn-hangzhou.maxcompute.aliyun.com/api",
                        "tunnel_endpoint": "https://dt.cn-hangzhou.maxcompute.aliyun.com",
                    },
                },
            }
        ],
    }
