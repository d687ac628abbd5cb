"""Table download, upload, preview and instance-download sessions as pyodps 0.13.2 sends
them, and the emulator's answers the service gives them (issue 12).

Each scenario runs the unchanged pyodps client and ours against the same emulator (or
scripted server) and compares what the request log recorded: parameter names, flags and
order, paths and projects. Emulator behaviours that the default session emulator does not
show (``initiating`` downloads, protected projects, metrics switched off, idempotent
commits) run on a second emulator configured for them.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from odps import ODPS as PyODPS
from odps import errors as py_errors
from odps import options as py_options
from odps.tunnel import InstanceTunnel as PyInstanceTunnel
from odps.tunnel import TableTunnel as PyTableTunnel
from odps.tunnel import base as py_base
from odps.tunnel import tabletunnel as py_tabletunnel
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    InstanceTunnel,
    TableSchema,
    TableTunnel,
    errors,
)
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import PyRecordDecoder, encode_rows
from airflow_provider_odps_tunnel.tunnel.sessions.table_base import SessionStatus
from airflow_provider_odps_tunnel.tunnel.transport import retry
from airflow_provider_odps_tunnel.tunnel.transport.endpoint import clear_endpoint_cache

from .conftest import VirtualClock
from .fake_server import Answer, FakeServer, Seen

OTHER_PROJECT = "fidelity_other"
PROTECTED = "fidelity_protected"
INIT_DELAY = 5.0
SCHEMA = "a bigint, b string, c double"


# ---------------------------------------------------------------------------- helpers


class RequestLog:
    """The emulator's request log from the moment this object was made."""

    def __init__(self, emu: Emulator):
        self._path: Path = emu.request_log_path
        self._start = len(self._lines())

    def _lines(self) -> list[dict]:
        return [json.loads(x) for x in self._path.read_text().splitlines()]

    def since(self) -> list[dict]:
        return self._lines()[self._start :]

    def wait(self, match: Callable[[dict], bool], count: int = 1) -> list[dict]:
        """The lines ``match`` accepts once there are ``count`` of them (lines are written
        just after each answer, so the last ones may lag a moment)."""

        def found() -> list[dict] | None:
            lines = [x for x in self.since() if match(x)]
            return lines if len(lines) >= count else None

        return wait_until(found, timeout=10, interval=0.01, message="request log lines")


def wire_params(line: dict) -> dict[str, str]:
    """A logged request's parameters without the ones every client adds (project) or
    whose value differs from run to run (session ids)."""
    drop = {"curr_project", "uploadid", "downloadid"}
    return {k: v for k, v in line["params"].items() if k not in drop}


def py_entry(emu: Emulator, project: str | None = None, tunnel: bool = True) -> PyODPS:
    return PyODPS(
        emu.access_id,
        emu.secret_access_key,
        project or emu.project,
        endpoint=emu.endpoint,
        tunnel_endpoint=emu.tunnel_endpoint if tunnel else None,
    )


def our_entry(emu: Emulator, project: str | None = None) -> ODPS:
    return ODPS(emu.access_id, emu.secret_access_key, project or emu.project, emu.endpoint)


def write_rows(tunnel: TableTunnel, table: str, n: int, project: str | None = None) -> None:
    name = f"{project}.{table}" if project else table
    session = tunnel.create_upload_session(name)
    with session.open_record_writer(0) as writer:
        for i in range(n):
            writer.write(session.new_record([i, f"r{i}", i / 2]))
    session.commit([0])


class EmulatorTime:
    """pyodps's ``time`` module (or our ``retry.clock``) on the emulator's clock: each
    sleep moves the emulator's clock on instead of waiting."""

    def __init__(self, emu: Emulator):
        self.emu = emu
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.emu.clock.advance(seconds)


@pytest.fixture(scope="module")
def special(tmp_path_factory) -> Iterator[Emulator]:
    """An emulator with the service behaviours the session emulator leaves off or has no
    use for: ``asyncmode`` downloads initiating for INIT_DELAY clock seconds, a protected
    project, a 2-row limited instance download, no metrics in bodies, idempotent commits."""
    emu = Emulator(
        tmp_path_factory.mktemp("fidelity"),
        download_init_delay=INIT_DELAY,
        protected_projects=PROTECTED,
        instance_result_limit=2,
        download_metrics=False,
        idempotent_commit=True,
    )
    with emu:
        emu.catalog.create_project(PROTECTED)
        yield emu


