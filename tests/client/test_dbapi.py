"""The PEP 249 module ``tunnel.dbapi`` against the emulator: parameters rendered as ODPS
literals, results streamed through the instance tunnel, the error hierarchy."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import SQLTaskError, dbapi
from airflow_provider_odps_tunnel.tunnel.sessions.instance_download import (
    InstanceDownloadSession,
)

_names = itertools.count()


@pytest.fixture
def conn(odps):
    with dbapi.connect(odps) as connection:
        yield connection


@pytest.fixture
def table(emulator, request):
    """A fresh table name, dropped after the test (the test creates it by SQL)."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:50]
    name = f"dbapi_{base}_{next(_names)}"
    yield name
    emulator.catalog.drop_table(emulator.project, name, if_exists=True)


def test_module_globals_and_the_exception_hierarchy():
    assert (dbapi.apilevel, dbapi.threadsafety, dbapi.paramstyle) == ("2.0", 1, "pyformat")
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError"):
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError)
    assert issubclass(dbapi.ProgrammingError, dbapi.DatabaseError)
    assert issubclass(dbapi.NotSupportedError, dbapi.DatabaseError)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    assert dbapi.NUMBER == "decimal(10,2)" and dbapi.NUMBER == "bigint"
    assert dbapi.STRING == "string" and dbapi.STRING != "bigint"
    assert dbapi.DATETIME == "timestamp" and dbapi.BINARY == "binary"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (True, "TRUE"),
        (-7, "-7"),
        (1.5, "1.5"),
        (float("nan"), "CAST('nan' AS DOUBLE)"),
        (float("-inf"), "CAST('-inf' AS DOUBLE)"),
        (Decimal("1E+2"), "100BD"),
        (Decimal("-0.0100"), "-0.0100BD"),
        ("it's a \\ test\n", "'it\\'s a \\\\ test\\n'"),
        (b"\x00\xff", "unhex('00ff')"),
        (dt.date(2024, 1, 2), "DATE '2024-01-02'"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "DATETIME '2024-01-02 03:04:05'"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6), "TIMESTAMP '2024-01-02 03:04:05.000006'"),
        ((1, "a"), "(1, 'a')"),
        ([1, 2], "ARRAY(1, 2)"),
    ],
)
def test_render_literal(value, literal):
    assert dbapi.render_literal(value) == literal


def test_render_operation_placeholders_and_mismatches():
    assert dbapi.render_operation("a = %s AND b LIKE 'x%%'", ["o'k"]) == (
        "a = 'o\\'k' AND b LIKE 'x%'"
    )
    assert dbapi.render_operation("a = %(v)s", {"v": 3}) == "a = 3"
    assert dbapi.render_operation("LIKE 'x%'", None) == "LIKE 'x%'"
    with pytest.raises(dbapi.ProgrammingError, match="do not match"):
        dbapi.render_operation("a = %s", [1, 2])
    with pytest.raises(dbapi.ProgrammingError, match="do not match"):
        dbapi.render_operation("a = %(v)s", {"w": 1})
    with pytest.raises(dbapi.ProgrammingError, match="not a string"):
        dbapi.render_operation("a = %s", "x")
    with pytest.raises(dbapi.ProgrammingError, match="no ODPS SQL literal"):
        dbapi.render_literal(object())
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    with pytest.raises(dbapi.ProgrammingError, match="odps.sql.timezone"):
        dbapi.render_literal(aware)
    shanghai = dbapi.render_literal(aware, ZoneInfo("Asia/Shanghai"))
    assert shanghai == "DATETIME '2024-01-01 20:00:00'"


def test_parameters_round_trip_every_literal_kind(conn, table):
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE {table} (id BIGINT, s STRING, d DECIMAL(10,2), f DOUBLE, ok BOOLEAN,"
        " day DATE, at DATETIME, b BINARY)"
    )
    assert cur.description is None and cur.rowcount == -1 and cur.instance.id
    for fetch in (cur.fetchone, cur.fetchall, cur.fetch_arrow_batches, cur.fetch_arrow_table):
        with pytest.raises(dbapi.ProgrammingError, match="no result set"):
            fetch()
    row = (
        1,
        "quote ' backslash \\ newline \n tab \t percent %",
        Decimal("12.34"),
        2.5,
        True,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 23, 59, 58),
        b"\x00\x01\xfe",
    )
    cur.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row)
    cur.execute(f"INSERT INTO {table} (id, s) VALUES (%(id)s, %(s)s)", {"id": 2, "s": None})
    cur.execute(f"SELECT * FROM {table} WHERE id IN %s ORDER BY id", [(1, 2)])
    assert cur.rowcount == 2
    assert [(d[0], d[1]) for d in cur.description] == [
        ("id", "bigint"),
        ("s", "string"),
        ("d", "decimal(10,2)"),
        ("f", "double"),
        ("ok", "boolean"),
        ("day", "date"),
        ("at", "datetime"),
        ("b", "binary"),
    ]
    assert cur.description[2][4:6] == (10, 2)
    first, second = cur.fetchall()
    assert first == row
    assert second == (2, None, None, None, None, None, None, None)
    assert cur.fetchone() is None and cur.fetchall() == []


