"""Exact values through the emulator's SQL, read by pyodps unchanged (and by our client):
wide decimals, intervals, the project time zone, DATETIMEs of years 0 and 1, and a body
that fails while it streams."""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from decimal import Decimal

import pandas as pd
import pytest
import urllib3
from odps import ODPS, errors, options
from odps.tunnel import TableTunnel
from odps.types import Monthdelta

_names = itertools.count()
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def unique(base: str) -> str:
    return f"{base}_{next(_names)}"


def both_readers(instance) -> tuple[list[list], list[list]]:
    """Rows through the instance tunnel and through the CSV task result."""
    with instance.open_reader(tunnel=True) as reader:
        tunnel_rows = [list(r.values) for r in reader]
    with instance.open_reader(tunnel=False) as reader:
        csv_rows = [list(r.values) for r in reader]
    return tunnel_rows, csv_rows


def local(instant: dt.datetime) -> dt.datetime:
    """How pyodps shows an instant: naive wall clock in the machine's zone."""
    return dt.datetime.fromtimestamp(instant.timestamp())


@pytest.fixture
def antique_dates():
    """pyodps refuses dates before 1928 unless told otherwise (its own check)."""
    options.allow_antique_date = True
    yield
    options.allow_antique_date = False
    options.tunnel.overflow_date_as_none = False


def test_bare_decimal_column_is_exact_through_sql_and_the_tunnel(odps_entry, tunnel):
    name = unique("dec")
    odps_entry.execute_sql(f"CREATE TABLE {name} (id BIGINT, d DECIMAL)")
    values = [Decimal("22222"), Decimal("0.1"), Decimal("12345678901234567890.123456789012345678")]
    upload = tunnel.create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        for idx, value in enumerate(values):
            writer.write(upload.new_record([idx, value]))
    upload.commit([0])

    instance = odps_entry.execute_sql(f"SELECT d, d * 2, d + 0.1BD FROM {name} ORDER BY id")
    with decimal.localcontext(prec=60):  # the expected values, computed exactly
        expected = [[v, v * 2, v + Decimal("0.1")] for v in values]
        total = sum(values)
    for rows in both_readers(instance):
        assert rows == expected
        assert str(rows[0][0]) in ("22222", "22222.000000000000000000")
    summed = odps_entry.execute_sql(f"SELECT sum(d) FROM {name}")
    assert both_readers(summed)[0] == [[total]]

    copy = unique("dec_copy")
    odps_entry.execute_sql(f"CREATE TABLE {copy} (d DECIMAL)")
    odps_entry.execute_sql(f"INSERT INTO {copy} SELECT d FROM {name}")
    download = tunnel.create_download_session(copy)
    with download.open_record_reader(0, download.count) as reader:
        assert sorted(r[0] for r in reader) == sorted(values)

    # More integer digits than DuckDB's DECIMAL(38,18) holds: an error, never a rounding.
    upload = tunnel.create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        writer.write(upload.new_record([9, Decimal("1" * 30)]))
    upload.commit([0])
    with pytest.raises(errors.ODPSError, match="ODPS-0123131"):
        odps_entry.execute_sql(f"SELECT d FROM {name}")


def test_decimal_literals_and_casts_stay_exact(odps_entry):
    instance = odps_entry.execute_sql(
        "SELECT 0.1BD + 0.2BD AS a, CAST('1.005' AS DECIMAL(10,3)) * 3 AS b, "
        "CAST('22222' AS DECIMAL) AS c, 100BD AS d"
    )
    for rows in both_readers(instance):
        assert rows == [[Decimal("0.3"), Decimal("3.015"), Decimal("22222"), Decimal("100")]]
    with instance.open_reader(tunnel=True) as reader:
        types = [str(c.type).lower() for c in reader.schema.columns]
    assert types[1].startswith("decimal(") and types[3] == "decimal(3,0)"


