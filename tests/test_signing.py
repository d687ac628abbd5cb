"""The v2 request signature: the protocol document's vector and pyodps's own signer."""

from __future__ import annotations

import requests

from airflow_provider_odps_tunnel.tunnel.codec.signing import authorization, canonical_string

HEADERS = {
    "Date": "Mon, 01 Jan 2024 00:00:00 GMT",
    "x-odps-tunnel-version": "6",
    "x-odps-user-agent": "test-agent",
}
PARAMS = [
    ("arrow", ""),
    ("curr_project", "my_proj"),
    ("data", ""),
    ("downloadid", "20240101abc"),
    ("rowrange", "(0,10)"),
]


def test_protocol_document_vector():
    canonical = canonical_string("GET", "/projects/my_proj/tables/my_table", PARAMS, HEADERS)
    assert canonical.splitlines() == [
        "GET",
        "",
        "",
        "Mon, 01 Jan 2024 00:00:00 GMT",
        "x-odps-tunnel-version:6",
        "x-odps-user-agent:test-agent",
        "/projects/my_proj/tables/my_table"
        "?arrow&curr_project=my_proj&data&downloadid=20240101abc&rowrange=(0,10)",
    ]
    assert authorization("AK", "SK", canonical) == "ODPS AK:KOLYn2Z6VQepHeyQ7Y529Sj4TIw="


def test_agrees_with_pyodps_signer():
    from odps.accounts import AliyunAccount

    headers = dict(HEADERS, **{"Content-Type": "application/octet-stream", "odps-tunnel-tags": "a"})
    url = (
        "http://127.0.0.1:1/projects/p%20x/tables/t?uploadid=abc&blockid=3&arrow="
        "&x-odps-extra=1&partition=pt%3D1%2Cregion%3Deu"
    )
    prepared = requests.Request("PUT", url, headers=dict(headers)).prepare()
    AliyunAccount("AK", "SK").sign_request(prepared, "http://127.0.0.1:1")
    params = [
        ("uploadid", "abc"),
        ("blockid", "3"),
        ("arrow", ""),
        ("x-odps-extra", "1"),
        ("partition", "pt=1,region=eu"),
    ]
    ours = authorization(
        "AK", "SK", canonical_string("PUT", "/projects/p%20x/tables/t", params, headers)
    )
    assert prepared.headers["Authorization"] == ours
