"""OdpsTunnelHook: connection parsing, caching, secrets, test_connection, session helpers."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_odps_tunnel.hooks import connection as connection_module
from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook

from .data import SALES_COLUMNS, create_table, load_rows, sales_rows

SECRET = "s3cr3t-access-key-value"
TOKEN = "sts-token-value-0123456789"


def _conn(monkeypatch, conn_id: str = "odps_tunnel_default", **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_constructor_does_no_io():
    hook = OdpsTunnelHook("no_such_connection")  # must not look the connection up
    assert hook.odps_tunnel_conn_id == "no_such_connection"
    with pytest.raises(Exception, match="no_such_connection"):
        _ = hook.settings


def test_settings_from_an_env_connection(monkeypatch):
    _conn(
        monkeypatch,
        conn_type="odps_tunnel",
        login="AKID",
        password=SECRET,
        extra={
            "project": "proj",
            "endpoint": "http://service/api",
            "tunnel_endpoint": "http://tunnel",
            "quota_name": "q1",
            "schema": "s1",
        },
    )
    s = OdpsTunnelHook().settings
    assert (s.access_id, s.secret_access_key, s.project) == ("AKID", SECRET, "proj")
    assert (s.endpoint, s.tunnel_endpoint, s.quota_name, s.schema) == (
        "http://service/api",
        "http://tunnel",
        "q1",
        "s1",
    )
    assert SECRET not in repr(s)


def test_form_prefixed_extras_and_overrides(monkeypatch):
    _conn(
        monkeypatch,
        conn_type="odps_tunnel",
        login="AKID",
        password=SECRET,
        extra={
            "extra__odps_tunnel__project": "from_form",
            "extra__odps_tunnel__endpoint": "http://service/api",
            "quota_name": "",
        },
    )
    assert OdpsTunnelHook().settings.project == "from_form"
    assert OdpsTunnelHook().settings.quota_name is None
    hook = OdpsTunnelHook(project="other", quota_name="q2")
    assert (hook.project, hook.settings.quota_name) == ("other", "q2")
    assert hook.qualify("t") == "other.t"
    assert hook.qualify("p.s.t") == "p.s.t"


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"endpoint": "http://x/api"}, "project"), ({"project": "p"}, "endpoint")],
)
def test_incomplete_connection_is_refused(monkeypatch, extra, message):
    _conn(monkeypatch, conn_type="odps_tunnel", login="a", password=SECRET, extra=extra)
    with pytest.raises(ValueError, match=message):
        _ = OdpsTunnelHook().settings


def test_sts_token_is_masked_and_reaches_the_client(monkeypatch):
    masked: list[str] = []
    monkeypatch.setattr(connection_module, "mask_secret", masked.append)
    _conn(
        monkeypatch,
        conn_type="odps_tunnel",
        login="STS.AKID",
        password=SECRET,
        extra={"project": "p", "endpoint": "http://x/api", "sts_token": TOKEN},
    )
    hook = OdpsTunnelHook()
    assert masked == []  # nothing is read before first use
    assert hook.odps.credentials.sts_token == TOKEN
    assert masked == [TOKEN]
    assert TOKEN not in repr(hook.settings)
    assert SECRET not in repr(hook.odps.credentials)


def test_client_objects_are_built_once_per_hook(odps_conn):
    hook = OdpsTunnelHook()
    assert hook.odps is hook.get_conn()
    assert hook.table_tunnel is hook.table_tunnel
    assert hook.instance_tunnel is hook.instance_tunnel
    assert OdpsTunnelHook().odps is not hook.odps


def test_test_connection_against_the_emulator(odps_conn, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    assert OdpsTunnelHook().test_connection() == (
        True,
        f"Connected to project {odps_conn.project!r} at {odps_conn.endpoint}",
    )
    # Only a tunnel endpoint: a reload of an unknown download proves the signature passed.
    _conn(
        monkeypatch,
        "odps_tunnel_only",
        conn_type="odps_tunnel",
        login=odps_conn.access_id,
        password=odps_conn.secret_access_key,
        extra={"project": odps_conn.project, "tunnel_endpoint": odps_conn.tunnel_endpoint},
    )
    assert OdpsTunnelHook("odps_tunnel_only").test_connection()[0] is True
    _conn(
        monkeypatch,
        "odps_tunnel_wrong",
        conn_type="odps_tunnel",
        login=odps_conn.access_id,
        password="wrong-secret-value",
        extra={"project": odps_conn.project, "endpoint": odps_conn.endpoint},
    )
    ok, message = OdpsTunnelHook("odps_tunnel_wrong").test_connection()
    assert ok is False
    assert message == (
        f"{odps_conn.endpoint} rejected the signature: the AccessKey secret (password) does "
        f"not belong to the AccessKey ID (login) {odps_conn.access_id!r}"
    )
    assert "wrong-secret-value" not in message
    assert all(odps_conn.secret_access_key not in r.getMessage() for r in caplog.records)


def test_test_connection_names_what_is_missing(odps_conn, monkeypatch):
    """A connection saved without either endpoint fails Test with what to fill in."""
    _conn(
        monkeypatch,
        "odps_tunnel_no_endpoint",
        conn_type="odps_tunnel",
        login=odps_conn.access_id,
        password=odps_conn.secret_access_key,
        extra={"project": odps_conn.project},
    )
    ok, message = OdpsTunnelHook("odps_tunnel_no_endpoint").test_connection()
    assert ok is False
    assert OdpsTunnelHook("no_such_connection").test_connection()[0] is False  # no raise
    assert "needs a service endpoint ('endpoint'" in message
    assert "or a tunnel endpoint ('tunnel_endpoint')" in message
    _conn(
        monkeypatch,
        "odps_tunnel_no_project",
        conn_type="odps_tunnel",
        login=odps_conn.access_id,
        password=odps_conn.secret_access_key,
        extra={"project": "no_such_project", "endpoint": odps_conn.endpoint},
    )
    assert OdpsTunnelHook("odps_tunnel_no_project").test_connection() == (
        False,
        f"{odps_conn.endpoint} has no project 'no_such_project'",
    )
    _conn(
        monkeypatch,
        "odps_tunnel_not_a_url",
        conn_type="odps_tunnel",
        login=odps_conn.access_id,
        password=odps_conn.secret_access_key,
        extra={"project": odps_conn.project, "tunnel_endpoint": "no url"},
    )
    ok, message = OdpsTunnelHook("odps_tunnel_not_a_url").test_connection()
    assert ok is False
    assert "tunnel_endpoint 'no url' is not an http:// or https:// URL" in message


def test_session_ref_round_trip_and_validation():
    ref = SessionRef("upload", "abc", table="p.t", partition="ds=1", compression="zstd")
    assert SessionRef.of(json.loads(json.dumps(ref.to_dict()))) == ref
    assert SessionRef.of({**ref.to_dict(), "unknown": 1}) == ref
    assert ref.target == "p.t/ds=1"
    with pytest.raises(ValueError, match="kind"):
        SessionRef("nope", "abc")
    with pytest.raises(ValueError, match="id"):
        SessionRef("upload", "")
    with pytest.raises(TypeError):
        SessionRef.of("abc")


def test_partition_row_count_and_session_status(odps_conn):
    table = create_table(odps_conn, "hook_counts", SALES_COLUMNS, "ds string")
    hook = OdpsTunnelHook()
    assert hook.partition_row_count(table, "ds=1") is None
    assert hook.partition_row_count("no_such_table", "ds=1") is None
    load_rows(odps_conn, table, "ds=1", sales_rows(0, 7))
    assert hook.partition_row_count(table, "ds=1") == 7

    ref, session = hook.create_upload_session(table, "ds=2", create_partition=True)
    assert hook.session_status(ref) == "normal"
    session.commit([])
    assert hook.session_status(ref) == "closed"
    gone = SessionRef("upload", "20240101000000deadbeef", table=ref.table, partition="ds=2")
    assert hook.session_status(gone) == "missing"
    download, _ = hook.create_download_session(table, "ds=1")
    assert hook.session_status(download) == "normal"


def test_write_block_reports_rows_bytes_and_a_stable_digest(odps_conn):
    table = create_table(odps_conn, "hook_blocks", SALES_COLUMNS)
    hook = OdpsTunnelHook()
    _, session = hook.create_upload_session(table)
    seen: list[tuple[int, int]] = []
    data = sales_rows(0, 100).to_batches(max_chunksize=40)
    first = hook.write_block(session, 3, data, on_batch=lambda r, b: seen.append((r, b)))
    again = hook.write_block(session, 3, sales_rows(0, 100).to_batches(max_chunksize=40))
    assert (first.block_id, first.rows) == (3, 100)
    assert first.bytes > 0 and sum(b for _, b in seen) == first.bytes
    assert [r for r, _ in seen] == [40, 40, 20]
    assert again.digest == first.digest
    other = hook.write_block(session, 3, sales_rows(1, 100).to_batches())
    assert other.digest != first.digest
    session.commit([3])
    assert odps_conn.catalog.read_table(odps_conn.project, table).num_rows == 100


def test_an_instance_result_is_never_silently_cut_to_the_limited_mode(tmp_path, monkeypatch):
    """A protected project only serves the limited (10,000-row) mode of an instance
    download: the hook fails rather than return a truncated result as if it were all."""
    from airflow_provider_odps_tunnel.emulator import Emulator
    from airflow_provider_odps_tunnel.tunnel.errors import NoPermission

    from .conftest import connection_json

    emu = Emulator(tmp_path / "emu", protected_projects="test_project", instance_result_limit=3)
    emu.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_PROTECTED", connection_json(emu))
        create_table(emu, "prot", "id bigint")
        load_rows(emu, "prot", None, sales_rows(0, 5).select(["id"]))
        hook = OdpsTunnelHook("protected")
        instance = hook.run_sql("SELECT id FROM prot")
        instance.wait_for_success()
        with pytest.raises(NoPermission, match="10,000-row fallback"):
            hook.create_instance_download_session(instance.id)
        _, limited = hook.create_instance_download_session(instance.id, limit=True)
        assert limited.count == 3
    finally:
        emu.stop()
