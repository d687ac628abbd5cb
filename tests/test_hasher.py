"""Upsert bucket hashing: the service's published test values and pyodps's compiled hasher."""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.tunnel.codec.hasher import RowHasher, bucket_of, hash_value

D = decimal.Decimal
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")  # the zone pyodps's vectors were made in

VECTORS = [
    # type, value, default hasher, legacy hasher (None: no published value)
    ("bigint", 145680, 1063204611, 145680),
    ("float", 134.562, -1512465477, 1124503519),
    ("double", 15672.56271, 1254569207, 1177487321),
    ("boolean", True, 388737479, None),
    ("boolean", False, None, -978963218),
    ("string", "hello", -1259046373, 99162322),
    ("date", dt.date(2022, 12, 5), 903574500, 1670198400),
    ("datetime", dt.datetime(2022, 6, 11, 22, 33, 11), -2026178719, None),
    ("timestamp", pd.Timestamp("2023-07-05 11:24:15.145673214"), -31960127, None),
    ("interval_day_time", pd.Timedelta(seconds=100002, nanoseconds=2000001), -1088782317, None),
    ("decimal(4,2)", D(0), 0, None),
    ("decimal(4,2)", D(-1), 1405574141, 99),
    ("decimal(18,2)", D("12.34"), -904458774, 1234),
    ("decimal(18,2)", D("-9.8e11"), -1816428053, None),
    ("decimal(38,18)", D("6.4"), -1846789132, 978411031),
]


@pytest.mark.parametrize(("typ", "value", "default", "legacy"), VECTORS)
def test_published_hash_values(typ, value, default, legacy):
    if default is not None:
        assert hash_value(value, typ, "default", SHANGHAI) == default
    if legacy is not None:
        assert hash_value(value, typ, "legacy", SHANGHAI) == legacy


def test_row_hash_is_non_negative_and_skips_nulls():
    hasher = RowHasher(["bigint", "string"], 7)
    assert hasher.row_hash([1, None]) == hasher.row_hash([1, None])
    for key in range(-500, 500):
        assert 0 <= hasher.bucket([key, f"k{key}"]) < 7
        assert hasher.row_hash([key, "x"]) >= 0


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20),
    st.integers(min_value=1, max_value=64),
)
def test_buckets_agree_with_pyodps_compiled_hasher(key, text, nbuckets):
    from odps import types as odps_types
    from odps.tunnel.hasher_c import RecordHasher

    schema = odps_types.OdpsSchema.from_lists(["k", "s"], ["bigint", "string"])
    theirs = RecordHasher(schema, "default", ["k", "s"]).hash_list([key, text])
    assert bucket_of([key, text], ["bigint", "string"], nbuckets) == theirs % nbuckets
