"""Stream uploads, upserts and previews against the emulator."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import Upsert, errors

from .test_table_download import SCHEMA, rows
from .test_table_upload import table_rows


def test_stream_upload_is_visible_and_reattachable(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    session = tunnel.create_stream_upload_session(
        table, partition_spec="pt=s", create_partition=True, slot_num=2
    )
    assert session.id and session.slots
    with session.open_record_writer() as writer:
        for row in rows(100):
            writer.write(row)
        writer.flush()
        for row in rows(50, 100):
            writer.write(row)
    assert table_rows(emulator, table, "pt=s") == rows(150)
    again = tunnel.create_stream_upload_session(table, partition_spec="pt=s", upload_id=session.id)
    assert again.id == session.id and again.schema == session.schema
    with again.open_record_writer(compress=True) as writer:
        writer.write(rows(1, 150)[0])
    again.abort()
    assert len(table_rows(emulator, table, "pt=s")) == 151


@pytest.fixture
def pk_table(emulator_table):
    return emulator_table("k bigint, name string, v double", primary_key=["k"], buckets=4)


def test_upsert_with_deletes_on_several_buckets(tunnel, emulator, pk_table):
    session = tunnel.create_upsert_session(pk_table)
    assert session.hash_keys == ["k"] and len(session.buckets) == 4
    stream = session.open_upsert_stream()
    assert isinstance(stream, Upsert)
    for k in range(40):
        stream.upsert(session.new_record([k, f"v{k}", k * 1.0]))
    stream.flush()
    for k in range(0, 40, 2):
        stream.upsert([k, f"w{k}", -1.0])
    for k in range(0, 40, 5):
        stream.delete(session.new_record([k, None, None]))
    stream.close()
    session.commit()
    assert session.status == session.Status.Committed
    expected = {
        k: ([k, f"w{k}", -1.0] if k % 2 == 0 else [k, f"v{k}", k * 1.0]) for k in range(40) if k % 5
    }
    assert table_rows(emulator, pk_table) == [expected[k] for k in sorted(expected)]


def test_upsert_reattach_compress_and_abort(tunnel, emulator, pk_table):
    session = tunnel.create_upsert_session(pk_table, compress_algo="zstd", lifecycle=2)
    other = tunnel.create_upsert_session(pk_table, upsert_id=session.id)
    assert other.id == session.id and other.buckets == session.buckets
    with other.open_upsert_stream(compress=True, slot_buffer_size=64) as stream:
        for k in range(20):
            stream.upsert([k, "x", 0.5])
        stream.flush(flush_all=False)
        assert stream.n_bytes <= 64 * len(other.buckets)
    other.commit()
    other.close()
    assert [r[0] for r in table_rows(emulator, pk_table)] == list(range(20))
    doomed = tunnel.create_upsert_session(pk_table)
    with doomed.open_upsert_stream() as stream:
        stream.upsert([99, "gone", 1.0])
    doomed.abort()
    assert 99 not in [r[0] for r in table_rows(emulator, pk_table)]


def test_upsert_on_a_table_without_key_is_refused(tunnel, emulator_table):
    table = emulator_table("a bigint")
    with pytest.raises(errors.ServerError):
        tunnel.create_upsert_session(table)


def test_preview_arrow_and_records(tunnel, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    session = tunnel.create_upload_session(table, partition_spec="pt=p", create_partition=True)
    with session.open_record_writer(0) as writer:
        for row in rows(30):
            writer.write(row)
    session.commit([0])
    reader = tunnel.open_preview_reader(table, partition_spec="pt=p", limit=10)
    got = reader.read()
    assert isinstance(got, pa.Table) and got.num_rows == 10
    assert got.column("id").to_pylist() == list(range(10))
    subset = tunnel.open_preview_reader(table, columns=["id", "score"], limit=5, read_all=True)
    assert subset.column_names == ["id", "score"] and subset.num_rows == 5
    records = list(tunnel.open_preview_reader(table, limit=3, arrow=False))
    assert [r["id"] for r in records] == [0, 1, 2] and records[0]["name"] == rows(1)[0][1]
    with tunnel.open_preview_reader(table, limit=2, arrow=False) as reader:
        assert reader.read()["id"] == 0 and reader.read()["id"] == 1 and reader.read() is None
    batches = list(tunnel.open_preview_reader(table, limit=4))
    assert sum(b.num_rows for b in batches) == 4
    empty = emulator_table("a bigint")
    assert tunnel.open_preview_reader(empty, read_all=True).num_rows == 0
