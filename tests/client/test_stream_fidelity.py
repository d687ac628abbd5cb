"""Stream upload sessions as pyodps 0.13.2 sees them, against the emulator: the last batch
id and commit time, schema versions (``ALTER TABLE ... ADD COLUMNS``, ``SchemaModified``,
``NoSuchSchema`` and the reload of the table's version), slot count changes announced by a
PUT's answer, and batches re-sent under their retry trace id after a lost answer.

Each behaviour is driven by the unchanged official client (pyodps) and by ours.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from odps import errors as py_errors

from airflow_provider_odps_tunnel.emulator import replays as emulator_replays
from airflow_provider_odps_tunnel.tunnel import errors
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.sessions import stream_upload
from airflow_provider_odps_tunnel.tunnel.sessions.slot import Slot
from airflow_provider_odps_tunnel.tunnel.sessions.stream_upload import (
    StreamRecordWriter,
    TableStreamUploadSession,
)
from airflow_provider_odps_tunnel.tunnel.transport.retry import RetryTrace
from tests.polling import wait_until

SCHEMA = "id bigint, name string"


def rows(start: int, count: int) -> list[list]:
    return [[i, f"n{i}"] for i in range(start, start + count)]


def stored(emulator, table: str) -> list[list]:
    data = emulator.catalog.read_table(emulator.project, table)
    return sorted((list(r.values()) for r in data.to_pylist()), key=lambda r: r[0])


def session_lines(emulator, session_id: str, ready) -> list[dict]:
    """The request-log lines naming the session, once ``ready(lines)`` holds (each line is
    written just after its answer: bounded poll)."""

    def lines() -> list[dict] | None:
        text = emulator.request_log_path.read_text().splitlines()
        mine = [x for x in map(json.loads, text) if x.get("session") == session_id]
        return mine if ready(mine) else None

    return wait_until(lines, timeout=10, message=f"request-log lines of {session_id}")


def write_batch(session, batch: list[list], records: bool) -> None:
    """One writer, closed: one committed batch."""
    with session.open_record_writer() as writer:
        for row in batch:
            writer.write(session.new_record(row) if records else row)


def py_write_batch(session, batch: list[list]) -> None:
    writer = session.open_record_writer()
    for row in batch:
        writer.write(session.new_record(row))
    writer.close()


# -- last batch id and commit time --------------------------------------------------------------


def test_pyodps_reads_last_batch_id_and_commit_time(py_tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = py_tunnel.create_stream_upload_session(table)
    assert session.last_batch_id is None and session.last_batch_commit_time is None
    py_write_batch(session, rows(0, 3))
    py_write_batch(session, rows(3, 3))
    assert session.get_last_batch_id() == 1
    committed = session.get_last_batch_commit_time()
    assert abs(committed - dt.datetime.fromtimestamp(emulator.clock.now())) < dt.timedelta(
        minutes=1
    )
    # within pyodps's 30 s reload throttle the value is the cached one
    py_write_batch(session, rows(6, 3))
    assert session.get_last_batch_id() == 1
    lines = session_lines(emulator, session.id, lambda ls: len(ls) >= 5)
    reloads = [x for x in lines if x["method"] == "GET"]
    assert len(reloads) == 1 and reloads[0]["params"].get("read_only") == "true"
    assert stored(emulator, table) == rows(0, 9)


def test_ours_reads_last_batch_id_and_commit_time(tunnel, emulator, emulator_table, virtual_clock):
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    assert session.get_last_batch_id() is None
    write_batch(session, rows(0, 3), records=False)
    write_batch(session, rows(3, 3), records=True)
    # the first call reloaded just now: within the throttle the cached value stays
    assert session.get_last_batch_id() is None
    virtual_clock.now += options.stream_reload_throttle
    assert session.get_last_batch_id() == 1
    committed = session.get_last_batch_commit_time()
    assert abs(committed - dt.datetime.fromtimestamp(emulator.clock.now())) < dt.timedelta(
        minutes=1
    )
    lines = session_lines(emulator, session.id, lambda ls: len(ls) >= 5)
    reloads = [x for x in lines if x["method"] == "GET"]
    assert len(reloads) == 2 and all(x["params"].get("read_only") == "true" for x in reloads)
    session.reload(force=True)
    assert session.last_batch_id == 1


def test_stream_writer_metrics_sum_its_batches(tunnel, emulator_table, monkeypatch):
    """Under ``enable_client_metrics`` a stream writer sums the server's costs of its
    batches (each PUT's ``odps-tunnel-metrics``), as pyodps's writers do."""
    monkeypatch.setattr(options, "enable_client_metrics", True)
    session = tunnel.create_stream_upload_session(emulator_table(SCHEMA))
    writer = session.open_record_writer()
    writer.write(rows(0, 1)[0])
    writer.flush()
    writer.write(rows(1, 1)[0])
    writer.close()
    assert writer.metrics is not None
    assert writer.metrics.owner == "StreamRecordWriter"
    assert writer.metrics.server_total_cost >= 2 * 3  # two batches, at least 3 us each


# -- schema versions ---------------------------------------------------------------------------


def test_pyodps_follows_schema_versions(pyodps, py_tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    strict = py_tunnel.create_stream_upload_session(table, allow_schema_mismatch=False)
    lenient = py_tunnel.create_stream_upload_session(table)
    assert str(strict.schema_version) == "0"
    py_write_batch(strict, rows(0, 2))
    pyodps.execute_sql(f"ALTER TABLE {table} ADD COLUMNS (extra string)")
    assert pyodps.get_table(table).schema_version == "1"
    with pytest.raises(py_errors.SchemaModified) as info:
        py_write_batch(strict, rows(2, 2))
    assert info.value.latest_schema_version == "1"
    # a session that allows a mismatch still writes: the new column is NULL
    py_write_batch(lenient, rows(2, 2))
    fresh = py_tunnel.create_stream_upload_session(table, allow_schema_mismatch=False)
    assert str(fresh.schema_version) == "1" and len(fresh.schema.simple_columns) == 3
    py_write_batch(fresh, [[4, "n4", "x"]])
    assert stored(emulator, table) == [r + [None] for r in rows(0, 4)] + [[4, "n4", "x"]]
    with pytest.raises(py_errors.NoSuchSchema):
        py_tunnel.create_stream_upload_session(table, schema_version="7")


def test_pyodps_reloads_the_version_after_no_such_schema(
    py_tunnel, emulator, emulator_table, faults
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="stream", kind="status", status=404, code="NoSuchSchema")
    session = py_tunnel.create_stream_upload_session(table, allow_schema_mismatch=False)
    assert faults.counts == {"status": 1}
    py_write_batch(session, rows(0, 2))
    creates = [
        x
        for x in map(json.loads, emulator.request_log_path.read_text().splitlines())
        if x.get("method") == "POST" and x["path"].endswith(f"/tables/{table}/streams")
    ]
    assert [x["params"].get("schema_version") for x in creates[-2:]] == ["0", "0"]
    assert all(x["params"]["check_latest_schema"] == "true" for x in creates[-2:])


def test_ours_follows_schema_versions(
    odps, tunnel, emulator, emulator_table, faults, virtual_clock
):
    table = emulator_table(SCHEMA)
    faults.add(method="POST", session_kind="stream", kind="status", status=404, code="NoSuchSchema")
    strict = tunnel.create_stream_upload_session(table, allow_schema_mismatch=False)
    assert faults.counts == {"status": 1} and strict.schema_version == "0"
    lenient = tunnel.create_stream_upload_session(table)
    write_batch(strict, rows(0, 2), records=True)
    odps.execute_sql(f"ALTER TABLE {table} ADD COLUMNS (extra string)")
    with pytest.raises(errors.SchemaModified) as info:
        write_batch(strict, rows(2, 2), records=True)
    assert info.value.latest_schema_version == "1" and info.value.session_id == strict.id
    write_batch(lenient, rows(2, 2), records=False)
    fresh = tunnel.create_stream_upload_session(table, allow_schema_mismatch=False)
    assert fresh.schema_version == "1" and len(fresh.schema.simple_columns) == 3
    write_batch(fresh, [[4, "n4", "x"]], records=False)
    assert stored(emulator, table) == [r + [None] for r in rows(0, 4)] + [[4, "n4", "x"]]
    with pytest.raises(errors.NoSuchSchema):
        tunnel.create_stream_upload_session(table, schema_version="7")
    metas = [
        x
        for x in map(json.loads, emulator.request_log_path.read_text().splitlines())
        if x.get("method") == "GET" and x["path"].endswith(f"/tables/{table}")
    ]
    # the table's version read for the first strict session (twice: the second time
    # extended, after NoSuchSchema) and once for the fresh one
    assert ["extended" in x["params"] for x in metas] == [False, True, False]


# -- slot count changes -------------------------------------------------------------------------


def test_pyodps_follows_a_slot_count_change(py_tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = py_tunnel.create_stream_upload_session(table, slot_num=1)
    assert len(session.slots) == 1
    faults.add(method="PUT", session_kind="stream", kind="resize_slots", slots=3)
    py_write_batch(session, rows(0, 2))
    assert len(session.slots) == 3
    for start in (2, 4, 6):
        py_write_batch(session, rows(start, 2))
    lines = session_lines(emulator, session.id, lambda ls: len(ls) >= 6)
    assert sum(x["method"] == "GET" for x in lines) == 1  # the forced reload
    assert {x["params"]["slotid"] for x in lines if x["method"] == "PUT"} == {"0", "1", "2"}
    assert stored(emulator, table) == rows(0, 8)


def test_ours_follows_a_slot_count_change(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table, slot_num=1)
    assert len(session.slots) == 1
    faults.add(method="PUT", session_kind="stream", kind="resize_slots", slots=3)
    write_batch(session, rows(0, 2), records=False)
    assert len(session.slots) == 3
    for start in (2, 4, 6):
        write_batch(session, rows(start, 2), records=False)
    lines = session_lines(emulator, session.id, lambda ls: len(ls) >= 6)
    assert sum(x["method"] == "GET" for x in lines) == 1  # the forced reload
    assert {x["params"]["slotid"] for x in lines if x["method"] == "PUT"} == {"0", "1", "2"}
    assert stored(emulator, table) == rows(0, 8)


def test_a_shrunk_session_still_takes_its_writers_old_slot(
    tunnel, emulator, emulator_table, faults
):
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table, slot_num=3)
    writers = [session.open_record_writer() for _ in range(3)]
    faults.add(method="PUT", session_kind="stream", kind="resize_slots", slots=1)
    for i, writer in enumerate(writers):
        writer.write(rows(i, 1)[0])
        writer.close()
    assert len(session.slots) == 1
    assert stored(emulator, table) == rows(0, 3)


# -- lost answers and replays -------------------------------------------------------------------


def replays(emulator, session_id: str, puts: int) -> list[dict]:
    lines = session_lines(
        emulator, session_id, lambda ls: sum(x["method"] == "PUT" for x in ls) >= puts
    )
    return [x for x in lines if x["method"] == "PUT"]


def test_pyodps_resends_a_batch_whose_answer_was_lost(py_tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = py_tunnel.create_stream_upload_session(table)
    faults.add(method="PUT", session_kind="stream", kind="drop_answer")
    py_write_batch(session, rows(0, 5))
    py_write_batch(session, rows(5, 5))
    puts = replays(emulator, session.id, 3)
    first, again, other = puts
    assert first["status"] == "connection dropped" and again["replay"] == first["retry_trace_id"]
    assert (first["retry_index"], again["retry_index"]) == (0, 1)
    assert other["retry_trace_id"] != first["retry_trace_id"] and "replay" not in other
    assert stored(emulator, table) == rows(0, 10)
    assert session.get_last_batch_id() == 1


def test_ours_resends_a_batch_whose_answer_was_lost(
    tunnel, emulator, emulator_table, faults, virtual_clock
):
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    faults.add(method="PUT", session_kind="stream", kind="drop_answer")
    write_batch(session, rows(0, 5), records=False)
    write_batch(session, rows(5, 5), records=True)
    first, again, other = replays(emulator, session.id, 3)
    assert first["status"] == "connection dropped" and again["replay"] == first["retry_trace_id"]
    assert (first["retry_index"], again["retry_index"]) == (0, 1)
    assert other["retry_trace_id"] != first["retry_trace_id"] and "replay" not in other
    assert stored(emulator, table) == rows(0, 10)
    virtual_clock.now += options.stream_reload_throttle
    assert session.get_last_batch_id() == 1


def test_ours_resends_after_a_read_timeout(
    tunnel, emulator, emulator_table, faults, virtual_clock, monkeypatch
):
    """The answer comes after the client's read timeout: the batch is sent again under its
    trace and stored once (the emulator's answer to the first send is never read)."""
    monkeypatch.setattr(options, "read_timeout", 0.3)
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    faults.add(method="PUT", session_kind="stream", kind="drop_answer", seconds=0.6)
    write_batch(session, rows(0, 5), records=False)
    puts = replays(emulator, session.id, 2)  # the held first send is logged last
    replayed = [x for x in puts if "replay" in x]
    assert len(replayed) == 1 and {x["retry_trace_id"] for x in puts} == {replayed[0]["replay"]}
    assert sorted(x["retry_index"] for x in puts) == [0, 1]
    assert stored(emulator, table) == rows(0, 5)


def test_replay_memory_is_bounded_and_stored(tunnel, emulator, emulator_table, monkeypatch):
    monkeypatch.setattr(emulator_replays, "TRACE_MEMORY", 2)
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    for start in range(0, 8, 2):
        write_batch(session, rows(start, 2), records=False)
    saved = json.loads((emulator.data_dir / "sessions" / f"{session.id}.json").read_text())
    assert len(saved["traces"]) == 2 and saved["last_batch_id"] == 3


# -- API shape ----------------------------------------------------------------------------------


def test_slots_round_robin_and_routes(tunnel, emulator_table):
    slots = TableStreamUploadSession.Slots([["0", "h:1"], ["1", "h:2"]], slot_idx=0)
    assert [slots.next().slot, next(slots).slot, slots.next().slot] == ["0", "1", "0"]
    assert slots.current() == Slot("0", "h:1") and len(slots) == 2
    with pytest.raises(errors.TunnelError):
        TableStreamUploadSession.Slots([["0"]])
    slot = Slot("3", "10.0.0.1:80")
    for bad in ("10.0.0.1", ":80", "10.0.0.1:", "a:b:c"):
        with pytest.raises(errors.TunnelError):
            slot.set_server(bad)
    assert slot.server == "10.0.0.1:80"
    session = tunnel.create_stream_upload_session(emulator_table(SCHEMA), slot_num=2)
    writer = session.open_record_writer()
    assert isinstance(writer, StreamRecordWriter) and writer.session is session
    assert writer.slot in list(session.slots._slots)
    moved = writer.slot
    session.reload_slots(moved, "127.0.0.9:1", len(session.slots))
    assert moved.server == "127.0.0.9:1"
    writer.close()
    session.abort()
    session.reload(force=True)
    assert session.status == session.Status.Closed


# -- gateway errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["pyodps", "ours"])
def test_a_gateway_error_reloads_before_the_retry(
    client, py_tunnel, tunnel, emulator, emulator_table, faults, virtual_clock
):
    table = emulator_table(SCHEMA)
    if client == "pyodps":
        session = py_tunnel.create_stream_upload_session(table)
        faults.add(method="PUT", session_kind="stream", kind="status", status=502)
        py_write_batch(session, rows(0, 4))
    else:
        session = tunnel.create_stream_upload_session(table)
        faults.add(method="PUT", session_kind="stream", kind="status", status=502)
        write_batch(session, rows(0, 4), records=False)
    lines = session_lines(emulator, session.id, lambda ls: len(ls) >= 4)
    assert sorted(x["method"] for x in lines) == ["GET", "POST", "PUT", "PUT"]
    puts = [x for x in lines if x["method"] == "PUT"]
    assert len({x["retry_trace_id"] for x in puts}) == 1
    assert stored(emulator, table) == rows(0, 4)


def test_add_columns_keeps_every_partition(odps, tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    for part, start in (("a", 0), ("b", 3)):
        session = tunnel.create_stream_upload_session(
            table, partition_spec=f"pt={part}", create_partition=True
        )
        write_batch(session, rows(start, 3), records=False)
    odps.execute_sql(f"ALTER TABLE {table} ADD COLUMNS (extra bigint COMMENT 'new')")
    info = emulator.catalog.get_table(emulator.project, table)
    assert info.schema_version == 1 and info.schema.get_column("extra").comment == "new"
    assert stored(emulator, table) == [r + [None, "a" if r[0] < 3 else "b"] for r in rows(0, 6)]
    instance = odps.execute_sql(f"SELECT id, extra FROM {table} WHERE pt = 'b' ORDER BY id")
    with instance.open_reader() as reader:
        assert [list(r.values) for r in reader] == [[i, None] for i in range(3, 6)]


@pytest.mark.parametrize("kind", ["drop_answer", "resize_slots"])
def test_stream_fault_kinds_act_on_stream_puts_only(faults, kind):
    with pytest.raises(ValueError, match="PUTs only"):
        faults.add(method="PUT", session_kind="upload", kind=kind)
    with pytest.raises(ValueError, match="PUTs only"):
        faults.add(method="GET", session_kind="stream", kind=kind)
    assert faults.add(session_kind="stream", kind=kind).kind == kind


def test_an_overlong_trace_id_is_not_remembered(
    tunnel, emulator, emulator_table, faults, virtual_clock, monkeypatch
):
    """The emulator keeps trace ids of at most MAX_TRACE_LENGTH characters in a session's
    state; a longer one is treated as no trace, so its re-send is stored again."""
    long_id = "t" * (emulator_replays.MAX_TRACE_LENGTH + 1)
    monkeypatch.setattr(stream_upload, "RetryTrace", lambda: RetryTrace(long_id))
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    faults.add(method="PUT", session_kind="stream", kind="drop_answer")
    write_batch(session, rows(0, 2), records=False)
    assert stored(emulator, table) == sorted(rows(0, 2) * 2)
    saved = json.loads((emulator.data_dir / "sessions" / f"{session.id}.json").read_text())
    assert saved["traces"] == []
