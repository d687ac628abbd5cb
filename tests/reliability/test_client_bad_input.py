"""Bad input on the client side is reported with column and row before anything is sent.

No data request (PUT) reaches the emulator for a refused row (counted in its request log),
and the session stays usable: a good write afterwards commits exactly the good rows.
"""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from airflow_provider_odps_tunnel.tunnel import errors
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .conftest import fingerprint, table_fingerprint

GOOD = [[i, f"s{i}"] for i in range(20)]


def _puts(emulator, session_id: str) -> int:
    with open(emulator.request_log_path, encoding="utf-8") as log:
        lines = [json.loads(line) for line in log if line.strip()]
    return sum(1 for r in lines if r["method"] == "PUT" and r.get("session") == session_id)


@pytest.fixture
def strict_table(emulator):
    """``id bigint NOT NULL, s string``, partitioned by ``pt``, with partition ``pt=a``."""
    name = f"t_bad_input_{uuid.uuid4().hex[:12]}"
    schema = TableSchema(
        [Column("id", "bigint", nullable=False), Column("s", "string")], [Column("pt", "string")]
    )
    emulator.catalog.create_table(emulator.project, name, schema)
    emulator.catalog.create_partition(emulator.project, name, "pt=a")
    yield name
    emulator.catalog.drop_table(emulator.project, name)


BAD_ROWS = [
    (["x", "a"], "id", "bigint"),
    ([1, 2], "s", "string"),
    ([None, "a"], "id", "null"),
    ([1.5, "a"], "id", "bigint"),
]


@pytest.mark.parametrize(("bad", "column", "word"), BAD_ROWS, ids=["str", "int", "null", "float"])
def test_bad_value_is_refused_before_sending(tunnel, emulator, strict_table, bad, column, word):
    session = tunnel.create_upload_session(strict_table, partition_spec="pt=a")
    with session.open_record_writer(0) as writer:
        for row in GOOD[:5]:
            writer.write(row)
        with pytest.raises(errors.RecordValidationError) as info:
            writer.write(bad)
        assert info.value.column == column
        assert column in str(info.value) and word in str(info.value).lower()
        assert "row=5" in str(info.value)
        assert _puts(emulator, session.id) == 0
        for row in GOOD[5:]:
            writer.write(row)
    session.commit([0])
    got = table_fingerprint(emulator, strict_table)
    assert got == fingerprint([*r, "a"] for r in GOOD)


def test_unknown_column_in_a_frame_is_refused_before_sending(tunnel, emulator, strict_table):
    session = tunnel.create_upload_session(strict_table, partition_spec="pt=a")
    writer = session.open_arrow_writer()
    with pytest.raises((errors.TunnelError, ValueError, KeyError)) as info:
        writer.write(pd.DataFrame({"id": [1], "s": ["a"], "zz": [3]}))
    assert "zz" in str(info.value)
    assert _puts(emulator, session.id) == 0
    writer.write(pd.DataFrame({"id": [r[0] for r in GOOD], "s": [r[1] for r in GOOD]}))
    writer.close()
    session.commit(writer.get_blocks_written())
    assert table_fingerprint(emulator, strict_table) == fingerprint([*r, "a"] for r in GOOD)


@pytest.mark.parametrize("spec", ["pt", "pt=a/b", "pt=a,pt=b", "=a"])
def test_malformed_partition_spec_is_refused_before_sending(tunnel, emulator, strict_table, spec):
    with open(emulator.request_log_path, encoding="utf-8") as log:
        before = sum(1 for _ in log)
    with pytest.raises(ValueError, match="partition spec"):
        tunnel.create_upload_session(strict_table, partition_spec=spec)
    with open(emulator.request_log_path, encoding="utf-8") as log:
        assert sum(1 for _ in log) == before


def test_unknown_partition_key_is_refused_by_the_server(tunnel, emulator, strict_table):
    with pytest.raises(errors.InvalidPartitionSpec, match="zz=1"):
        tunnel.create_upload_session(strict_table, partition_spec="zz=1")


def test_too_many_values_are_refused(tunnel, emulator, strict_table):
    session = tunnel.create_upload_session(strict_table, partition_spec="pt=a")
    with session.open_record_writer(0) as writer, pytest.raises(errors.RecordValidationError):
        writer.write([1, "a", 3])
