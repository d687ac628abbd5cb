"""Fault injection: each fault reaches pyodps as specified, and its retries recover."""

from __future__ import annotations

import json
import time

import pytest
import requests
from odps import errors


@pytest.fixture
def faults(emulator):
    emulator.faults.clear()
    yield emulator.faults
    emulator.faults.clear()


def _table_with_rows(tunnel, emulator_table, n: int = 200) -> str:
    table = emulator_table("a bigint, s string")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        for i in range(n):
            writer.write(session.new_record([i, f"row-{i:05d}" * 4]))
    session.commit([0])
    return table


def _read_all(tunnel, table) -> list[int]:
    session = tunnel.create_download_session(table)
    with session.open_record_reader(0, session.count) as reader:
        return [r[0] for r in reader]


def test_server_error_on_read_is_retried(tunnel, emulator_table, faults):
    table = _table_with_rows(tunnel, emulator_table)
    faults.add(
        method="GET", resource="tables/" + table, session_kind="download", kind="status", status=503
    )
    assert _read_all(tunnel, table) == list(range(200))
    assert [f["kind"] for f in faults.injected] == ["status"]


def test_throttle_answers_429_with_retry_after(tunnel, emulator_table, faults, emulator):
    from signed_requests import signed

    table = _table_with_rows(tunnel, emulator_table, 5)
    faults.add(session_kind="download", kind="throttle", seconds=0)
    resp = signed(
        emulator, "POST", f"/projects/{emulator.project}/tables/{table}", {"downloads": ""}
    )
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "0"
    assert resp.json()["Code"] == "FlowExceeded"
    faults.add(session_kind="download", kind="throttle", seconds=0)
    assert _read_all(tunnel, table) == list(range(5))  # pyodps backs off and retries


def test_corrupt_crc_in_download_is_detected_and_reread(tunnel, emulator_table, faults):
    table = _table_with_rows(tunnel, emulator_table)
    faults.add(method="GET", session_kind="download", resource="rowrange", kind="corrupt_crc")
    assert _read_all(tunnel, table) == list(range(200))
    assert len(faults.injected) == 1


def test_reset_after_bytes_of_a_response(tunnel, emulator_table, faults):
    table = _table_with_rows(tunnel, emulator_table, 2000)
    faults.add(method="GET", resource="rowrange", kind="reset_after_bytes", bytes=5000)
    # pyodps's compiled record reader does not retry a broken connection: it surfaces.
    with pytest.raises(Exception, match="IncompleteRead|Connection broken"):
        _read_all(tunnel, table)
    assert faults.injected[0]["kind"] == "reset_after_bytes"
    assert _read_all(tunnel, table) == list(range(2000))  # the fault fired once


def test_reset_after_bytes_of_a_request_body(tunnel, emulator_table, faults, emulator):
    table = emulator_table("a bigint, s string")
    session = tunnel.create_upload_session(table)
    faults.add(method="PUT", session_kind="upload", kind="reset_after_bytes", bytes=1000)
    with session.open_record_writer() as writer:  # buffered: resends the block
        for i in range(500):
            writer.write(session.new_record([i, "payload" * 10]))
    session.commit(writer.get_blocks_written())
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 500
    assert len(faults.injected) == 1


def test_delay_and_expire_session(tunnel, emulator_table, faults):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    faults.add(method="GET", session_kind="upload", kind="delay", seconds=0.3)
    started = time.monotonic()
    session.reload()
    assert time.monotonic() - started >= 0.3
    faults.add(method="PUT", session_kind="upload", kind="expire_session")
    with pytest.raises(errors.ODPSError) as info, session.open_record_writer(0) as writer:
        writer.write(session.new_record([1]))
    assert "expired" in str(info.value)


def test_nth_and_times(tunnel, emulator_table, faults):
    table = _table_with_rows(tunnel, emulator_table, 3)
    faults.add(
        session_kind="download",
        method="POST",
        nth=2,
        times=2,
        kind="status",
        status=400,
        code="InvalidArgument",
    )
    tunnel.create_download_session(table)
    for _ in range(2):
        with pytest.raises(errors.InvalidArgument):
            tunnel.create_download_session(table)
    tunnel.create_download_session(table)
    assert len(faults.injected) == 2