def test_results_are_streamed_by_row_ranges(conn, table, odps, monkeypatch):
    odps.execute_sql(f"CREATE TABLE {table} (id BIGINT, label STRING)")
    odps.execute_sql(
        f"INSERT INTO {table} SELECT range AS id, concat('row-', range) AS label"
        " FROM range(0, 2500)"
    )
    opened: list[tuple[str, int, int]] = []
    for kind in ("record", "arrow"):
        real = getattr(InstanceDownloadSession, f"open_{kind}_reader")

        def spy(session, start, count, *args, _real=real, _kind=kind, **kwargs):
            opened.append((_kind, start, count))
            return _real(session, start, count, *args, **kwargs)

        monkeypatch.setattr(InstanceDownloadSession, f"open_{kind}_reader", spy)

    cur = conn.cursor()
    cur.execute(f"SELECT id, label FROM {table} ORDER BY id")
    assert cur.rowcount == 2500 and opened == []  # nothing read before the first fetch
    assert cur.fetchone() == (0, "row-0")
    cur.arraysize = 3
    assert [r[0] for r in cur.fetchmany()] == [1, 2, 3]
    assert opened == [("record", 0, 2500)]  # one reader serves every fetch

    batches = list(cur.fetch_arrow_batches())
    assert opened[-1] == ("arrow", 4, 2496)
    table_rest = pa.Table.from_batches(batches)
    assert table_rest.num_rows == 2496
    assert table_rest.column("id").to_pylist()[:2] == [4, 5]
    assert cur.fetchone() is None
    assert cur.fetch_arrow_table().num_rows == 0

    cur.execute(f"SELECT id FROM {table} WHERE id < 5 ORDER BY id")
    arrow = cur.fetch_arrow_table()
    assert arrow.column_names == ["id"] and arrow.column("id").to_pylist() == [0, 1, 2, 3, 4]
    cur.execute(f"SELECT id, label FROM {table} WHERE id < 0")
    empty = cur.fetch_arrow_table()
    assert empty.num_rows == 0 and empty.column_names == ["id", "label"]
    cur.execute(f"SELECT id FROM {table} WHERE id < 3 ORDER BY id")
    assert list(cur) == [(0,), (1,), (2,)]


def test_executemany_runs_one_statement_per_parameter_set(conn, table):
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id BIGINT, name STRING)")
    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(1, "a"), (2, "b")])
    assert cur.rowcount == -1
    cur.execute(f"SELECT name FROM {table} ORDER BY id")
    assert cur.fetchall() == [("a",), ("b",)]


def test_errors_are_pep_249_errors_naming_the_instance(conn):
    cur = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError, match="Table not found") as info:
        cur.execute("SELECT * FROM no_such_table_dbapi")
    assert info.value.instance_id
    assert isinstance(info.value.__cause__, SQLTaskError)
    with pytest.raises(dbapi.ProgrammingError, match="empty"):
        cur.execute("   ")


def test_no_transactions_and_closed_objects(odps):
    conn = dbapi.connect(odps)
    assert conn.autocommit is True
    conn.autocommit = True
    with pytest.raises(dbapi.NotSupportedError):
        conn.autocommit = False
    conn.commit()
    with pytest.raises(dbapi.NotSupportedError, match="no transactions"):
        conn.rollback()
    cur = conn.cursor()
    cur.close()
    with pytest.raises(dbapi.InterfaceError, match="cursor is closed"):
        cur.execute("SELECT 1")
    conn.close()
    with pytest.raises(dbapi.InterfaceError, match="connection is closed"):
        conn.cursor()
    # The caller's entry object stays usable: the connection did not build it.
    assert odps.execute_sql("SELECT 1").is_successful()
    with pytest.raises(dbapi.InterfaceError, match="not both"):
        dbapi.connect(odps, project="other")


def test_connect_from_arguments_and_hints(emulator):
    with dbapi.connect(
        access_id=emulator.access_id,
        secret_access_key=emulator.secret_access_key,
        project=emulator.project,
        endpoint=emulator.endpoint,
        hints={"odps.sql.timezone": "Asia/Shanghai"},
    ) as conn:
        cur = conn.cursor()
        aware = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
        cur.execute("SELECT hour(%s) AS h", [aware])
        assert cur.fetchone() == (8,)


def test_a_limited_result_is_refused_unless_allowed(odps, emulator, table):
    odps.execute_sql(f"CREATE TABLE {table} (id BIGINT)")
    odps.execute_sql(f"INSERT INTO {table} VALUES (1), (2)")
    refuse = {"status": 403, "code": "NoPermission", "message": "unlimited download denied"}
    emulator.faults.add(method="POST", session_kind="instance", **refuse)
    try:
        cur = dbapi.connect(odps).cursor()
        with pytest.raises(dbapi.OperationalError, match="10,000-row fallback"):
            cur.execute(f"SELECT id FROM {table}")
        emulator.faults.add(method="POST", session_kind="instance", **refuse)
        cur = dbapi.connect(odps, allow_limited_results=True).cursor()
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        assert cur.fetchall() == [(1,), (2,)]
    finally:
        emulator.faults.clear()
