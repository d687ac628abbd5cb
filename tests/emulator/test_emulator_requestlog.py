"""The request log: a JSON line per request, without secrets."""

from __future__ import annotations

import json

from polling import wait_until


def test_request_log_lines(odps_entry, tunnel, emulator, emulator_table):
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([1]))
    session.commit([0])
    instance = odps_entry.execute_sql(f"SELECT count(*) FROM {table}")
    text = emulator.request_log_path.read_text()
    assert emulator.secret_access_key not in text and "Authorization" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert {"time", "request_id", "method", "path", "params", "status", "ms"} <= set(line)
        assert {"bytes_in", "bytes_out"} <= set(line)
    mine = [x for x in lines if x.get("session") == session.id]
    # create, block, reload (pyodps checks the block list), commit
    assert [(x["method"], x["kind"]) for x in mine] == [
        ("POST", "upload"),
        ("PUT", "upload"),
        ("GET", "upload"),
        ("POST", "upload"),
    ]
    put = mine[1]
    assert put["status"] == 200 and put["bytes_in"] > 0 and put["params"]["blockid"] == "0"
    submitted = [x for x in lines if x.get("session") == instance.id]
    assert submitted[0]["method"] == "POST" and submitted[0]["status"] == 201


def _lines(emulator) -> list[dict]:
    return [json.loads(line) for line in emulator.request_log_path.read_text().splitlines()]


def _session_lines(emulator, session_id: str, count: int) -> list[dict]:
    """The log lines of a session once ``count`` are there (a line is written after its
    response has gone out, so the last one may trail the client's return)."""

    def found() -> list[dict] | None:
        lines = [x for x in _lines(emulator) if x.get("session") == session_id]
        return lines if len(lines) >= count else None

    return wait_until(found, timeout=10, message=f"{count} log lines of session {session_id}")


def test_request_log_records_retry_trace_headers(tunnel, emulator, emulator_table):
    """pyodps stamps each tunnel request it may retry with a retry trace id and index (0 on
    a first attempt); each request's line shows them, one distinct trace per request.

    The buffered writer (no block id) is used: pyodps sends a writer opened on an explicit
    block id as a one-shot stream, outside its retry handler and so without the pair.
    """
    table = emulator_table("a bigint")
    session = tunnel.create_upload_session(table)
    with session.open_record_writer() as writer:
        writer.write(session.new_record([1]))
    session.commit(writer.get_blocks_written())
    mine = _session_lines(emulator, session.id, 4)
    assert len(mine) == 4
    for line in mine:
        assert line["retry_index"] == 0
        assert len(line["retry_trace_id"]) == 36  # a UUID
    assert len({x["retry_trace_id"] for x in mine}) == len(mine)


def test_request_log_without_trace_headers_has_no_trace_fields(odps_entry, emulator):
    """A REST request (pyodps sends no trace pair there) logs no trace fields."""
    odps_entry.exist_table("no_such_table_for_trace")
    line = [x for x in _lines(emulator) if "no_such_table_for_trace" in x["path"]][-1]
    assert "retry_trace_id" not in line and "retry_index" not in line


def test_request_log_records_our_clients_trace_headers(emulator, emulator_table):
    """Our client stamps its tunnel requests with the same pair; the log shows them."""
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel

    odps = ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )
    table = emulator_table("a bigint")
    session = TableTunnel(odps).create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([1]))
    session.commit([0])
    mine = _session_lines(emulator, session.id, 4)
    assert [x["method"] for x in mine] == ["POST", "PUT", "GET", "POST"]
    for line in mine:
        assert line["retry_index"] == 0
        assert len(line["retry_trace_id"]) == 36
    assert len({x["retry_trace_id"] for x in mine}) == len(mine)


def test_request_log_ties_the_attempts_of_a_retried_request(emulator, emulator_table, monkeypatch):
    """A request answered 503 and retried: both attempts are logged with one trace id and
    the indexes 0 and 1 (our client; its retry waits are cut to milliseconds here)."""
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel
    from airflow_provider_odps_tunnel.tunnel.options import options

    monkeypatch.setattr(options, "retry_delay", 0.001)
    monkeypatch.setattr(options, "retry_max_delay", 0.01)
    odps = ODPS(
        emulator.access_id, emulator.secret_access_key, emulator.project, endpoint=emulator.endpoint
    )
    table = emulator_table("a bigint")
    emulator.faults.clear()
    emulator.faults.add(method="POST", session_kind="download", kind="status", status=503)
    try:
        session = TableTunnel(odps).create_download_session(table)
    finally:
        emulator.faults.clear()

    def attempts() -> list[dict] | None:
        lines = [x for x in _lines(emulator) if table in x["path"] and x["method"] == "POST"]
        return lines if len(lines) >= 2 else None

    first, second = wait_until(attempts, timeout=10, message="two create attempts logged")[-2:]
    assert (first["status"], first["fault"]) == (503, "status")
    assert second["status"] == 200 and second["session"] == session.id
    assert first["retry_trace_id"] == second["retry_trace_id"]
    assert (first["retry_index"], second["retry_index"]) == (0, 1)
