"""Types, schemas, partition specs and records: parsing, printing and validation."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.tunnel import (
    Column,
    PartitionSpec,
    Record,
    RecordValidationError,
    TableSchema,
    parse_type,
)
from airflow_provider_odps_tunnel.tunnel.codec import types as t

PRIMITIVE_NAMES = [
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "float",
    "double",
    "string",
    "binary",
    "boolean",
    "datetime",
    "date",
    "timestamp",
    "timestamp_ntz",
    "interval_day_time",
    "interval_year_month",
    "json",
]

primitive = (
    st.sampled_from(PRIMITIVE_NAMES).map(parse_type)
    | st.builds(t.Decimal, st.integers(1, 38), st.integers(0, 0))
    | st.builds(t.Char, st.integers(1, 255))
    | st.builds(t.Varchar, st.integers(1, 65535))
)
field_name = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True) | st.just("odd name")


def nested(children):
    return (
        st.builds(t.Array, children)
        | st.builds(t.Map, primitive, children)
        | st.builds(
            t.Struct,
            st.lists(
                st.tuples(field_name, children), min_size=1, max_size=4, unique_by=lambda f: f[0]
            ),
        )
    )


any_type = st.recursive(primitive, nested, max_leaves=6)


@given(any_type)
def test_type_strings_round_trip(typ):
    assert parse_type(str(typ)) == typ
    # Type names are case-insensitive; struct field names keep their case.
    assert parse_type(str(typ).upper()).name.lower() == typ.name.lower()


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("BIGINT", "bigint"),
        ("integer", "int"),
        ("decimal", "decimal"),
        ("decimal(10)", "decimal(10,0)"),
        ("Decimal( 18 , 4 )", "decimal(18,4)"),
        ("map< string , array<int> >", "map<string,array<int>>"),
        ("struct<`a b`:int, c:struct<d:date>>", "struct<`a b`:int,c:struct<d:date>>"),
        ("vector<float,4>", "vector<float,4>"),
        ("vector(double, 3)", "vector<double,3>"),
        ("char(5)", "char(5)"),
    ],
)
def test_type_strings(text, printed):
    assert str(parse_type(text)) == printed


@pytest.mark.parametrize(
    "bad",
    ["", "bigint2", "array<>", "map<string>", "decimal(40,2)", "char", "struct<a int>", "x y"],
)
def test_bad_type_strings_say_where(bad):
    with pytest.raises(ValueError, match="invalid"):
        parse_type(bad)


def test_schema_json_round_trip_and_pyodps_keys():
    schema = TableSchema(
        [Column("id", "bigint", "key", nullable=False), Column("tags", "array<string>")],
        [Column("pt", "string")],
    )
    doc = schema.to_json()
    assert doc["columns"][0] == {
        "name": "id",
        "type": "bigint",
        "comment": "key",
        "nullable": False,
        "isNullable": False,
        "column_id": "1",
    }
    assert TableSchema.from_json(schema.to_json_string()) == schema
    assert schema.names == ["id", "tags", "pt"] and schema.partition_names == ["pt"]
    assert schema.is_partition("PT") and schema.get_column_index("Tags") == 1
    with pytest.raises(KeyError, match="nope"):
        schema.get_column("nope")


def test_from_lists():
    schema = TableSchema.from_lists(["a", "b"], ["bigint", "string"], ["ds"], ["string"])
    assert [str(c.type) for c in schema.columns] == ["bigint", "string", "string"]
    with pytest.raises(ValueError):
        TableSchema.from_lists(["a"], ["bigint", "string"])
    with pytest.raises(ValueError, match="duplicate"):
        TableSchema.from_lists(["a", "A"], ["bigint", "string"])


def test_partition_spec_parsing_and_rendering():
    spec = PartitionSpec("pt='20240101', region=eu")
    assert spec.keys() == ["pt", "region"] and spec["region"] == "eu"
    assert spec.to_param() == "pt=20240101,region=eu"
    assert str(spec) == "pt='20240101',region='eu'"
    assert spec == "pt=20240101/region=eu" == PartitionSpec({"pt": "20240101", "region": "eu"})
    assert PartitionSpec(None).is_empty and PartitionSpec("").is_empty


@pytest.mark.parametrize(
    "bad",
    ["pt", "pt=", "=1", "pt=1,pt=2", "pt=a=b", "1pt=3", "pt=../x", "pt=a\x00b", "pt=" + "x" * 300],
)
def test_bad_partition_specs(bad):
    with pytest.raises(ValueError, match="invalid partition spec"):
        PartitionSpec(bad)


def test_record_access_and_validation():
    schema = TableSchema.from_lists(
        ["id", "score", "name", "ts", "amount", "tags"],
        ["bigint", "double", "varchar(3)", "datetime", "decimal(5,2)", "array<int>"],
        ["pt"],
    )
    rec = Record(schema=schema, values=[1, 2, "abc", dt.datetime(2024, 1, 1), "1.5", [1, None]])
    assert rec["id"] == rec.id == rec[0] == 1
    assert rec.score == 2.0 and isinstance(rec.score, float)
    assert rec.amount == decimal.Decimal("1.5")
    assert rec.values[-1] is None and len(rec) == 7
    assert list(rec)[0] == ("id", 1)
    rec["pt"] = "x"
    assert rec[6] == "x"

    cases = [
        ("id", 2**63, "out of range"),
        ("id", "1", "expected an integer"),
        ("name", "abcd", "more than 3"),
        ("name", b"\xff", "invalid UTF-8"),
        ("amount", decimal.Decimal("1234.5"), "integer digits"),
        ("tags", [1, "x"], "element 1"),
        ("ts", "2024-01-01", "expected datetime"),
    ]
    for column, value, message in cases:
        with pytest.raises(RecordValidationError, match=message) as info:
            rec[column] = value
        assert info.value.column == column
        assert str(schema.get_column(column).type) in str(info.value)
    with pytest.raises(RecordValidationError, match="expected 7 values"):
        Record(schema=schema, values=[1, 2])
    with pytest.raises(KeyError, match="no column named 'zzz'"):
        rec["zzz"]


def test_json_values_reject_bare_numbers():
    assert t.json.validate({"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="not a number"):
        t.json.validate(3)
