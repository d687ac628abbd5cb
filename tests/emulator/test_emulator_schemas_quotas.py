"""Schemas (project.schema.table), tunnel quotas and project protection.

Each behaviour is driven by the official pyodps client and by ours against the same
emulator setup: two schemas holding a table of the same name stay apart; an unknown
``quotaName`` is ``QuotaNotExist`` once the emulator knows its quotas; a protected project
refuses unlimited instance-tunnel downloads with ``NoPermission``, and the clients fall
back to the limited result (or raise when told not to).
"""

from __future__ import annotations

import json
import warnings

import pytest
from odps import ODPS as PyODPS
from odps import errors as py_errors
from odps.tunnel import TableTunnel as PyTableTunnel
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel
from airflow_provider_odps_tunnel.tunnel import errors as our_errors
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns


@pytest.fixture
def make_emulator(tmp_path):
    """Start a private emulator (its own quotas, protected projects) for one test."""
    started: list[Emulator] = []

    def make(**options) -> Emulator:
        emu = Emulator(tmp_path / f"emu{len(started)}", **options).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


def _pyodps(emu: Emulator) -> PyODPS:
    return PyODPS(
        emu.access_id,
        emu.secret_access_key,
        emu.project,
        endpoint=emu.endpoint,
        tunnel_endpoint=emu.tunnel_endpoint,
    )


def _ours(emu: Emulator) -> ODPS:
    return ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)


def _schema(columns: str) -> TableSchema:
    return TableSchema(parse_columns(columns), [])


def _log_lines(emu: Emulator) -> list[dict]:
    return [json.loads(line) for line in emu.request_log_path.read_text().splitlines()]


def _instance_creates(emu: Emulator, count: int) -> list[dict] | None:
    """The logged instance-tunnel session creations, once there are ``count`` (a line is
    written after its response went out, so it may trail the client)."""
    lines = _log_lines(emu)
    creates = [x for x in lines if x.get("kind") == "instance" and x["method"] == "POST"]
    return creates if len(creates) >= count else None


# --------------------------------------------------------------------------- quotas


def test_pyodps_unknown_quota_is_quota_not_exist(make_emulator):
    emu = make_emulator(quotas="etl_quota,ad_hoc")
    emu.catalog.create_table(emu.project, "q", _schema("a bigint"))
    odps = _pyodps(emu)
    known = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint, quota_name="etl_quota")
    session = known.create_upload_session("q")
    assert session.quota_name == "etl_quota"
    unknown = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint, quota_name="no_such_quota")
    with pytest.raises(py_errors.ODPSError) as info:
        unknown.create_download_session("q")
    # pyodps has no class for the code: a plain ODPSError carrying it.
    assert info.value.code == "QuotaNotExist"
    assert "no_such_quota" in str(info.value)
    refused = wait_until(
        lambda: [x for x in _log_lines(emu) if x["params"].get("quotaName") == "no_such_quota"],
        timeout=10,
        message="the refused request logged",
    )
    assert refused[-1]["status"] == 404


def test_ours_unknown_quota_is_quota_not_exist(make_emulator):
    emu = make_emulator(quotas=["etl_quota"])
    emu.catalog.create_table(emu.project, "q", _schema("a bigint"))
    odps = _ours(emu)
    session = TableTunnel(odps, quota_name="etl_quota").create_download_session("q")
    assert session.quota_name == "etl_quota"
    with pytest.raises(our_errors.NoSuchObject) as info:
        TableTunnel(odps, quota_name="no_such_quota").create_upload_session("q")
    assert info.value.code == "QuotaNotExist" and info.value.status == 404


def test_quotas_unchecked_by_default(emulator, emulator_table):
    """Without a list of quotas (the default) any quota name is accepted, by both clients."""
    table = emulator_table("a bigint")
    py = PyTableTunnel(_pyodps(emulator), endpoint=emulator.tunnel_endpoint, quota_name="any_q")
    assert py.create_download_session(table).quota_name == "any_q"
    ours = TableTunnel(_ours(emulator), quota_name="any_q")
    assert ours.create_download_session(table).quota_name == "any_q"


# --------------------------------------------------------------------------- protection

