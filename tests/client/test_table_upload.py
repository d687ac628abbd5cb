"""Upload sessions against the emulator: writers, blocks, threads, commit checks, errors."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, errors
from airflow_provider_odps_tunnel.tunnel.sessions.upload import MIN_BLOCK_SIZE, WriterMemory

from .test_table_download import ALGOS, SCHEMA, rows

MIB = 1 << 20


def table_rows(emulator, table, partition=None) -> list[list]:
    data = emulator.catalog.read_table(emulator.project, table, partition)
    names = [c for c in data.column_names if c not in ("pt",)]
    return sorted([list(r.values()) for r in data.select(names).to_pylist()], key=lambda r: r[0])


def test_streamed_and_buffered_writers(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    assert session.status == session.Status.Normal and session.blocks == []
    with session.open_record_writer(0) as writer:
        for row in rows(10):
            writer.write(session.new_record(row))
    with session.open_record_writer() as buffered:
        buffered.write(
            pa.Table.from_pylist(
                [dict(zip(session.schema.names, r, strict=True)) for r in rows(10, 10)]
            )
        )
    assert buffered.get_blocks_written() == [1]  # the shared generator skips block 0
    session.commit([0, 1])
    assert session.status == session.Status.Closed
    assert table_rows(emulator, table) == rows(20)


def test_buffered_writer_makes_many_blocks(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(buffer_size=2048) as writer:
        for row in rows(1000):
            writer.write(row)
    blocks = writer.get_blocks_written()
    assert len(blocks) > 10 and len(set(blocks)) == len(blocks)
    assert session.get_block_list() == sorted(blocks)
    session.commit(blocks)
    assert table_rows(emulator, table) == rows(1000)


def test_four_threads_write_one_session(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    written: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        with session.open_record_writer(buffer_size=4096) as writer:
            for row in rows(250, k * 250):
                writer.write(row)
        with lock:
            written.extend(writer.get_blocks_written())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) == len(set(written)) > 4
    session.commit(written)
    assert table_rows(emulator, table) == rows(1000)


def test_writer_memory_divides_the_buffer_among_open_writers():
    memory = WriterMemory()
    writers = [SimpleNamespace(block_limit=None) for _ in range(33)]
    memory.join(writers[0], 20 * MIB)
    assert writers[0].block_limit == 20 * MIB  # alone: the whole buffer, as in pyodps
    for w in writers[1:4]:
        memory.join(w, 20 * MIB)
    assert {w.block_limit for w in writers[:4]} == {5 * MIB}
    assert not memory.take_background_slot()  # n > 1 writers send their blocks themselves
    for w in writers[4:]:
        memory.join(w, 20 * MIB)
    assert {w.block_limit for w in writers} == {MIN_BLOCK_SIZE}  # 20 MiB / 33, floored
    for w in writers[1:]:
        memory.leave(w)
    assert writers[0].block_limit == 20 * MIB
    small = SimpleNamespace(block_limit=None)
    memory.join(small, 4096)  # a buffer below the floor is never raised to it
    assert small.block_limit == 4096 and writers[0].block_limit == 10 * MIB
    memory.leave(small)
    assert memory.take_background_slot()  # alone: one block in the background, as in pyodps
    assert not memory.take_background_slot()
    memory.release_background_slot()


def test_parallel_buffered_writers_share_one_buffer(tunnel, emulator, emulator_table):
    """Four writers open at once cut blocks at a quarter of buffer_size (1 MiB here), so
    the session's memory does not grow with the number of writers; data stays exact."""
    table = emulator_table("id bigint, payload string")
    session = tunnel.create_upload_session(table)
    payload = "x" * 1000
    per_writer = 1800  # about 1.8 MB each: two blocks at 1 MiB, one at 4 MiB
    opened = threading.Barrier(4)
    written: list[int] = []
    limits: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        with session.open_arrow_writer(buffer_size=4 * MIB) as writer:
            opened.wait(timeout=30)
            with lock:
                limits.append(writer.block_limit)
            ids = pa.array(range(k * per_writer, (k + 1) * per_writer), pa.int64())
            for start in range(0, per_writer, 100):
                part = ids[start : start + 100]
                writer.write(
                    pa.record_batch([part, pa.array([payload] * len(part))], ["id", "payload"])
                )
            opened.wait(timeout=30)  # nobody closes before everyone has written
        with lock:
            written.extend(writer.get_blocks_written())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limits == [MIB] * 4
    assert len(written) == len(set(written)) == 8  # two blocks per writer, not one
    session.commit(written)
    data = emulator.catalog.read_table(emulator.project, table, None)
    assert sorted(data.column("id").to_pylist()) == list(range(4 * per_writer))
    assert set(data.column("payload").to_pylist()) == {payload}


