"""The request log: a JSON line per request, without secrets."""

from __future__ import annotations

import json


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