ROWS_SQL = "SELECT * FROM prot"


def _protected(make_emulator) -> Emulator:
    emu = make_emulator(protected_projects="test_project", instance_result_limit=3)
    emu.catalog.create_table(emu.project, "prot", _schema("a bigint"))
    _pyodps(emu).write_table("prot", [[1], [2], [3], [4], [5]])
    return emu


def test_pyodps_protected_project_download(make_emulator):
    emu = _protected(make_emulator)
    instance = _pyodps(emu).execute_sql(ROWS_SQL)
    # limit left unset: pyodps warns and reads the limited result.
    with pytest.warns(UserWarning, match="under protection"), instance.open_reader() as reader:
        assert sorted(r[0] for r in reader) == [1, 2, 3]
    with pytest.raises(py_errors.NoPermission, match="protected"):
        instance.open_reader(limit=False, reopen=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with instance.open_reader(limit=True, reopen=True) as reader:
            assert reader.count == 3
    creates = wait_until(
        lambda: _instance_creates(emu, 4), timeout=10, message="4 instance-tunnel creates logged"
    )
    assert [x["status"] for x in creates] == [403, 200, 403, 200]
    assert [("instance_tunnel_limit_enabled" in x["params"]) for x in creates] == [
        False,
        True,
        False,
        True,
    ]


def test_ours_protected_project_download(make_emulator):
    emu = _protected(make_emulator)
    instance = _ours(emu).execute_sql(ROWS_SQL)
    reader = instance.open_reader()
    assert sorted(r[0] for r in reader) == [1, 2, 3]
    with pytest.raises(our_errors.NoPermission) as info:
        instance.open_reader(limit=False)
    assert info.value.status == 403 and "protected" in str(info.value)
    assert instance.open_reader(limit=True).session.count == 3


def test_unprotected_project_downloads_everything(emulator, emulator_table):
    table = emulator_table("a bigint")
    py = _pyodps(emulator)
    py.write_table(table, [[1], [2], [3], [4], [5]])
    with py.execute_sql(f"SELECT * FROM {table}").open_reader() as reader:
        assert reader.count == 5
    assert _ours(emulator).execute_sql(f"SELECT * FROM {table}").open_reader().session.count == 5


# --------------------------------------------------------------------------- schemas


def _py_rows(py_tunnel: PyTableTunnel, table: str, schema: str | None, partition=None) -> list:
    down = py_tunnel.create_download_session(table, schema=schema, partition_spec=partition)
    with down.open_record_reader(0, down.count) as reader:
        return sorted(r[0] for r in reader)


def test_pyodps_two_schemas_keep_same_named_tables_apart(make_emulator):
    emu = make_emulator()
    odps = _pyodps(emu)
    odps.create_schema("sales")
    odps.create_schema("staging")
    assert {s.name for s in odps.list_schemas()} == {"default", "sales", "staging"}
    assert odps.exist_schema("sales") and not odps.exist_schema("nope")
    for schema in ("sales", "staging"):
        odps.create_table("orders", "id bigint", schema=schema)
    odps.create_table("orders", "id bigint")  # the default schema's table of that name
    tunnel = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint)
    for schema, ids in (("sales", [1, 2]), ("staging", [10]), (None, [100])):
        session = tunnel.create_upload_session("orders", schema=schema)
        with session.open_record_writer() as writer:
            for i in ids:
                writer.write(session.new_record([i]))
        session.commit(writer.get_blocks_written())
    stream = tunnel.create_stream_upload_session("orders", schema="staging")
    with stream.open_record_writer() as writer:
        writer.write(stream.new_record([11]))  # each flush of a stream is its own commit
    assert _py_rows(tunnel, "orders", "sales") == [1, 2]
    assert _py_rows(tunnel, "orders", "staging") == [10, 11]
    assert _py_rows(tunnel, "orders", None) == [100]
    # The tunnel paths carried the schema segment.
    paths = {x["path"] for x in _log_lines(emu) if x.get("kind") in ("upload", "stream")}
    assert f"/projects/{emu.project}/schemas/sales/tables/orders" in paths
    assert f"/projects/{emu.project}/schemas/staging/tables/orders/streams" in paths
    # REST metadata follows curr_schema: each table reports its own row count.
    sales = odps.get_table("orders", schema="sales")
    sales.reload()
    assert sales.record_num == 2
    assert [t.name for t in odps.list_tables(schema="staging")] == ["orders"]
    assert emu.catalog.read_table(emu.project, "orders", schema_name="staging").num_rows == 2
    odps.delete_table("orders", schema="staging")
    assert not odps.exist_table("orders", schema="staging")
    assert odps.exist_table("orders", schema="sales") and odps.exist_table("orders")
    odps.delete_schema("staging")
    assert not odps.exist_schema("staging")