def test_interval_functions_and_literals_have_the_service_types(odps_entry):
    instance = odps_entry.execute_sql(
        "SELECT interval_day_time('1 02:03:04.5') AS a, interval_year_month('1-2') AS b, "
        "INTERVAL '-2 01:00:00' DAY TO SECOND AS c, INTERVAL '40' MONTH AS d, "
        "DATETIME '2024-01-31 00:00:00' + INTERVAL '1' DAY AS e, "
        "interval_year_month(concat('3', '-4')) AS f"
    )
    with instance.open_reader(tunnel=True) as reader:
        types = [str(c.type).lower() for c in reader.schema.columns]
        rows = [list(r.values) for r in reader]
    assert types == [
        "interval_day_time",
        "interval_year_month",
        "interval_day_time",
        "interval_year_month",
        "datetime",
        "interval_year_month",
    ]
    assert rows == [
        [
            pd.Timedelta(days=1, hours=2, minutes=3, seconds=4.5),
            Monthdelta(years=1, months=2),
            -pd.Timedelta(days=2, hours=1),
            Monthdelta(months=40),
            local(dt.datetime(2024, 2, 1, tzinfo=SHANGHAI)),  # the project's default zone
            Monthdelta(years=3, months=4),
        ]
    ]
    with instance.open_reader(tunnel=False) as reader:  # the service's interval texts
        text = list(next(iter(reader)).values)
    assert text[0] == "1 02:03:04.500000000" and text[2] == "-2 01:00:00.000000000"
    assert text[1] == Monthdelta(years=1, months=2)
    with pytest.raises(errors.ParseError, match="INTERVAL_YEAR_MONTH"):
        odps_entry.execute_sql("SELECT INTERVAL '1-12' YEAR TO MONTH")


@pytest.fixture
def zoned_entry(emulator):
    """pyodps on a project of its own (the project time zone is a project property)."""
    project = unique("zoned")
    emulator.catalog.create_project(project)
    return ODPS(emulator.access_id, emulator.secret_access_key, project, endpoint=emulator.endpoint)


def test_project_time_zone_is_set_with_setproject_and_hints(zoned_entry, emulator):
    entry = zoned_entry
    utc_midnight = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    shanghai_midnight = dt.datetime(2024, 1, 1, tzinfo=SHANGHAI)
    query = "SELECT DATETIME '2024-01-01 00:00:00' AS at"
    # a project that sets no zone has the service's default, Asia/Shanghai
    assert both_readers(entry.execute_sql(query))[0] == [[local(shanghai_midnight)]]

    entry.run_security_query("setproject odps.sql.timezone=UTC")
    assert entry.get_project().get_property("odps.sql.timezone") == "UTC"
    tunnel_rows, csv_rows = both_readers(entry.execute_sql(query))
    assert tunnel_rows == [[local(utc_midnight)]]  # the instant: epoch millis
    assert csv_rows == [[dt.datetime(2024, 1, 1)]]  # the text: wall clock in the zone

    # The job's setting (pyodps hints) and a SET statement override the project's zone.
    hinted = entry.execute_sql(query, hints={"odps.sql.timezone": "Asia/Shanghai"})
    assert both_readers(hinted)[0] == [[local(shanghai_midnight)]]
    entry.run_security_query("setproject odps.sql.timezone=Asia/Shanghai")
    scripted = entry.execute_sql(f"set odps.sql.timezone=America/New_York; {query}")
    new_york = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert both_readers(scripted)[0] == [[local(new_york)]]

    # Stored instants are wall clock in the zone for functions, and written back exactly.
    name = unique("zoned_t")
    entry.execute_sql(f"CREATE TABLE {name} (moment DATETIME)")
    upload = TableTunnel(entry, endpoint=emulator.tunnel_endpoint).create_upload_session(name)
    with upload.open_record_writer(0) as writer:
        writer.write(upload.new_record([local(utc_midnight)]))
    upload.commit([0])
    hours = entry.execute_sql(f"SELECT hour(moment), CAST(moment AS STRING) FROM {name}")
    assert both_readers(hours)[0] == [[8, "2024-01-01 08:00:00"]]
    entry.execute_sql(f"INSERT INTO {name} SELECT moment + INTERVAL '1' HOUR FROM {name}")
    times = entry.execute_sql(f"SELECT moment FROM {name} ORDER BY moment")
    assert both_readers(times)[0] == [
        [local(utc_midnight)],
        [local(utc_midnight + dt.timedelta(hours=1))],
    ]
    with pytest.raises(errors.ODPSError, match="time zone"):
        entry.execute_sql(query, hints={"odps.sql.timezone": "Mars/Olympus"})


