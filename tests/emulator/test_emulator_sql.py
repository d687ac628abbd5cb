"""The REST and SQL slice, driven by pyodps unchanged: tables, partitions, SQL, results."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pyarrow as pa
import pytest
from odps import errors
from odps.models import TableSchema
from odps.types import Column, Partition

_names = itertools.count()


def unique(base: str) -> str:
    return f"{base}_{next(_names)}"


def rows_of(instance, **kw) -> list[list]:
    with instance.open_reader(tunnel=True, **kw) as reader:
        return [list(r.values) for r in reader]


def test_create_tables_with_create_table(odps_entry, emulator):
    name = unique("parted")
    schema = TableSchema(
        columns=[Column("id", "bigint", comment="the id"), Column("amount", "decimal(18,4)")],
        partitions=[Partition("ds", "string"), Partition("region", "string")],
    )
    table = odps_entry.create_table(name, schema, if_not_exists=True, lifecycle=7)
    assert odps_entry.exist_table(name) and not odps_entry.exist_table(unique("missing"))
    again = odps_entry.get_table(name)
    assert [c.name for c in again.table_schema.simple_columns] == ["id", "amount"]
    assert [p.name for p in again.table_schema.partitions] == ["ds", "region"]
    assert again.lifecycle == 7 and not again.is_transactional
    odps_entry.create_table(name, schema, if_not_exists=True)  # no error: it exists

    kv = unique("kv")
    pk_schema = TableSchema(columns=[Column("k", "string"), Column("v", "bigint")])
    odps_entry.create_table(
        kv,
        pk_schema,
        transactional=True,
        primary_key="k",
        table_properties={"write.bucket.num": "4"},
    )
    pk_table = odps_entry.get_table(kv)
    assert pk_table.is_transactional and pk_table.primary_key == ["k"]
    assert emulator.catalog.get_table(emulator.project, kv).buckets == 4
    assert table.name in {t.name for t in odps_entry.list_tables()}
    odps_entry.delete_table(name)
    odps_entry.delete_table(kv, if_exists=True)
    assert not odps_entry.exist_table(name)


def test_sql_ddl_partitions_listed_and_dropped(odps_entry, emulator):
    name = unique("ddl")
    odps_entry.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {name} (`a` BIGINT, b STRING COMMENT 'text') "
        "PARTITIONED BY (ds STRING, hh STRING) LIFECYCLE 3"
    )
    odps_entry.execute_sql(
        f"ALTER TABLE {name} ADD IF NOT EXISTS PARTITION (ds='20240101', hh='01') "
        "PARTITION (ds='20240102', hh='02')"
    )
    table = odps_entry.get_table(name)
    table.create_partition("ds=20240103,hh=03")
    assert [str(p) for p in table.partitions] == [
        "ds='20240101',hh='01'",
        "ds='20240102',hh='02'",
        "ds='20240103',hh='03'",
    ]
    assert [str(p) for p in table.iterate_partitions("ds=20240102")] == ["ds='20240102',hh='02'"]
    assert table.exist_partition("ds=20240101,hh=01")
    table.delete_partition("ds=20240101,hh=01")
    odps_entry.execute_sql(f"ALTER TABLE {name} DROP IF EXISTS PARTITION (ds='nope', hh='x')")
    assert not table.exist_partition("ds=20240101,hh=01")
    assert len(list(table.partitions)) == 2

    kv = unique("kv_ddl")
    odps_entry.execute_sql(
        f"CREATE TABLE {kv} (k STRING NOT NULL, v BIGINT, PRIMARY KEY (k)) "
        "TBLPROPERTIES ('transactional'='true', 'write.bucket.num'='2')"
    )
    info = emulator.catalog.get_table(emulator.project, kv)
    assert info.primary_key == ["k"] and info.buckets == 2
    odps_entry.execute_sql(f"DROP TABLE {name}; DROP TABLE IF EXISTS {kv}")
    assert not odps_entry.exist_table(kv)


def test_insert_select_over_10000_rows_through_the_instance_tunnel(odps_entry):
    name = unique("big")
    odps_entry.execute_sql(
        f"CREATE TABLE {name} (id BIGINT, label STRING, at DATETIME, ts TIMESTAMP) "
        "PARTITIONED BY (ds STRING)"
    )
    odps_entry.execute_sql(
        f"INSERT OVERWRITE TABLE {name} PARTITION (ds='20240101') "
        "SELECT x, concat('row-', CAST(x AS STRING)), "
        "CAST('2024-01-01 08:00:00' AS DATETIME), "
        "CAST('2024-01-01 08:00:00.123456789' AS TIMESTAMP) "
        "FROM (SELECT unnest(range(12345)) AS x) src"
    )
    instance = odps_entry.execute_sql(f"SELECT * FROM {name} WHERE ds = '20240101' ORDER BY id")
    records = rows_of(instance)
    assert len(records) == 12345
    assert records[12344][:2] == [12344, "row-12344"] and records[0][4] == "20240101"
    with instance.open_reader(tunnel=True, arrow=True) as reader:
        table = reader.read_all()
    assert table.num_rows == 12345
    assert table.schema.field("ts").type == pa.timestamp("ns")  # sent as struct<sec,nano>
    first = table.slice(0, 1).to_pylist()[0]
    assert first["ts"].nanosecond == 789 and first["ts"].microsecond == 123456
    # 08:00 in the project's zone (Asia/Shanghai, the service's default) read in UTC
    assert first["at"] == dt.datetime(2024, 1, 1, 0, 0)
    with instance.open_reader(tunnel=True, reopen=True, limit=True) as reader:
        assert reader.count == 10000
    with instance.open_reader(tunnel=True, reopen=True, columns=["label"]) as reader:
        assert [r[0] for r in reader[5:7]] == ["row-5", "row-6"]


def test_upload_through_the_tunnel_then_aggregate_with_sql(odps_entry, tunnel, emulator_table):
    table = emulator_table("region string, amount decimal(18,2)", partitions="ds string")
    for ds in ("20240101", "20240102"):
        session = tunnel.create_upload_session(
            table, partition_spec=f"ds={ds}", create_partition=True
        )
        with session.open_record_writer(0) as writer:
            for i in range(100):
                writer.write(session.new_record(["eu" if i % 2 else "us", Decimal("1.25")]))
        session.commit([0])
    instance = odps_entry.execute_sql(
        f"SELECT ds, region, count(*) AS n, sum(amount) AS total FROM {table} "
        "WHERE ds >= '20240102' GROUP BY ds, region ORDER BY region"
    )
    assert rows_of(instance) == [
        ["20240102", "eu", 50, Decimal("62.50")],
        ["20240102", "us", 50, Decimal("62.50")],
    ]
    joined = odps_entry.execute_sql(
        f"SELECT a.ds, count(*) FROM {table} a JOIN {table} b "
        "ON a.ds = b.ds AND a.region = b.region WHERE a.region = 'eu' GROUP BY a.ds ORDER BY a.ds"
    )
    assert rows_of(joined) == [["20240101", 2500], ["20240102", 2500]]


def test_sql_writes_are_read_by_the_tunnel(odps_entry, tunnel, emulator_table):
    table = emulator_table("id bigint, name string, at datetime", partitions="ds string")
    odps_entry.execute_sql(
        f"INSERT INTO {table} PARTITION (ds) VALUES "
        "(1, 'a', DATETIME '2024-05-01 10:00:00', 'd1'), (2, \"b\", NULL, 'd2'), "
        "(3, 'it\\'s', NULL, 'd2')"
    )
    session = tunnel.create_download_session(table, partition_spec="ds=d2")
    with session.open_record_reader(0, session.count) as reader:
        assert sorted(list(r.values)[:3] for r in reader) == [[2, "b", None], [3, "it's", None]]
    session = tunnel.create_download_session(table, partition_spec="ds=d1")
    with session.open_record_reader(0, 1) as reader:
        # 10:00 in the project's zone (Asia/Shanghai) is 02:00 for this client (UTC)
        assert list(next(iter(reader)).values)[:3] == [1, "a", dt.datetime(2024, 5, 1, 2)]
    odps_entry.execute_sql(f"TRUNCATE TABLE {table} PARTITION (ds='d2')")
    assert tunnel.create_download_session(table, partition_spec="ds=d2").count == 0


def test_primary_key_table_insert_replaces_rows_by_key(odps_entry, emulator_table):
    table = emulator_table("k string, v bigint", primary_key=["k"], buckets=2)
    odps_entry.execute_sql(f"INSERT INTO {table} VALUES ('a', 1), ('b', 2), ('a', 3)")
    odps_entry.execute_sql(f"INSERT INTO {table} (v, k) VALUES (20, 'b')")
    assert rows_of(odps_entry.execute_sql(f"SELECT * FROM {table} ORDER BY k")) == [
        ["a", 3],
        ["b", 20],
    ]


def test_ctas_results_and_errors(odps_entry):
    source = unique("src")
    copy = unique("copy")
    odps_entry.execute_sql(
        f"CREATE TABLE {source} AS SELECT CAST(x AS BIGINT) AS id, CAST(x * 2 AS DOUBLE) AS d "
        "FROM (SELECT unnest(range(5)) AS x) s"
    )
    odps_entry.execute_sql(f"CREATE TABLE {copy} LIKE {source}")
    odps_entry.execute_sql(
        f"SET odps.sql.allow.fullscan=true; INSERT INTO {copy} SELECT * FROM {source}"
    )
    instance = odps_entry.execute_sql(f"SELECT count(*), max(d), nvl(NULL, 'x') FROM {copy}")
    assert rows_of(instance) == [[5, 8.0, "x"]]
    with instance.open_reader(tunnel=False) as reader:  # the CSV task result
        assert [list(r.values) for r in reader] == [[5, 8.0, "x"]]
    with pytest.raises(errors.NoSuchTable, match="cannot be resolved"):
        odps_entry.execute_sql(f"SELECT * FROM {unique('missing')}")
    with pytest.raises(errors.ParseError):
        odps_entry.execute_sql("SELEC 1")
    with pytest.raises(errors.ODPSError, match="already exists"):
        odps_entry.execute_sql(f"CREATE TABLE {copy} (a BIGINT)")
    with pytest.raises(errors.ODPSError, match="needs 2"):
        odps_entry.execute_sql(f"INSERT INTO {copy} SELECT 1")
    ddl = odps_entry.execute_sql(f"DROP TABLE {copy}")
    with pytest.raises(errors.ODPSError):
        ddl.open_reader(tunnel=True)  # a DDL instance has no result to download
    assert odps_entry.get_table(source).head(2)[1].values == [1, 2.0]