def test_pyodps_partitions_and_sessions_stay_in_their_schema(make_emulator):
    emu = make_emulator()
    odps = _pyodps(emu)
    for schema in ("a", "b"):
        odps.create_schema(schema)
        odps.create_table("events", ("id bigint", "pt string"), schema=schema)
    tunnel = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint)
    session = tunnel.create_upload_session(
        "events", schema="a", partition_spec="pt=x", create_partition=True
    )
    with session.open_record_writer() as writer:
        writer.write(session.new_record([1, "x"]))
    session.commit(writer.get_blocks_written())
    assert odps.get_table("events", schema="a").exist_partition("pt=x")
    assert not odps.get_table("events", schema="b").exist_partition("pt=x")
    with pytest.raises(py_errors.NoSuchPartition):
        tunnel.create_download_session("events", schema="b", partition_spec="pt=x")
    # A session belongs to its schema's table: the other schema's table does not know it.
    other = tunnel.create_upload_session(
        "events", schema="b", partition_spec="pt=x", create_partition=True
    )
    with pytest.raises(py_errors.ODPSError) as info:
        tunnel.create_upload_session(
            "events", schema="a", upload_id=other.id, partition_spec="pt=x"
        )
    assert info.value.code == "NoSuchUpload"
    assert _py_rows(tunnel, "events", "a", "pt=x") == [1]


def test_pyodps_unknown_schema_is_no_such_object(make_emulator):
    """A schema that does not exist is 404 ``NoSuchObject``, which pyodps's existence
    checks expect (``exist_schema``, ``exist_table`` catch it)."""
    emu = make_emulator()
    odps = _pyodps(emu)
    assert not odps.exist_schema("nope")
    assert not odps.exist_table("orders", schema="nope")
    tunnel = PyTableTunnel(odps, endpoint=emu.tunnel_endpoint)
    with pytest.raises(py_errors.NoSuchObject, match="schema does not exist"):
        tunnel.create_upload_session("orders", schema="nope")


def test_ours_two_schemas_keep_same_named_tables_apart(make_emulator):
    emu = make_emulator()
    odps = _ours(emu)
    odps.execute_sql("CREATE SCHEMA sales")
    odps.execute_sql("CREATE SCHEMA IF NOT EXISTS staging")
    for schema in ("sales", "staging"):
        odps.execute_sql(f"CREATE TABLE {emu.project}.{schema}.orders (id BIGINT)")
    odps.execute_sql("CREATE TABLE orders (id BIGINT)")
    tunnel = TableTunnel(odps)
    for table, schema, ids in (
        ("orders", "sales", [1, 2]),
        (f"{emu.project}.staging.orders", None, [10]),
        ("orders", None, [100]),
    ):
        session = tunnel.create_upload_session(table, schema=schema)
        with session.open_record_writer(0) as writer:
            for i in ids:
                writer.write(session.new_record([i]))
        session.commit([0])

    def rows(table: str, schema: str | None) -> list[int]:
        down = tunnel.create_download_session(table, schema=schema)
        return sorted(r.values[0] for r in down.open_record_reader(0, down.count))

    assert rows("orders", "sales") == [1, 2]
    assert rows("orders", "staging") == [10]
    assert rows("orders", None) == [100]
    assert {s.name for s in _pyodps(emu).list_schemas()} == {"default", "sales", "staging"}
    odps.execute_sql(f"DROP TABLE {emu.project}.staging.orders")
    assert not emu.catalog.table_exists(emu.project, "orders", "staging")
    assert emu.catalog.table_exists(emu.project, "orders", "sales")
    with pytest.raises(our_errors.NoSuchObject, match="schema does not exist"):
        tunnel.create_download_session("orders", schema="nope")