def test_admin_endpoint(emulator, faults):
    url = f"{emulator.tunnel_endpoint}/__emulator__/faults"
    added = requests.post(
        url, data=json.dumps({"kind": "status", "status": 502, "resource": "/tunnel"}), timeout=10
    )
    assert added.status_code == 200 and added.json()["kind"] == "status"
    resp = requests.get(
        f"{emulator.endpoint}/projects/{emulator.project}/tunnel?service", timeout=10
    )
    assert resp.status_code == 502
    listing = requests.get(url, timeout=10).json()
    assert len(listing["faults"]) == 1 and listing["injected"][0]["kind"] == "status"
    bad = requests.post(url, data=json.dumps({"kind": "nonsense"}), timeout=10)
    assert bad.status_code == 400
    assert requests.delete(url, timeout=10).json() == {"cleared": True}
    assert faults.injected == []


def _sql_result_table(odps_entry, emulator_table, n: int = 3000) -> str:
    table = emulator_table("a bigint, s string")
    odps_entry.execute_sql(
        f"INSERT INTO {table} SELECT x, repeat('v', 20) FROM (SELECT unnest(range({n})) AS x) q"
    )
    return table


def test_faults_on_the_instance_tunnel_and_sql_paths(odps_entry, emulator_table, faults):
    table = _sql_result_table(odps_entry, emulator_table)
    # A 503 on the status poll: pyodps's REST layer retries GETs on 502/503/504.
    faults.add(method="GET", session_kind="sql", kind="status", status=503)
    instance = odps_entry.execute_sql(f"SELECT a FROM {table} ORDER BY a")
    # A corrupted result body: the instance reader detects it and reads the range again.
    faults.add(method="GET", session_kind="instance", resource="rowrange", kind="corrupt_crc")
    with instance.open_reader(tunnel=True) as reader:
        assert [r[0] for r in reader] == list(range(3000))
    assert faults.counts == {"status": 1, "corrupt_crc": 1}
    # 429 on a submission: the REST layer does not retry POSTs, so pyodps raises it.
    faults.add(method="POST", session_kind="sql", kind="throttle", seconds=2)
    with pytest.raises(errors.FlowExceeded):
        odps_entry.execute_sql("SELECT 1")
    # An expired instance download session answers StatusConflict.
    faults.add(method="GET", session_kind="instance", kind="expire_session")
    with (
        pytest.raises(errors.ODPSError, match="session is expired"),
        instance.open_reader(tunnel=True, reopen=True) as reader,
    ):
        list(reader)
    assert [f["kind"] for f in faults.injected] == [
        "status",
        "corrupt_crc",
        "throttle",
        "expire_session",
    ]


def _write_block(session, rows: int) -> None:
    with session.open_record_writer(0) as writer:
        for i in range(rows):
            writer.write(session.new_record([i, "payload-" * 40]))


def test_corrupted_upload_body_is_refused(tunnel, emulator_table, faults, emulator):
    table = emulator_table("a bigint, s string")
    session = tunnel.create_upload_session(table)
    faults.add(method="PUT", session_kind="upload", kind="corrupt_crc")  # request body
    with pytest.raises(errors.ODPSError) as info:
        _write_block(session, 300)
    assert info.value.code == "CorruptedDataStream"
    _write_block(session, 300)  # rewriting the block is the retry
    session.commit([0])
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 300
    lines = [json.loads(x) for x in emulator.request_log_path.read_text().splitlines()]
    refused = [x for x in lines if x.get("fault") == "corrupt_crc" and x["method"] == "PUT"]
    assert refused[-1]["error"] == "CorruptedDataStream" and refused[-1]["status"] == 400


def test_nth_occurrence_per_session(tunnel, emulator_table, faults, emulator):
    from signed_requests import signed

    table = _table_with_rows(tunnel, emulator_table, 3)
    path = f"/projects/{emulator.project}/tables/{table}"
    ids = [tunnel.create_download_session(table).id for _ in range(2)]
    faults.add(method="GET", session_kind="download", per_session=True, nth=2, times=0, status=502)
    statuses = [
        signed(emulator, "GET", path, {"downloadid": sid}).status_code for sid in ids for _ in "xy"
    ]
    assert statuses == [200, 502, 200, 502]
    assert faults.counts == {"status": 2}