@pytest.fixture
def special_table(special, request) -> Iterator[Callable[..., str]]:
    made: list[tuple[str, str]] = []

    def make(project: str | None = None) -> str:
        project = project or special.project
        name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
        name += f"_{len(made)}"
        special.catalog.create_table(project, name, TableSchema.from_lists(*_columns()))
        made.append((project, name))
        return name

    yield make
    for project, name in made:
        special.catalog.drop_table(project, name, if_exists=True)


def _columns() -> tuple[list[str], list[str]]:
    return ["a", "b", "c"], ["bigint", "string", "double"]


# ------------------------------------------------------------ 1. preview column order


def test_preview_asks_for_columns_in_table_order(emulator, tunnel, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    session = tunnel.create_upload_session(table, partition_spec="pt=x", create_partition=True)
    with session.open_record_writer(0) as writer:
        writer.write(session.new_record([1, "one", 0.5]))
    session.commit([0])
    log = RequestLog(emulator)

    ours = tunnel.open_preview_reader(table, columns=["pt", "c", "a"]).read()
    py_table = py_entry(emulator).get_table(table)
    theirs = PyTableTunnel(py_entry(emulator)).open_preview_reader(
        py_table, columns=["pt", "c", "a"]
    )
    sent = [x["params"] for x in log.wait(lambda x: x["path"].endswith("/preview"), 2)]
    assert sent[0]["columns"] == sent[1]["columns"] == "a,c,pt"
    assert "quotaName" not in sent[0]  # pyodps sends no quota with a preview
    assert ours.column_names == ["pt", "c", "a"] == theirs.read().column_names
    assert ours.to_pylist() == [{"pt": "x", "c": 0.5, "a": 1}]


def test_preview_order_comes_from_a_table_object(emulator, tunnel, emulator_table):
    """A pyodps ``Table`` carries its schema: no metadata request is needed."""
    table = emulator_table(SCHEMA)
    write_rows(tunnel, table, 1)
    py_table = py_entry(emulator).get_table(table)
    py_table.reload()
    log = RequestLog(emulator)
    reader = tunnel.open_preview_reader(py_table, columns=["c", "b"], arrow=False)
    assert [c.name for c in reader.columns] == ["c", "b"]
    assert reader.read().values == [0.0, "r0"] and reader.read() is None
    assert tunnel.open_preview_reader(emulator_table(SCHEMA), columns=["a"]).read().num_rows == 0
    lines = log.wait(lambda x: x["path"].endswith("/preview"))
    assert lines[0]["params"]["columns"] == "b,c"
    assert not [x for x in log.since() if x["path"].endswith(f"/tables/{table}")]


def test_preview_record_reader_has_pyodps_surface(emulator, tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    write_rows(tunnel, table, 5)
    reader = tunnel.open_preview_reader(table, arrow=False, read_all=True)
    assert reader[1]["a"] == 1 and reader.count == 2
    assert [r["a"] for r in reader] == [2, 3, 4] and reader.count == 5
    frame = tunnel.open_preview_reader(table, arrow=False).to_pandas(start=1, count=2)
    assert frame["a"].tolist() == [1, 2]


# --------------------------------------------------------------- 2. no curr_schema


def test_tunnel_requests_carry_no_curr_schema(emulator, emulator_table):
    """pyodps's tunnel client has no default schema, so ``curr_schema`` never reaches
    the tunnel; the service endpoint still gets it."""
    table = emulator_table(SCHEMA)
    entry = ODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        emulator.endpoint,
        schema="default",
    )
    log = RequestLog(emulator)
    tunnel = TableTunnel(entry)
    write_rows(tunnel, table, 3)
    session = tunnel.create_download_session(table)
    assert [r["a"] for r in session.open_record_reader(0, 3)] == [0, 1, 2]
    tunnel.open_preview_reader(table, columns=["b", "a"]).read()
    log.wait(lambda x: x["path"].endswith("/preview"))
    mine = [x for x in log.since() if table in x["path"]]
    # The service endpoint (/api) gets the schema, the tunnel never does.
    service = [x for x in mine if x["path"].startswith("/api/")]
    tunnel_lines = [x for x in mine if not x["path"].startswith("/api/")]
    assert len(tunnel_lines) >= 5 and all("curr_schema" not in x["params"] for x in tunnel_lines)
    assert service and all(x["params"].get("curr_schema") == "default" for x in service)
    py_log = RequestLog(emulator)
    py_session = PyTableTunnel(py_entry(emulator)).create_download_session(table)
    assert py_session.count == 3
    (created,) = py_log.wait(lambda x: x["method"] == "POST" and table in x["path"])
    assert "curr_schema" not in created["params"]


# ------------------------------------------------------- 3. the tunnel's own project


@pytest.fixture
def other_table(emulator) -> Iterator[str]:
    emulator.catalog.create_project(OTHER_PROJECT)
    name = "fidelity_other_t"
    emulator.catalog.create_table(
        OTHER_PROJECT, name, TableSchema.from_lists(*_columns()), if_not_exists=True
    )
    yield name
    emulator.catalog.drop_table(OTHER_PROJECT, name, if_exists=True)


def test_table_tunnel_discovers_the_endpoint_of_its_project(emulator, odps, other_table):
    clear_endpoint_cache()
    py_base._endpoint_cache.clear()
    log = RequestLog(emulator)
    ours = TableTunnel(odps, project=OTHER_PROJECT)
    write_rows(ours, other_table, 2)
    assert ours.create_download_session(other_table).count == 2
    theirs = PyTableTunnel(py_entry(emulator, tunnel=False), project=OTHER_PROJECT)
    assert theirs.create_download_session(other_table).count == 2
    found = log.wait(lambda x: x["path"].endswith("/tunnel"), 2)
    assert [x["path"] for x in found] == [f"/api/projects/{OTHER_PROJECT}/tunnel"] * 2
    tables = [x["path"] for x in log.since() if other_table in x["path"]]
    assert tables and all(f"/projects/{OTHER_PROJECT}/" in p for p in tables)


def test_instance_tunnel_reads_instances_of_its_project(emulator, odps, other_table):
    write_rows(TableTunnel(odps, project=OTHER_PROJECT), other_table, 3)
    instance = our_entry(emulator, OTHER_PROJECT).execute_sql(f"select a from {other_table}")
    log = RequestLog(emulator)
    ours = InstanceTunnel(odps, project=OTHER_PROJECT).create_download_session(instance.id)
    assert ours.count == 3 and ours.project == OTHER_PROJECT
    assert sorted(r["a"] for r in ours.open_record_reader(0, 3)) == [0, 1, 2]
    theirs = PyInstanceTunnel(py_entry(emulator), project=OTHER_PROJECT)
    assert theirs.create_download_session(instance.id).count == 3
    # the tunnel's requests (a log line is written after its answer, so a late line of the
    # SQL status polls, on the service endpoint /api, may still arrive: not counted)
    tunnel_requests = log.wait(
        lambda x: instance.id in x["path"] and not x["path"].startswith("/api/"), 3
    )
    assert {x["path"] for x in tunnel_requests} == {
        f"/projects/{OTHER_PROJECT}/instances/{instance.id}"
    }


# --------------------------------------------------- 4. limit=False never falls back


def test_explicit_limit_false_is_refused_not_truncated(special, special_table, caplog):
    table = special_table(PROTECTED)
    entry = our_entry(special, PROTECTED)
    write_rows(TableTunnel(entry), table, 3)
    instance = entry.execute_sql(f"select a from {table}")
    tunnel = InstanceTunnel(entry)
    log = RequestLog(special)

    with pytest.raises(errors.NoPermission) as refused:
        tunnel.create_download_session(instance.id, limit=False)
    assert "limit=False" in str(refused.value) and refused.value.request_id
    with caplog.at_level(logging.WARNING):
        fallback = tunnel.create_download_session(instance.id)  # limit not given
    assert fallback.count == 2 and "refused" in caplog.text  # instance_result_limit
    assert tunnel.create_download_session(instance.id, limit=True).count == 2
    posts = log.wait(lambda x: x["method"] == "POST" and instance.id in x["path"], 4)
    limited = ["instance_tunnel_limit_enabled" in x["params"] for x in posts]
    assert limited == [False, False, True, True]
    assert [x["status"] for x in posts] == [403, 403, 200, 200]

    py_tunnel = PyInstanceTunnel(py_entry(special, PROTECTED))
    with pytest.raises(py_errors.NoPermission):
        py_tunnel.create_download_session(instance.id, limit=False)
    assert py_tunnel.create_download_session(instance.id, limit=True).count == 2


# ---------------------------------------------------- 5. upload create and reload


def test_upload_create_reload_and_commit_parameters_match_pyodps(emulator, tunnel, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    sent: dict[str, list[dict]] = {}
    for client, open_session in (
        ("ours", lambda **kw: tunnel.create_upload_session(table, **kw)),
        (
            "pyodps",
            lambda **kw: PyTableTunnel(py_entry(emulator)).create_upload_session(table, **kw),
        ),
    ):
        log = RequestLog(emulator)
        session = open_session(partition_spec="pt=p1", create_partition=True, overwrite=True)
        again = open_session(partition_spec="pt=p1", create_partition=True, upload_id=session.id)
        with again.open_record_writer(0) as writer:
            writer.write(again.new_record([1, "x", 1.0]))
        again.commit([0])
        sent[client] = [
            x
            for x in log.wait(lambda x, sid=session.id: x.get("session") == sid, 5)
            if x["method"] != "PUT"
        ]
    for ours, theirs in zip(sent["ours"], sent["pyodps"], strict=True):
        assert ours["method"] == theirs["method"]
        assert list(wire_params(ours).items()) == list(wire_params(theirs).items())
    create, reload = sent["ours"][0], sent["ours"][1]
    assert list(wire_params(create).items()) == [
        ("reload", "False"),
        ("partition", "pt=p1"),
        ("create_partition", "true"),
        ("overwrite", "true"),
        ("uploads", "1"),
    ]
    assert wire_params(reload) == {
        "reload": "True",
        "partition": "pt=p1",
        "create_partition": "true",
    }
    assert "uploadid" in reload["params"] and "overwrite" not in reload["params"]


# --------------------------------------------------------- 6. raw_size, buffered


def _raw_size_server(srv: FakeServer, rows: int, per_body: int) -> None:
    """A session that reads by raw size: every body holds at most ``per_body`` rows, as
    if that many filled ``raw_size`` bytes."""
    schema = TableSchema.from_lists(["a"], ["bigint"])
    session = {
        "DownloadID": "d1",
        "Status": "normal",
        "RecordCount": rows,
        "Schema": schema.to_json(),
        "SupportReadByRawSize": True,
    }

    def answer(seen: Seen) -> Answer:
        if "data" not in seen.query:
            return Answer(200, json.dumps(session).encode())
        start, count = (int(v) for v in seen.query["rowrange"].strip("()").split(","))
        body = encode_rows(
            schema.simple_columns, [[i] for i in range(start, start + min(count, per_body))]
        )
        return Answer(200, body)

    srv.answers += [answer] * 20


def test_buffered_reads_send_raw_size_when_the_session_supports_it():
    reads: dict[str, list[tuple[str, str | None]]] = {}
    with FakeServer() as srv:
        _raw_size_server(srv, rows=5, per_body=2)
        ours = TableTunnel(ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint))
        session = ours.create_download_session("t")
        assert session.support_read_by_raw_size
        reader = session.open_record_reader(0, 5, buffered=True, row_batch_size=4, buffer_size=1024)
        assert [r["a"] for r in reader] == [0, 1, 2, 3, 4]
        reads["ours"] = [
            (s.query["rowrange"], s.query.get("raw_size")) for s in srv.seen if "data" in s.query
        ]

        srv.seen.clear()
        _raw_size_server(srv, rows=5, per_body=2)
        theirs = PyTableTunnel(
            PyODPS("AK", "SK", "proj", endpoint=srv.endpoint, tunnel_endpoint=srv.endpoint)
        )
        py_session = theirs.create_download_session("t")
        py_reader = py_session.open_record_reader(
            0, 5, buffered=True, row_batch_size=4, buffer_size=1024
        )
        assert [r["a"] for r in py_reader] == [0, 1, 2, 3, 4]
        reads["pyodps"] = [
            (s.query["rowrange"], s.query.get("raw_size")) for s in srv.seen if "data" in s.query
        ]
    assert (
        reads["ours"]
        == reads["pyodps"]
        == [
            ("(0,4)", str(1 << 20)),
            ("(2,3)", str(1 << 20)),
            ("(4,1)", str(1 << 20)),
        ]
    )


def test_a_buffered_read_answered_with_no_rows_is_an_error():
    """A body cut to nothing would make the next request start where this one did."""
    with FakeServer() as srv:
        _raw_size_server(srv, rows=5, per_body=0)
        session = TableTunnel(ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint))
        reader = session.create_download_session("t").open_record_reader(0, 5, buffered=True)
        with pytest.raises(errors.DataStreamError) as info:
            list(reader)
    assert info.value.row_range == "(0,5)"