def test_sql_statements_name_schema_tables(make_emulator):
    """Three-part names in DDL and INSERT reach the schema's table, never the default
    schema's table of the same name (pyodps runs the SQL; ours then reads the rows)."""
    emu = make_emulator()
    odps = _pyodps(emu)
    odps.execute_sql("CREATE SCHEMA lake")
    p = emu.project
    odps.execute_sql(f"CREATE TABLE {p}.lake.logs (id BIGINT) PARTITIONED BY (pt STRING)")
    odps.execute_sql("CREATE TABLE logs (id BIGINT) PARTITIONED BY (pt STRING)")
    odps.execute_sql(f"ALTER TABLE {p}.lake.logs ADD PARTITION (pt='a')")
    odps.execute_sql(f"INSERT INTO {p}.lake.logs PARTITION (pt='a') VALUES (1), (2)")
    assert odps.get_table("logs", schema="lake").exist_partition("pt=a")
    assert not odps.get_table("logs").exist_partition("pt=a")
    down = TableTunnel(_ours(emu)).create_download_session(
        "logs", schema="lake", partition_spec="pt=a"
    )
    assert sorted(r.values[0] for r in down.open_record_reader(0, down.count)) == [1, 2]
    odps.execute_sql("INSERT INTO logs PARTITION (pt='b') VALUES (7)")
    both = odps.execute_sql(
        f"SELECT s.id, d.id FROM {p}.lake.logs s CROSS JOIN {p}.logs d ORDER BY s.id"
    )
    with both.open_reader() as reader:
        assert [list(r.values) for r in reader] == [[1, 7], [2, 7]]
    with odps.execute_sql(f"SELECT count(*) FROM {p}.default.logs").open_reader() as reader:
        assert [r[0] for r in reader] == [1]
    ours = _ours(emu).execute_sql(f"SELECT sum(id) FROM {p}.lake.logs").open_reader()
    assert [r.values[0] for r in ours] == [3]
    odps.execute_sql(f"TRUNCATE TABLE {p}.lake.logs PARTITION (pt='a')")
    assert emu.catalog.read_table(p, "logs", "pt=a", schema_name="lake").num_rows == 0
    odps.execute_sql(f"DROP TABLE {p}.lake.logs")
    odps.execute_sql(f"DROP SCHEMA {p}.lake")
    assert not odps.exist_schema("lake") and odps.exist_table("logs")


def test_pyodps_with_schemas_enabled_uses_the_default_schema(make_emulator):
    """pyodps with ``options.enable_schema`` puts ``/schemas/default/`` on every table path
    and ``curr_schema=default`` on REST: both reach the tables named without a schema."""
    from odps import options as py_options

    emu = make_emulator()
    emu.catalog.create_table(emu.project, "plain", _schema("a bigint"))
    odps = _pyodps(emu)
    odps.write_table("plain", [[1], [2]])
    py_options.enable_schema = True
    try:
        table = _pyodps(emu).get_table("plain")
        assert table.get_schema().name == "default"
        with table.open_reader() as reader:
            assert sorted(r[0] for r in reader) == [1, 2]
    finally:
        py_options.enable_schema = False
    paths = {x["path"] for x in _log_lines(emu) if x.get("kind") == "download"}
    assert f"/projects/{emu.project}/schemas/default/tables/plain" in paths


def test_cli_options_reach_a_child_process_emulator(make_emulator):
    """``quotas`` and ``protected_projects`` survive the trip through the ``serve`` options
    of a child-process emulator."""
    emu = make_emulator(subprocess=True, quotas=["etl"], protected_projects=["test_project"])
    emu.catalog.create_table(emu.project, "q", _schema("a bigint"))
    odps = _pyodps(emu)
    with pytest.raises(py_errors.ODPSError) as info:
        PyTableTunnel(odps, endpoint=emu.tunnel_endpoint, quota_name="x").create_upload_session("q")
    assert info.value.code == "QuotaNotExist"
    instance = odps.execute_sql("SELECT 1")
    with pytest.raises(py_errors.NoPermission):
        instance.open_reader(limit=False)
