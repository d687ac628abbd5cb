"""Auth: wrong key, tampered parameter, missing signature, stale Date → ODPS error body."""

from __future__ import annotations

import time

import requests

from .conftest import table_fingerprint
from .helpers import TIMEOUT, assert_odps_error, signed


def _table(emulator, emulator_table, tunnel):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write([1])
    session.commit([0])
    return table, f"/projects/{emulator.project}/tables/{table}"


def test_wrong_key_is_signature_not_match(emulator, emulator_table, tunnel):
    table, path = _table(emulator, emulator_table, tunnel)
    before = table_fingerprint(emulator, table)
    resp = signed(emulator, "POST", path, {"uploads": ""}, secret="not-the-secret")
    assert assert_odps_error(resp, 403)["Code"] == "SignatureNotMatch"
    assert table_fingerprint(emulator, table) == before


def test_tampered_parameter_is_signature_not_match(emulator, emulator_table, tunnel):
    table, path = _table(emulator, emulator_table, tunnel)
    before = table_fingerprint(emulator, table)
    # Signed for a download session, sent as an upload session with overwrite.
    resp = signed(
        emulator, "POST", path, {"uploads": "", "overwrite": "true"}, sign_params={"downloads": ""}
    )
    assert assert_odps_error(resp, 403)["Code"] == "SignatureNotMatch"
    assert table_fingerprint(emulator, table) == before


def test_missing_signature_is_unauthorized(emulator, emulator_table, tunnel):
    table, path = _table(emulator, emulator_table, tunnel)
    resp = requests.post(f"{emulator.tunnel_endpoint}{path}?uploads", timeout=TIMEOUT)
    assert assert_odps_error(resp, 401)["Code"] == "Unauthorized"
    resp = requests.post(
        f"{emulator.tunnel_endpoint}{path}?uploads",
        headers={"Authorization": "ODPS nobody:bm90LWEtc2lnbmF0dXJl"},
        timeout=TIMEOUT,
    )
    assert 400 <= resp.status_code < 500
    assert_odps_error(resp)


def test_replay_outside_the_skew_window_is_rejected(emulator, emulator_table, tunnel):
    table, path = _table(emulator, emulator_table, tunnel)
    before = table_fingerprint(emulator, table)
    for offset in (-16 * 60, 16 * 60, -24 * 3600):
        resp = signed(emulator, "POST", path, {"uploads": ""}, date=time.time() + offset)
        body = assert_odps_error(resp, 403)
        assert body["Code"] == "RequestTimeTooSkewed"
        assert body["Message"].startswith("max_interval_date:900000,")
    assert signed(emulator, "POST", path, {"downloads": ""}).status_code == 200
    assert table_fingerprint(emulator, table) == before