def test_datetime_of_year_one_and_zero_is_sent_whole(odps_entry, tunnel, antique_dates):
    name = unique("antique")
    utc = {"odps.sql.timezone": "UTC"}  # literals in this client's zone: year 1 stays year 1
    odps_entry.execute_sql(f"CREATE TABLE {name} (id BIGINT, moment DATETIME)")
    odps_entry.execute_sql(
        f"INSERT INTO {name} VALUES (1, DATETIME '0001-01-01 00:00:00'), "
        "(2, DATETIME '9999-12-31 23:59:59')",
        hints=utc,
    )
    instance = odps_entry.execute_sql(f"SELECT id, moment FROM {name} ORDER BY id", hints=utc)
    expected = [[1, dt.datetime(1, 1, 1)], [2, dt.datetime(9999, 12, 31, 23, 59, 59)]]
    for rows in both_readers(instance):
        assert rows == expected
    download = tunnel.create_download_session(name)
    with download.open_record_reader(0, download.count) as reader:
        assert sorted(list(r.values) for r in reader) == expected

    odps_entry.execute_sql(
        f"INSERT INTO {name} VALUES (0, DATETIME '0000-01-01 00:00:00')", hints=utc
    )
    year_zero = odps_entry.execute_sql(f"SELECT id, moment FROM {name} ORDER BY id", hints=utc)
    # pyodps itself cannot hold year 0: it says so, after reading the whole body ...
    with pytest.raises(errors.DatetimeOverflowError), year_zero.open_reader(tunnel=True) as r:
        list(r)
    # ... and with its overflow option it reads that value as None and the rest exactly.
    options.tunnel.overflow_date_as_none = True
    with year_zero.open_reader(tunnel=True, reopen=True) as reader:
        assert [list(r.values) for r in reader] == [[0, None], *expected]


class _FailingEncoder:
    """The emulator's record encoder, failing at a body's second batch: an error that
    happens while a response streams."""

    real = None

    def __init__(self, *args, **kwargs):
        self._inner = self.real(*args, **kwargs)
        self._batches = 0

    def encode_arrow(self, batch, out):
        self._batches += 1
        if self._batches == 2:
            raise ValueError("encoding failed mid-body")
        return self._inner.encode_arrow(batch, out)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_error_while_streaming_is_a_truncated_body_to_the_client(odps_entry, monkeypatch):
    from airflow_provider_odps_tunnel.emulator import egress
    from airflow_provider_odps_tunnel.tunnel import ODPS as OurODPS
    from airflow_provider_odps_tunnel.tunnel.errors import TunnelConnectionError

    query = "SELECT x, repeat('a', 100) AS s FROM (SELECT unnest(range(20000)) AS x) t"
    instance = odps_entry.execute_sql(query)
    monkeypatch.setattr(_FailingEncoder, "real", egress.RecordEncoder)
    monkeypatch.setattr(egress, "RecordEncoder", _FailingEncoder)
    truncated = pytest.raises(urllib3.exceptions.ProtocolError, match="IncompleteRead")
    with truncated, instance.open_reader(tunnel=True) as reader:
        list(reader)
    ours = OurODPS(
        odps_entry.account.access_id,
        odps_entry.account.secret_access_key,
        odps_entry.project,
        endpoint=odps_entry.endpoint,
    )
    # Ours re-opens the body at the first row it has not delivered, then names the cut.
    truncated = pytest.raises(TunnelConnectionError, match="reading the body of GET")
    with truncated, ours.execute_sql(query).open_reader() as reader:
        list(reader)
