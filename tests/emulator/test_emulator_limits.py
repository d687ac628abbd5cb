"""Limits and the clock: session lifetime and expiry, rate limits, field size, clock API."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from odps import ODPS, errors
from odps.tunnel import TableTunnel
from odps.tunnel.tabletunnel import TableDownloadSession, TableUploadSession
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator

HOUR = 3600.0


@pytest.fixture
def make_emulator(tmp_path):
    """Start a private emulator (its own limits and clock) for one test."""
    started: list[Emulator] = []

    def make(**options) -> tuple[Emulator, ODPS, TableTunnel]:
        emu = Emulator(tmp_path / f"emu{len(started)}", **options).start()
        started.append(emu)
        odps = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
        return emu, odps, TableTunnel(odps, endpoint=emu.tunnel_endpoint)

    yield make
    for emu in started:
        emu.stop()


def _log_lines(emu: Emulator) -> list[dict]:
    return [json.loads(line) for line in emu.request_log_path.read_text().splitlines()]


def test_expired_sessions_answer_as_the_service_does(make_emulator):
    emu, odps, tunnel = make_emulator()
    odps.execute_sql("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES (1), (2)")
    upload = tunnel.create_upload_session("t")
    download = tunnel.create_download_session("t")
    emu.clock.advance(23 * HOUR)
    upload.reload()
    assert upload.status == TableUploadSession.Status.Normal
    emu.clock.advance(2 * HOUR)  # 25 h after creation: past the 24 h lifetime
    upload.reload()
    assert upload.status == TableUploadSession.Status.Expired
    with pytest.raises(errors.ODPSError) as info, upload.open_record_writer(0) as writer:
        writer.write(upload.new_record([3]))
    assert info.value.code == "StatusConflict"
    assert "The upload session is expired" in str(info.value)
    download.reload()
    assert download.status == TableDownloadSession.Status.Expired
    with (
        pytest.raises(errors.ODPSError, match="The download session is expired"),
        download.open_record_reader(0, 2) as reader,
    ):
        list(reader)
    fresh = tunnel.create_download_session("t")  # new sessions live 24 h from the new now
    with fresh.open_record_reader(0, 2) as reader:
        assert [r[0] for r in reader] == [1, 2]


def test_upsert_lifecycle_and_clock_admin_endpoint(make_emulator):
    emu, odps, tunnel = make_emulator(session_lifetime=2 * HOUR)
    odps.execute_sql(
        "CREATE TABLE kv (k STRING NOT NULL, v BIGINT, PRIMARY KEY (k)) "
        "TBLPROPERTIES ('transactional'='true')"
    )
    upsert = tunnel.create_upsert_session("kv", lifecycle=1)
    upload = tunnel.create_upload_session("kv")
    url = f"{emu.tunnel_endpoint}/__emulator__/clock"
    moved = requests.post(url, data=json.dumps({"advance": 1.5 * HOUR}), timeout=10).json()
    assert moved["offset"] == pytest.approx(1.5 * HOUR)
    upsert.reload()
    upload.reload()
    assert upsert.status.value == "EXPIRED" and upload.status == TableUploadSession.Status.Normal
    emu.clock.advance(HOUR)  # past the configured 2 h session lifetime
    upload.reload()
    assert upload.status == TableUploadSession.Status.Expired
    emu.restart()  # the clock survives restarts
    assert emu.clock.offset == pytest.approx(2.5 * HOUR)
    emu.clock.reset()
    assert requests.get(url, timeout=10).json()["offset"] == 0


def test_session_and_commit_rate_limits_answer_429(make_emulator):
    from signed_requests import signed

    emu, odps, tunnel = make_emulator(session_rate_limit="2/60", commit_rate_limit="1/60")
    odps.execute_sql("CREATE TABLE r (a BIGINT)")
    path = f"/projects/{emu.project}/tables/r"
    for _ in range(2):
        assert signed(emu, "POST", path, {"downloads": ""}).status_code == 200
    refused = signed(emu, "POST", path, {"downloads": ""})
    assert refused.status_code == 429 and refused.json()["Code"] == "FlowExceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    first = tunnel.create_upload_session("r")
    second = tunnel.create_upload_session("r")
    first.commit([])
    commit = signed(emu, "POST", path, {"uploadid": second.id})
    assert commit.status_code == 429 and commit.json()["Code"] == "FlowExceeded"

    # pyodps backs off on 429 and retries; moving the clock past the window lets it through.
    created = []
    worker = threading.Thread(target=lambda: created.append(tunnel.create_upload_session("r")))
    worker.start()
    wait_until(
        lambda: any(
            line.get("error") == "FlowExceeded" and line["params"].get("uploads") is not None
            for line in _log_lines(emu)
        ),
        timeout=10,
        interval=0.02,
        message="an upload session creation refused with FlowExceeded",
    )
    emu.clock.advance(61)
    worker.join(timeout=30)
    assert created and created[0].status == TableUploadSession.Status.Normal


def test_max_field_size(make_emulator):
    emu, odps, tunnel = make_emulator(max_field_size=100)
    odps.execute_sql("CREATE TABLE f (s STRING)")
    session = tunnel.create_upload_session("f")
    with pytest.raises(ValueError, match="Byte length of string"):  # pyodps obeys MaxFieldSize
        session.new_record(["x" * 200])
    with pytest.raises(errors.ODPSError, match="MaxFieldSize"):
        odps.execute_sql("INSERT INTO f SELECT repeat('y', 300)")
    odps.execute_sql("INSERT INTO f SELECT repeat('y', 50)")