def test_arrow_writers_and_compression(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    frame = pd.DataFrame(rows(300), columns=["id", "name", "score", "flag", "ts", "amount"])
    for i, algo in enumerate(ALGOS):
        session = tunnel.create_upload_session(table, compress_algo=algo)
        with session.open_arrow_writer(0, compress=True) as writer:
            writer.write(frame.iloc[:150])
        with session.open_arrow_writer(compress=True, buffer_size=4096) as buffered:
            writer_batch = pa.RecordBatch.from_pandas(frame.iloc[150:], preserve_index=False)
            buffered.write(writer_batch)
        session.commit([0, *buffered.get_blocks_written()])
        assert len(table_rows(emulator, table)) == 300 * (i + 1)
    assert table_rows(emulator, table)[::4] == sorted(rows(300) * 4)[::4]


@pytest.mark.parametrize("algo", ALGOS)
def test_record_writer_compression(tunnel, emulator, emulator_table, algo):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table, compress_algo=algo)
    with session.open_record_writer(compress=True, buffer_size=4096) as writer:
        for row in rows(200):
            writer.write(row)
    session.commit(writer.get_blocks_written())
    assert table_rows(emulator, table) == rows(200)


def test_reattach_by_id_and_commit_names_missing_and_extra(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    for block in (3, 4):
        with session.open_record_writer(block) as writer:
            writer.write(rows(1, block)[0])
    other = tunnel.create_upload_session(table, upload_id=session.id)
    assert other.blocks == [3, 4]
    assert other.block_id_gen() == 5  # never hands out a block the server holds
    with pytest.raises(errors.BlockListMismatch) as info:
        other.commit([3, 7])
    assert info.value.missing == [7] and info.value.extra == [4]
    assert "missing on the server [7]" in str(info.value) and session.id in str(info.value)
    other.commit([3, 4])
    assert table_rows(emulator, table) == rows(1, 3) + rows(1, 4)
    other.commit([3, 4])  # a repeated commit of the same blocks is a no-op
    assert len(table_rows(emulator, table)) == 2


def test_overwrite_and_create_partition(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    with pytest.raises(errors.NoSuchPartition):
        tunnel.create_upload_session(table, partition_spec="pt=a")
    for data in (rows(5), rows(3, 100)):
        session = tunnel.create_upload_session(
            table, partition_spec="pt=a", create_partition=True, overwrite=True
        )
        with session.open_record_writer(0) as writer:
            for row in data:
                writer.write(row)
        session.commit([0])
    assert table_rows(emulator, table, "pt=a") == rows(3, 100)


def test_invalid_block_id_and_status_conflict(tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with pytest.raises(errors.TunnelError) as info:
        session.open_record_writer(block_id=None, initial_block_id=20000)
    assert info.value.block_id == 20000
    writer = session.open_record_writer(20000)
    with pytest.raises(errors.InvalidBlockID) as info, writer:
        writer.write(rows(1)[0])
    assert info.value.block_id == 20000 and info.value.session_id == session.id
    session.commit([])
    with pytest.raises(errors.StatusConflict) as info, session.open_record_writer(1) as writer:
        writer.write(rows(1)[0])
    assert info.value.status == 409


def test_bad_signature_is_mapped(emulator, emulator_table):
    table = emulator_table(SCHEMA)
    wrong = ODPS(
        emulator.access_id,
        "wrong-secret",
        emulator.project,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )
    with pytest.raises(errors.AuthError) as info:
        TableTunnel(wrong).create_upload_session(table)
    assert info.value.status in (401, 403) and info.value.code


def test_writer_abort_on_exception_sends_nothing(tunnel, emulator, emulator_table):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with pytest.raises(RuntimeError), session.open_record_writer(0) as writer:
        writer.write(rows(1)[0])
        raise RuntimeError("stop")
    assert session.get_block_list() == []
