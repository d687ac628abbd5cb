"""SQL instances through our client (``ODPS.run_sql`` / ``execute_sql``) on the emulator,
and their results read through our instance tunnel."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import logging
import pickle
from decimal import Decimal
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import (
    Instance,
    SQLTaskError,
    TableTunnel,
    TunnelError,
    errors,
)
from airflow_provider_odps_tunnel.tunnel.sql import build_sql_job

_names = itertools.count()


@pytest.fixture
def table_name(emulator, request):
    """A fresh table name, dropped after the test (the test creates it by SQL)."""
    names: list[str] = []

    def make() -> str:
        base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
        names.append(f"sql_{base}_{next(_names)}")
        return names[-1]

    yield make
    for name in names:
        emulator.catalog.drop_table(emulator.project, name, if_exists=True)


def _rows(instance: Instance) -> list[list]:
    with instance.open_reader() as reader:
        return [list(r.values) for r in reader]


def test_job_body_carries_the_query_and_hints():
    body = build_sql_job("select 1 ]]> x", {"odps.sql.type.system.odps2": True}).decode()
    assert body.startswith('<?xml version="1.0" encoding="utf-8"?><Instance><Job>')
    assert "<SQL><Name>AnonymousSQLTask</Name>" in body
    assert "<![CDATA[select 1 ]]]]><![CDATA[> x;]]>" in body
    root = ElementTree.fromstring(body)
    props = {p.findtext("Name"): p.findtext("Value") for p in root.iter("Property")}
    assert json.loads(props["settings"]) == {"odps.sql.type.system.odps2": "true"}
    assert props["uuid"]
    with pytest.raises(ValueError):
        build_sql_job("  ")


def test_ddl_insert_values_and_select(odps, table_name):
    name = table_name()
    ddl = odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, label STRING)")
    assert isinstance(ddl, Instance) and ddl.id
    assert ddl.is_terminated() and ddl.is_successful()
    assert ddl.status == "Terminated"
    odps.execute_sql(f"INSERT INTO {name} VALUES (1, 'one'), (2, 'two'), (3, NULL)")
    select = odps.execute_sql(f"SELECT id, label FROM {name} ORDER BY id")
    assert _rows(select) == [[1, "one"], [2, "two"], [3, None]]
    assert select.get_task_statuses() == {"AnonymousSQLTask": "Success"}

    counted = odps.execute_sql(f"SELECT count(*) AS n FROM {name} WHERE id > 1")
    assert _rows(counted) == [[2]]
    # The written rows are a commit like a tunnel commit: the table tunnel sees them.
    download = TableTunnel(odps).create_download_session(name)
    assert download.count == 3


def test_large_select_through_the_instance_tunnel_records_and_arrow(odps, tunnel, table_name):
    name = table_name()
    odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, label STRING)")
    total = 12_345
    upload = tunnel.create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        for i in range(total):
            writer.write(upload.new_record([i, f"row-{i}"]))
    upload.commit([0])

    instance = odps.execute_sql(f"SELECT id, label FROM {name} WHERE id % 2 = 0")
    expected = total // 2 + 1
    with instance.open_reader() as reader:
        assert reader.session.count == expected
        ids = [r[0] for r in reader]
    assert len(ids) == expected and sorted(ids) == list(range(0, total, 2))

    with instance.open_reader(arrow=True) as reader:
        table = reader.read()
    assert table.num_rows == expected
    assert table.column_names == ["id", "label"]
    assert sorted(table.column("id").to_pylist()) == list(range(0, total, 2))

    # A row range and a column subset of the same result.
    with instance.open_reader(start=100, count=50, columns=["label"]) as reader:
        part = [r[0] for r in reader]
    assert len(part) == 50 and all(v.startswith("row-") for v in part)


def test_instance_download_session_honours_limit(odps, tunnel, table_name):
    name = table_name()
    odps.execute_sql(f"CREATE TABLE {name} (id BIGINT)")
    upload = tunnel.create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        for i in range(10_500):
            writer.write(upload.new_record([i]))
    upload.commit([0])
    instance = odps.execute_sql(f"SELECT id FROM {name}")

    assert instance.open_download_session().count == 10_500
    limited = instance.open_download_session(limit=True)
    assert limited.count == 10_000
    with instance.open_reader(limit=True, arrow=True) as reader:
        assert reader.read().num_rows == 10_000


def test_failing_sql_raises_with_the_message_and_instance_id(odps):
    with pytest.raises(SQLTaskError) as info:
        odps.execute_sql("SELECT * FROM no_such_table_anywhere")
    err = info.value
    assert isinstance(err, TunnelError) and isinstance(err, errors.TaskFailed)
    assert err.instance_id and err.instance_id in str(err)
    assert "ODPS-0130131" in err.message and "no_such_table_anywhere" in err.message.lower()
    assert err.task_name == "AnonymousSQLTask"
    again = pickle.loads(pickle.dumps(err))
    assert again.instance_id == err.instance_id and again.message == err.message

    # The instance is there and terminated, not successful.
    failed = Instance(odps, err.instance_id)
    assert failed.is_terminated() and not failed.is_successful()

    with pytest.raises(SQLTaskError, match="ODPS-0130161"):
        odps.execute_sql("THIS IS NOT SQL")


def test_run_sql_then_wait_for_success(odps, table_name, emulator):
    name = table_name()
    odps.execute_sql(f"CREATE TABLE {name} (v STRING)")
    instance = odps.run_sql(f"INSERT INTO {name} VALUES ('a'), ('b')", hints={"x.y": "1"})
    assert isinstance(instance, Instance)
    assert instance.wait_for_success(timeout=60) is instance
    assert instance.is_successful()
    # Reattached by id, the instance answers the same.
    again = Instance(odps, instance.id)
    assert again.is_successful()
    assert _rows(odps.execute_sql(f"SELECT v FROM {name} ORDER BY v")) == [["a"], ["b"]]


def test_unknown_instance_is_no_such_object(odps):
    with pytest.raises(errors.NoSuchObject):
        Instance(odps, "20240101000000abcdef0123456").reload()


def test_wait_is_bounded_by_its_timeout(odps, monkeypatch, virtual_clock):
    instance = Instance(odps, "20240101000000abcdef0123456")
    polls: list[float] = []
    monkeypatch.setattr(
        Instance, "is_terminated", lambda self: polls.append(virtual_clock.now) or False
    )
    with pytest.raises(errors.TunnelTimeoutError, match="still running") as info:
        instance.wait_for_success(timeout=10, interval=0.5, max_interval=4)
    assert info.value.session_id == instance.id
    # Doubling pauses up to 4 s; the last one is cut to the 2.5 s left, then one last poll.
    assert virtual_clock.sleeps == [0.5, 1.0, 2.0, 4.0, 2.5]
    assert polls == [0.0, 0.5, 1.5, 3.5, 7.5, 10.0]


def test_wait_polls_until_the_instance_ends(odps, monkeypatch, virtual_clock):
    instance = Instance(odps, "20240101000000abcdef0123456")
    answers = iter([False] * 8 + [True])
    monkeypatch.setattr(Instance, "is_terminated", lambda self: next(answers))
    instance.wait_for_completion()
    assert virtual_clock.sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def _typed_rows(instance: Instance) -> tuple[list[str], list[list]]:
    with instance.open_reader() as reader:
        types = [c.type.name for c in reader.schema.simple_columns]
        return types, [list(r.values) for r in reader]


def test_exact_decimals_through_sql(odps, tunnel, table_name):
    name = table_name()
    odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, d DECIMAL)")
    values = [Decimal("22222"), Decimal("0.1"), Decimal("12345678901234567890.123456789012345678")]
    upload = tunnel.create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        for idx, value in enumerate(values):
            writer.write(upload.new_record([idx, value]))
    upload.commit([0])
    instance = odps.execute_sql(f"SELECT d, d * 2, 0.1BD + 0.2BD FROM {name} ORDER BY id")
    with decimal.localcontext(prec=60):
        expected = [[v, v * 2, Decimal("0.3")] for v in values]
    assert _rows(instance) == expected
    csv_text = instance.get_task_results()["AnonymousSQLTask"]
    assert csv_text.splitlines()[1].split(",")[0] in ("22222", "22222.000000000000000000")


def test_intervals_and_the_sql_time_zone(odps):
    instance = odps.execute_sql(
        "SELECT interval_day_time('1 02:03:04.5') AS a, INTERVAL '1-2' YEAR TO MONTH AS b"
    )
    types, rows = _typed_rows(instance)
    assert types == ["interval_day_time", "interval_year_month"]
    assert rows[0][0] == pd.Timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert rows[0][1].total_months() == 14

    query = "SELECT DATETIME '2024-01-01 00:00:00' AS at"
    midnight = {
        zone: dt.datetime(2024, 1, 1, tzinfo=ZoneInfo(zone)).timestamp()
        for zone in ("UTC", "Asia/Shanghai")
    }
    for zone, instant in midnight.items():
        hinted = odps.execute_sql(query, hints={"odps.sql.timezone": zone})
        assert _rows(hinted)[0][0].timestamp() == instant
        scripted = odps.execute_sql(f"set odps.sql.timezone={zone}; {query}")
        assert _rows(scripted)[0][0].timestamp() == instant
        text = scripted.get_task_results()["AnonymousSQLTask"]
        assert text.splitlines()[1] == "2024-01-01 00:00:00"  # wall clock in the zone


def test_datetime_of_year_one_and_zero_through_sql(odps, table_name, caplog):
    name = table_name()
    utc = {"odps.sql.timezone": "UTC"}  # literals in this client's zone: year 1 stays year 1
    odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, moment DATETIME)")
    odps.execute_sql(
        f"INSERT INTO {name} VALUES (0, DATETIME '0000-01-01 00:00:00'), "
        "(1, DATETIME '0001-01-01 00:00:00')",
        hints=utc,
    )
    one = odps.execute_sql(f"SELECT moment FROM {name} WHERE id = 1", hints=utc)
    assert _rows(one)[0][0].replace(tzinfo=None) == dt.datetime(1, 1, 1)
    everything = odps.execute_sql(f"SELECT id, moment FROM {name} ORDER BY id", hints=utc)
    text = everything.get_task_results()["AnonymousSQLTask"]
    assert text.splitlines()[1:] == ["0,0000-01-01 00:00:00", "1,0001-01-01 00:00:00"]
    with everything.open_reader(arrow=True) as reader:  # the whole body arrives
        table = reader.read()
    assert table.column("moment").cast(pa.int64()).to_pylist() == [
        -62167219200000,
        -62135596800000,
    ]
    # Records: year 0 has no Python datetime; the decoder names the value it received, as
    # an OverflowError like pyodps's, and the body is not re-read for it (same value again).
    reader = everything.open_reader()
    with (
        caplog.at_level(logging.WARNING, logger="airflow_provider_odps_tunnel.tunnel.io"),
        pytest.raises(errors.DatetimeOverflowError, match="-62167219200000"),
        reader,
    ):
        list(reader)
    assert isinstance(errors.DatetimeOverflowError("x"), OverflowError)
    assert not [r for r in caplog.records if "re-opening" in r.getMessage()]


@pytest.mark.parametrize(
    "local_timezone", [None, False, True, "Asia/Tokyo", ZoneInfo("Europe/Paris")]
)
def test_jobs_carry_the_time_zone_setting_pyodps_sends(local_timezone, monkeypatch):
    """``options.local_timezone`` becomes the job's ``odps.sql.timezone`` exactly as
    pyodps's does (its ``collect_sql_settings``), so SQL literals mean the same instants
    for both clients; unset, nothing is sent and the project's zone applies."""
    from odps.config import option_context
    from odps.models.tasks.sql import collect_sql_settings

    from airflow_provider_odps_tunnel.tunnel.options import options

    monkeypatch.setattr(options, "local_timezone", local_timezone)
    with option_context({"local_timezone": local_timezone}):
        expected = collect_sql_settings({}, glob=True).get("odps.sql.timezone")
    body = ElementTree.fromstring(build_sql_job("select 1"))
    settings = json.loads(
        next(p.findtext("Value") for p in body.iter("Property") if p.findtext("Name") == "settings")
    )
    assert settings.get("odps.sql.timezone") == expected
    assert json.loads(
        ElementTree.fromstring(build_sql_job("select 1", {"odps.sql.timezone": "UTC"}))
        .find(".//Property/Value")
        .text
    ) == {"odps.sql.timezone": "UTC"}  # a hint wins


def test_a_client_zone_gives_literals_its_wall_clock(odps, monkeypatch):
    from airflow_provider_odps_tunnel.tunnel.options import options

    monkeypatch.setattr(options, "local_timezone", "Asia/Tokyo")
    instance = odps.execute_sql("SELECT DATETIME '2024-01-01 00:00:00' AS at")
    # midnight in Tokyo (the zone the job was sent with), read in Tokyo's wall clock; with
    # no zone sent it would be the project's midnight, 09:00 in Tokyo
    assert _rows(instance)[0][0] == dt.datetime(2024, 1, 1)