def test_unbuffered_or_unsupported_reads_send_no_raw_size(emulator, tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    write_rows(tunnel, table, 3)
    session = tunnel.create_download_session(table)
    assert not session.support_read_by_raw_size
    log = RequestLog(emulator)
    assert len(list(session.open_record_reader(0, 3, buffered=True, row_batch_size=2))) == 3
    reads = log.wait(lambda x: "data" in x["params"] and table in x["path"], 2)
    assert all("raw_size" not in x["params"] for x in reads)


# ------------------------------------------------------------ 7. status enums


def test_status_enums_are_pyodps_s_and_compare_by_value():
    from odps import tunnel as py_tunnel

    from airflow_provider_odps_tunnel import tunnel as ours

    for name in ("TableDownloadStatus", "TableUploadStatus", "InstanceDownloadStatus"):
        mine, theirs = getattr(ours, name), getattr(py_tunnel, name)
        assert {m.name: m.value for m in mine} == {m.name: m.value for m in theirs}
    assert ours.TableUploadSession.Status is ours.TableUploadStatus
    assert ours.TableDownloadSession.Status.parse("normal") == SessionStatus.Normal
    assert ours.TableUploadSession.Status.parse("committed") is ours.TableUploadStatus.Unknown


# ----------------------------------------------------------- 8. metrics trailer


def _raw_body(tunnel: TableTunnel, table: str, version: int) -> PyRecordDecoder:
    session = tunnel.create_download_session(table, async_mode=False)
    resp = tunnel.tunnel_rest.request(
        "GET",
        f"/projects/{tunnel.project}/tables/{table}",
        params={"data": "", "downloadid": session.id, "rowrange": f"(0,{session.count})"},
        headers={"x-odps-tunnel-version": str(version)},
    )
    columns = session.schema.simple_columns
    decoder = PyRecordDecoder(columns, io.BytesIO(resp.content))
    assert [row[0] for row in decoder] == list(range(session.count))
    return decoder


def test_downloads_carry_metrics_from_version_6(emulator, tunnel, emulator_table, monkeypatch):
    table = emulator_table(SCHEMA)
    write_rows(tunnel, table, 4)
    metrics = _raw_body(tunnel, table, 6).metrics
    assert set(metrics) >= {"PanguIOCost", "ServerIOCost", "ServerTotalCost"}
    assert _raw_body(tunnel, table, 5).metrics is None
    # our reader reads the trailer and reports it, as pyodps's does
    session = tunnel.create_download_session(table)
    with session.open_record_reader(0, 4) as reader:
        assert [r["a"] for r in reader] == [0, 1, 2, 3]
        assert reader.metrics is not None and reader.metrics.server_total_cost >= 3

    py_options.tunnel.enable_client_metrics = True
    try:
        py_session = PyTableTunnel(py_entry(emulator)).create_download_session(table)
        with py_session.open_record_reader(0, 4) as reader:
            assert [r["a"] for r in reader] == [0, 1, 2, 3]
            assert reader.metrics is not None and reader.metrics.tunnel_process_cost > 0
        monkeypatch.setattr(py_tabletunnel, "TUNNEL_VERSION", 5)
        with py_session.open_record_reader(0, 4) as reader:
            assert len(list(reader)) == 4 and reader.metrics is None
    finally:
        py_options.tunnel.enable_client_metrics = False


def test_metrics_can_be_switched_off(special, special_table):
    table = special_table()
    tunnel = TableTunnel(our_entry(special))
    write_rows(tunnel, table, 2)
    assert _raw_body(tunnel, table, 6).metrics is None


# -------------------------------------------------- 9. initiating download sessions


def test_pyodps_polls_an_initiating_download_until_normal(special, special_table, monkeypatch):
    table = special_table()
    write_rows(TableTunnel(our_entry(special)), table, 3)
    fake = EmulatorTime(special)
    monkeypatch.setattr(
        py_tabletunnel, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    )
    log = RequestLog(special)
    session = PyTableTunnel(py_entry(special)).create_download_session(table)
    assert session.status == session.Status.Normal and session.count == 3
    assert sum(fake.sleeps) >= INIT_DELAY > sum(fake.sleeps[:-1])
    answered = log.wait(lambda x: x.get("session") == session.id, len(fake.sleeps) + 1)
    assert answered[0]["params"].get("asyncmode") == "true"
    assert [r["a"] for r in session.open_record_reader(0, 3)] == [0, 1, 2]


def test_ours_polls_an_initiating_download_until_normal(special, special_table, monkeypatch):
    table = special_table()
    tunnel = TableTunnel(our_entry(special))
    write_rows(tunnel, table, 3)
    fake = EmulatorTime(special)
    monkeypatch.setattr(retry, "clock", fake)
    session = tunnel.create_download_session(table)
    assert session.status == session.Status.Normal and session.count == 3
    assert sum(fake.sleeps) >= INIT_DELAY > sum(fake.sleeps[:-1])
    assert [r["a"] for r in session.open_record_reader(0, 3)] == [0, 1, 2]
    ready_at_once = tunnel.create_download_session(table, async_mode=False)
    assert ready_at_once.status == session.Status.Normal


def test_an_initiating_session_refuses_reads(special, special_table, monkeypatch):
    table = special_table()
    tunnel = TableTunnel(our_entry(special))
    write_rows(tunnel, table, 1)
    monkeypatch.setattr(retry, "clock", VirtualClock())  # the emulator's clock stands still
    with pytest.raises(errors.TunnelTimeoutError) as waited:
        tunnel.create_download_session(table, timeout=1.0)
    session = tunnel.create_download_session(table, download_id=waited.value.session_id)
    assert session.status == session.Status.Initiating
    with pytest.raises(errors.StatusConflict):
        session.open_record_reader(0, 1).read()
    special.clock.advance(INIT_DELAY)
    session.reload()
    assert session.status == session.Status.Normal
    assert [r["a"] for r in session.open_record_reader(0, 1)] == [0]


# ---------------------------------------------------- 10. a second commit conflicts


def test_second_commit_is_a_status_conflict_for_pyodps_not_for_ours(
    emulator, tunnel, emulator_table
):
    table = emulator_table(SCHEMA)
    py_session = PyTableTunnel(py_entry(emulator)).create_upload_session(table)
    with py_session.open_record_writer(0) as writer:
        writer.write(py_session.new_record([1, "x", 1.0]))
    commits = RequestLog(emulator)
    py_session.commit([0])
    with pytest.raises(py_errors.ODPSError) as conflict:
        py_session.commit([0])
    assert conflict.value.code == "StatusConflict"
    # both commits logged (a line is written after its answer) before ours is watched
    commits.wait(lambda x: x.get("session") == py_session.id and x["method"] == "POST", 2)

    log = RequestLog(emulator)
    ours = tunnel.create_upload_session(table, upload_id=py_session.id)
    ours.commit([0])  # reloads first: committed with these blocks, so done
    assert ours.status == ours.Status.Closed
    with pytest.raises(errors.BlockListMismatch):
        ours.commit([0, 1])
    lines = log.wait(lambda x: x.get("session") == py_session.id, 3)
    assert all(x["method"] == "GET" for x in lines)  # no commit request was sent again


def test_idempotent_commit_switch(special, special_table):
    table = special_table()
    py_session = PyTableTunnel(py_entry(special)).create_upload_session(table)
    with py_session.open_record_writer(0) as writer:
        writer.write(py_session.new_record([1, "x", 1.0]))
    py_session.commit([0])
    py_session.commit([0])  # answered with the session again
    assert special.catalog.read_table(special.project, table).num_rows == 1
