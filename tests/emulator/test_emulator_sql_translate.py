"""ODPS SQL text: lexing, statement parsing and translation to DuckDB (no server)."""

from __future__ import annotations

import pytest

from airflow_provider_odps_tunnel.emulator.sql.errors import SqlError
from airflow_provider_odps_tunnel.emulator.sql.lexer import SqlSyntaxError, split_statements
from airflow_provider_odps_tunnel.emulator.sql.statements import (
    CreateTable,
    Insert,
    SetOption,
    parse_statement,
)
from airflow_provider_odps_tunnel.emulator.sql.translate import translate


def one(text: str):
    (tokens,) = split_statements(text)
    return tokens


def test_translation_of_lexical_differences():
    sql = (
        'SELECT `a`, "it\\\'s" AS s, CAST(b AS STRING), CAST(c AS ARRAY<MAP<STRING,BIGINT>>), '
        "DATETIME '2024-01-01 00:00:00', nvl(x, 1) FROM p.`t` WHERE a == 1 -- comment"
    )
    assert translate(one(sql)) == (
        "SELECT \"a\", 'it''s' AS s, CAST(b AS VARCHAR), "
        "CAST(c AS MAP(VARCHAR, BIGINT)[]), CAST('2024-01-01 00:00:00' AS TIMESTAMP_MS), "
        'coalesce(x, 1) FROM p."t" WHERE a = 1'
    )


def test_statements_split_and_parse():
    statements = split_statements(
        "set a.b=1; /* x; */ INSERT OVERWRITE TABLE t PARTITION (ds='1', h) (x, y) SELECT 1, 2, 'h';"
    )
    assert len(statements) == 2
    assert isinstance(parse_statement(statements[0]), SetOption)
    insert = parse_statement(statements[1])
    assert isinstance(insert, Insert) and insert.overwrite
    assert insert.partition == {"ds": "1", "h": None} and insert.columns == ["x", "y"]
    create = parse_statement(
        one(
            "CREATE TABLE IF NOT EXISTS p.kv (k STRING NOT NULL COMMENT 'key', "
            "v STRUCT<`a b`:INT, c:ARRAY<DECIMAL(10,2)>>, PRIMARY KEY (k)) "
            "CLUSTERED BY (k) INTO 8 BUCKETS TBLPROPERTIES ('transactional'='true') LIFECYCLE 3"
        )
    )
    assert isinstance(create, CreateTable) and create.if_not_exists
    assert create.table.project == "p" and create.primary_key == ["k"] and create.buckets == 8
    assert str(create.schema.get_column("v").type) == "struct<`a b`:int,c:array<decimal(10,2)>>"
    assert create.lifecycle == 3 and not create.schema.get_column("k").nullable


@pytest.mark.parametrize("text", ["SELECT 'open", "SHOW TABLES", "CREATE TABLE t", "DROP TABLE"])
def test_bad_statements(text):
    with pytest.raises(SqlSyntaxError):
        for tokens in split_statements(text):
            parse_statement(tokens)


def test_translation_of_decimal_and_interval_literals():
    sql = (
        "SELECT 1.50BD, 7BD, INTERVAL '1 02:03:04.5' DAY TO SECOND, INTERVAL '-1-2' YEAR TO "
        "MONTH, INTERVAL 3 HOUR, interval_year_month('40-0'), interval_day_time(s) FROM t"
    )
    assert translate(one(sql)) == (
        "SELECT CAST('1.50' AS DECIMAL(3,2)), CAST('7' AS DECIMAL(1,0)), "
        "(to_microseconds(93784500000)), (to_months(-14)), (to_microseconds(10800000000)), "
        "(to_months(480)), odps_interval_day_time(s) FROM t"
    )
    for bad in ("INTERVAL '1-12' YEAR TO MONTH", "INTERVAL '1:2' DAY", "INTERVAL '1' DAY TO YEAR"):
        with pytest.raises(SqlError, match="cannot parse"):
            translate(one(f"SELECT {bad}"))
