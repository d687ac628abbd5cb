"""Auth: wrong key, tampered parameter or body, missing signature, replay outside the skew
window → ODPS error body, nothing changed."""

from __future__ import annotations

import base64
import hashlib
import time

import requests
from signed_requests import signed

from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column
from airflow_provider_odps_tunnel.tunnel.codec.signing import authorization, canonical_string
from airflow_provider_odps_tunnel.tunnel.sql import build_sql_job

from .conftest import table_fingerprint
from .helpers import TIMEOUT, assert_odps_error, signed_service


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


# A body changed after signing. The v2 signature covers the method, the path and query, the
# Date, Content-Type, x-odps-* headers and the Content-MD5 *header*, never the body itself
# (tunnel/codec/signing.py; the canonical string below is the same for any body). So a changed
# body is caught exactly when the request carries Content-MD5: the emulator checks it against
# the body received (emulator/ingest.py ``check_content_md5``, streamed bodies and SQL
# submissions) and answers 400 ``BadDigest``; changing the header too breaks the signature.
def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_the_signature_covers_the_content_md5_header():
    headers = {"Date": "Fri, 01 Mar 2024 00:00:00 GMT", "Content-MD5": _md5(b"signed body")}
    params = {"uploadid": "u", "blockid": "0"}
    one = canonical_string("PUT", "/projects/p/tables/t", params, headers)
    assert _md5(b"signed body") in one.splitlines()
    other = {**headers, "Content-MD5": _md5(b"another body")}
    assert canonical_string("PUT", "/projects/p/tables/t", params, other) != one


def test_tampered_block_body_is_rejected_by_content_md5(emulator, emulator_table, tunnel):
    table, path = _table(emulator, emulator_table, tunnel)
    before = table_fingerprint(emulator, table)
    session = tunnel.create_upload_session(table)
    signed_body = encode_rows([Column("a", "bigint")], [[2]])
    tampered = encode_rows([Column("a", "bigint")], [[666]])
    params = {"uploadid": session.id, "blockid": "1"}
    # Signed with the digest of one body, sent with another: the signature still matches.
    resp = signed(
        emulator, "PUT", path, params, tampered, headers={"Content-MD5": _md5(signed_body)}
    )
    error = assert_odps_error(resp, 400)
    assert error["Code"] == "BadDigest", error
    # Changing the header along with the body breaks the signature instead.
    resp = signed(
        emulator,
        "PUT",
        path,
        params,
        tampered,
        headers={"Content-MD5": _md5(tampered)},
        sign_headers={"Content-MD5": _md5(signed_body)},
    )
    assert assert_odps_error(resp, 403)["Code"] == "SignatureNotMatch"
    assert tunnel.create_upload_session(table, upload_id=session.id).blocks == []
    # The untampered request (base64 or hex digest) is accepted.
    resp = signed(
        emulator, "PUT", path, params, signed_body, headers={"Content-MD5": _md5(signed_body)}
    )
    assert resp.status_code == 200, resp.text
    hex_md5 = hashlib.md5(signed_body).hexdigest()
    resp = signed(
        emulator,
        "PUT",
        path,
        {**params, "blockid": "2"},
        signed_body,
        headers={"Content-MD5": hex_md5},
    )
    assert resp.status_code == 200, resp.text
    assert table_fingerprint(emulator, table) == before  # nothing committed


def test_tampered_sql_submission_is_rejected_by_content_md5(emulator, emulator_table):
    table = emulator_table("a bigint")
    path = f"/projects/{emulator.project}/instances"
    signed_job = build_sql_job(f"SELECT * FROM {table}")
    tampered = build_sql_job(f"DROP TABLE {table}")
    resp = signed_service(emulator, "POST", path, tampered, {"Content-MD5": _md5(signed_job)})
    assert assert_odps_error(resp, 400)["Code"] == "BadDigest"
    assert emulator.catalog.table_exists(emulator.project, table)
    resp = signed_service(emulator, "POST", path, signed_job, {"Content-MD5": _md5(signed_job)})
    assert resp.status_code == 201, resp.text


def test_signed_request_without_date_is_refused(emulator, emulator_table, tunnel):
    """A request signed without a Date could be replayed at any time: refused."""
    table, path = _table(emulator, emulator_table, tunnel)
    before = table_fingerprint(emulator, table)
    headers = {"x-odps-tunnel-version": "6"}
    canonical = canonical_string("POST", path, {"uploads": ""}, headers)
    headers["Authorization"] = authorization(
        emulator.access_id, emulator.secret_access_key, canonical
    )
    resp = requests.post(
        f"{emulator.tunnel_endpoint}{path}?uploads", headers=headers, timeout=TIMEOUT
    )
    error = assert_odps_error(resp, 401)
    assert error["Code"] == "Unauthorized" and "Date" in error["Message"]
    assert table_fingerprint(emulator, table) == before
