"""Error answers: codes, statuses and bodies as the service gives them (protocol §8)."""

from __future__ import annotations

import time

import pytest
from odps import ODPS, errors
from odps.tunnel import TableTunnel
from signed_requests import signed

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column


def _code(exc_info) -> str:
    return getattr(exc_info.value, "code", None) or str(exc_info.value)


def test_missing_table_and_partition(tunnel, emulator_table):
    with pytest.raises(errors.NoSuchTable):
        tunnel.create_upload_session("no_such_table_here")
    with pytest.raises(errors.NoSuchTable):
        tunnel.create_download_session("no_such_table_here")
    table = emulator_table("a bigint", partitions="pt string")
    with pytest.raises(errors.NoSuchPartition):
        tunnel.create_upload_session(table, partition_spec="pt=missing")
    with pytest.raises(errors.NoSuchPartition):
        tunnel.create_download_session(table, partition_spec="pt=missing")


def test_bad_block_id(tunnel, emulator_table):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with pytest.raises(errors.ODPSError) as info, session.open_record_writer(20000) as writer:
        writer.write(session.new_record([1]))
    assert "InvalidBlockID" in _code(info)


def test_commit_with_a_missing_block_is_refused(tunnel, emulator_table, emulator):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([1]))
    with pytest.raises(Exception, match="[Bb]lock"):
        session.commit([0, 1])
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 0


def test_writing_to_a_committed_session(tunnel, emulator_table):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([1]))
    session.commit([0])
    with pytest.raises(errors.ODPSError) as info, session.open_record_writer(1) as writer:
        writer.write(session.new_record([2]))
    assert "StatusConflict" in _code(info)
    with pytest.raises(errors.ODPSError) as again:
        session.commit([0])  # the service answers a second commit with a conflict
    assert "StatusConflict" in _code(again)


def test_bad_signature(emulator, emulator_table):
    table = emulator_table("a bigint")
    bad = ODPS(emulator.access_id, "wrong-secret", emulator.project, endpoint=emulator.endpoint)
    with pytest.raises(errors.SignatureNotMatch):
        TableTunnel(bad, endpoint=emulator.tunnel_endpoint).create_download_session(table)
    unknown = ODPS("nobody", "x", emulator.project, endpoint=emulator.endpoint)
    with pytest.raises(errors.Unauthorized):
        TableTunnel(unknown, endpoint=emulator.tunnel_endpoint).create_download_session(table)


def test_missing_signature_and_clock_skew(emulator, emulator_table):
    import requests

    table = emulator_table("a bigint")
    path = f"/projects/{emulator.project}/tables/{table}"
    resp = requests.post(f"{emulator.tunnel_endpoint}{path}?downloads", timeout=10)
    assert resp.status_code == 401 and resp.json()["Code"] == "Unauthorized"
    resp = signed(emulator, "POST", path, {"downloads": ""}, date=time.time() - 16 * 60)
    body = resp.json()
    assert resp.status_code == 403 and body["Code"] == "RequestTimeTooSkewed"
    assert body["Message"].startswith("max_interval_date:900000,")
    assert resp.headers["x-odps-request-id"] == body["RequestId"]
    assert signed(emulator, "POST", path, {"downloads": ""}).status_code == 200


def test_unknown_path_is_404_with_error_body(emulator):
    resp = signed(emulator, "GET", "/logview/host")
    assert resp.status_code == 404
    assert set(resp.json()) >= {"Code", "Message", "RequestId", "HostId"}


def _upload_id(emulator, path: str) -> str:
    resp = signed(emulator, "POST", path, {"uploads": "1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["UploadedBlockList"] == [] and body["MaxFieldSize"] == 8 * 1024 * 1024
    return body["UploadID"]


def test_oversize_field_names_the_limit(emulator, emulator_table):
    table = emulator_table("a bigint, s string")
    path = f"/projects/{emulator.project}/tables/{table}"
    upload_id = _upload_id(emulator, path)
    columns = [Column("a", "bigint"), Column("s", "string")]
    body = encode_rows(columns, [[1, "x" * (8 * 1024 * 1024 + 1)]])
    resp = signed(emulator, "PUT", path, {"uploadid": upload_id, "blockid": "0"}, body=body)
    assert resp.status_code == 400
    assert resp.json()["Code"] == "MalformedDataStream" and "8388608" in resp.json()["Message"]


def test_malformed_and_corrupted_bodies(emulator, emulator_table):
    table = emulator_table("a bigint, s string")
    path = f"/projects/{emulator.project}/tables/{table}"
    upload_id = _upload_id(emulator, path)
    columns = [Column("a", "bigint"), Column("s", "string")]
    good = encode_rows(columns, [[1, "hello"], [2, "world"]])
    params = {"uploadid": upload_id, "blockid": "0"}
    resp = signed(emulator, "PUT", path, params, body=good[:-6])
    assert resp.status_code == 400 and resp.json()["Code"] == "MalformedDataStream"
    corrupted = good.replace(b"hello", b"hellp")
    resp = signed(emulator, "PUT", path, params, body=corrupted)
    assert resp.status_code == 400 and resp.json()["Code"] == "CorruptedDataStream"
    resp = signed(emulator, "PUT", path, {**params, "arrow": ""}, body=b"\x00\x00\x10\x00junk")
    assert resp.status_code == 400 and resp.json()["Code"] in (
        "MalformedDataStream",
        "CorruptedDataStream",
    )
    resp = signed(emulator, "GET", path, {"uploadid": upload_id})
    assert resp.json()["UploadedBlockList"] == []
    resp = signed(emulator, "GET", path, {"downloadid": "nope", "data": "", "rowrange": "(0,1)"})
    assert resp.status_code == 404 and resp.json()["Code"] == "NoSuchDownload"


def test_invalid_row_range(tunnel, emulator_table, emulator):
    table = emulator_table("a bigint")
    download = tunnel.create_download_session(table)
    path = f"/projects/{emulator.project}/tables/{table}"
    params = {"downloadid": download.id, "data": "", "rowrange": "(5,1)"}
    resp = signed(emulator, "GET", path, params)
    assert resp.status_code == 400 and resp.json()["Code"] == "InvalidRowRange"


def test_no_auth_mode_accepts_unsigned_requests(tmp_path):
    import requests

    with Emulator(tmp_path, auth=False) as emu:
        resp = requests.get(f"{emu.endpoint}/projects/{emu.project}/tunnel?service", timeout=10)
        assert resp.status_code == 200 and resp.text == f"127.0.0.1:{emu.port}"
