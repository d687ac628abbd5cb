"""Hostile input to the emulator: malformed bodies and parameters, fuzzed with Hypothesis.

Every answer is a 4xx with the service's JSON error body (Code, Message, RequestId), never a
5xx, never a hang (each request has a timeout), and the table is unchanged afterwards.
"""

from __future__ import annotations

from urllib.parse import quote

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from signed_requests import signed

from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    ArrowFrameEncoder,
    serialize_batch,
)
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column

from .conftest import table_fingerprint
from .helpers import (
    FUZZ_CASES,
    assert_odps_error,
    fuzz_report,
    fuzz_settings,
    mutations,
)

MODULE = "hostile input"
FUZZ = fuzz_settings(max_examples=40)


def count(label: str) -> None:
    """Count an example in the shared, printed fuzz count."""
    FUZZ_CASES[f"{MODULE}: {label}"] += 1


COLUMNS = [Column("a", "bigint"), Column("s", "string")]
GOOD_ROWS = [[i, f"value-{i}"] for i in range(50)]
GOOD_RECORDS = encode_rows(COLUMNS, GOOD_ROWS)


def _arrow_body() -> bytes:
    batch = pa.record_batch(
        [pa.array([r[0] for r in GOOD_ROWS], pa.int64()), pa.array([r[1] for r in GOOD_ROWS])],
        names=["a", "s"],
    )
    encoder = ArrowFrameEncoder(chunk_size=256)
    pieces = encoder.feed(serialize_batch(batch))
    return b"".join(bytes(p) for p in pieces) + encoder.finish()


GOOD_ARROW = _arrow_body()


print_cases = fuzz_report(MODULE)


@pytest.fixture
def target(emulator, emulator_table, tunnel):
    """A table holding 3 committed rows, its path, an open upload session and a download."""
    table = emulator_table("a bigint, s string", partitions="pt string")
    session = tunnel.create_upload_session(table, partition_spec="pt=x", create_partition=True)
    with session.open_record_writer(0) as writer:
        for i in range(3):
            writer.write([i, "seed"])
    session.commit([0])
    upload = tunnel.create_upload_session(table, partition_spec="pt=x")
    download = tunnel.create_download_session(table, partition_spec="pt=x")
    path = f"/projects/{emulator.project}/tables/{table}"
    return table, path, upload.id, download.id, table_fingerprint(emulator, table)


@FUZZ
@given(body=mutations(GOOD_RECORDS))
def test_malformed_record_blocks(emulator, target, body):
    count("record bodies")
    table, path, upload_id, _, before = target
    params = {"uploadid": upload_id, "blockid": "0", "partition": "pt=x"}
    resp = signed(emulator, "PUT", path, params, body=body)
    if resp.status_code != 200:  # a flipped byte may land where any value is valid
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


@FUZZ
@given(body=mutations(GOOD_ARROW))
def test_malformed_arrow_blocks(emulator, target, body):
    count("arrow bodies")
    table, path, upload_id, _, before = target
    params = {"uploadid": upload_id, "blockid": "0", "partition": "pt=x", "arrow": ""}
    resp = signed(emulator, "PUT", path, params, body=body)
    if resp.status_code != 200:
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


def test_invalid_utf8_in_a_string_is_refused(emulator, target):
    table, path, upload_id, _, before = target
    # Encoded as BINARY (same wire form, valid CRC), sent to the STRING column.
    body = encode_rows([Column("a", "bigint"), Column("s", "binary")], [[1, b"valu\xff\xfe1"]])
    resp = signed(emulator, "PUT", path, {"uploadid": upload_id, "blockid": "0"}, body=body)
    error = assert_odps_error(resp, 400)
    assert error["Code"] == "MalformedDataStream" and "utf-8" in error["Message"].lower()
    assert table_fingerprint(emulator, table) == before


@FUZZ
@given(
    rowrange=st.one_of(
        st.text(max_size=40),
        st.tuples(st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70)).map(
            lambda t: f"({t[0]},{t[1]})"
        ),
    )
)
def test_bad_row_ranges(emulator, target, rowrange):
    count("row ranges")
    table, path, _, download_id, before = target
    params = {"downloadid": download_id, "data": "", "rowrange": rowrange, "partition": "pt=x"}
    resp = signed(emulator, "GET", path, params)
    if resp.status_code != 200:  # e.g. "(0,1)" is a valid range
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


@FUZZ
@given(block=st.one_of(st.text(max_size=30), st.integers(-(2**70), 2**70).map(str)))
def test_bad_block_ids(emulator, target, block):
    count("block ids")
    table, path, upload_id, _, before = target
    params = {"uploadid": upload_id, "blockid": block, "partition": "pt=x"}
    resp = signed(emulator, "PUT", path, params, body=GOOD_RECORDS)
    if resp.status_code != 200:  # 0..19999 are valid
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


HOSTILE_NAMES = ["..", "../etc", "..%2F..%2Fetc", "a/b", "a\x00b", "x" * 129, "%00", "\\..\\x"]


@FUZZ
@given(name=st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(min_size=1, max_size=60)))
def test_hostile_table_names(emulator, target, name):
    count("table names")
    table, _, _, _, before = target
    path = f"/projects/{emulator.project}/tables/{quote(name, safe='')}"
    for kind in ("uploads", "downloads"):
        resp = signed(emulator, "POST", path, {kind: ""})
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


@FUZZ
@given(
    spec=st.one_of(
        st.sampled_from(["pt=../x", "pt=a/b", "pt=a\x00b", "pt=" + "x" * 300, "pt", "=x", "q=1"]),
        st.text(max_size=60).map(lambda v: f"pt={v}"),
    )
)
def test_hostile_partition_specs(emulator, target, spec):
    count("partition specs")
    table, path, _, _, before = target
    resp = signed(
        emulator, "POST", path, {"uploads": "", "partition": spec, "create_partition": ""}
    )
    if resp.status_code == 200:  # an ordinary value: the session is only created
        assert "/" not in spec and "\x00" not in spec and ".." not in spec
    else:
        assert_odps_error(resp)
    assert table_fingerprint(emulator, table) == before


def test_oversized_field_is_rejected_with_the_limit(emulator, target):
    table, path, upload_id, _, before = target
    limit = 8 * 1024 * 1024
    body = encode_rows(COLUMNS, [[1, "x" * (limit + 1)]])
    resp = signed(emulator, "PUT", path, {"uploadid": upload_id, "blockid": "1"}, body=body)
    error = assert_odps_error(resp, 400)
    assert str(limit) in error["Message"]
    assert table_fingerprint(emulator, table) == before


def test_overlong_table_name_is_a_4xx(emulator, target):
    table, _, _, _, before = target
    path = f"/projects/{emulator.project}/tables/{'x' * 300}"
    try:
        assert_odps_error(signed(emulator, "POST", path, {"uploads": ""}))
    finally:
        assert table_fingerprint(emulator, table) == before
