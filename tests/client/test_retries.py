"""Self-healing against the emulator's fault injection: every case ends with exact data."""

from __future__ import annotations

import time

import pytest

from airflow_provider_odps_tunnel.tunnel import errors

from .test_table_download import SCHEMA, load, rows
from .test_table_upload import table_rows

COLUMNS = ("id", "name", "score", "flag", "ts", "amount")


def test_reset_in_mid_upload_resends_the_block(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    fault = faults.add(method="PUT", session_kind="upload", kind="reset_after_bytes", bytes=3000)
    with session.open_record_writer(buffer_size=20_000) as writer:
        for row in rows(2000):
            writer.write(row)
    assert fault.fired == 1
    session.commit(writer.get_blocks_written())
    assert table_rows(emulator, table) == rows(2000)


def test_reset_in_mid_arrow_upload_resends_the_block(tunnel, emulator, emulator_table, faults):
    import pandas as pd

    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(method="PUT", session_kind="upload", kind="reset_after_bytes", bytes=5000)
    frame = pd.DataFrame(rows(2000), columns=["id", "name", "score", "flag", "ts", "amount"])
    with session.open_arrow_writer() as writer:
        writer.write(frame)
    assert len(faults.injected) == 1
    session.commit(writer.get_blocks_written())
    assert table_rows(emulator, table) == rows(2000)


def test_503_on_commit_commits_exactly_once(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        for row in rows(100):
            writer.write(row)
    faults.add(method="POST", session_kind="upload", kind="status", status=503)
    session.commit([0])
    assert len(faults.injected) == 1
    assert session.status == session.Status.Closed
    assert table_rows(emulator, table) == rows(100)


def test_lost_commit_response_is_verified_not_repeated(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        for row in rows(100):
            writer.write(row)
    faults.add(method="POST", session_kind="upload", kind="reset_after_bytes", direction="response")
    session.commit([0])
    assert len(faults.injected) == 1
    assert table_rows(emulator, table) == rows(100)  # committed once, not twice
    session.commit([0])
    assert table_rows(emulator, table) == rows(100)


def test_throttle_with_retry_after_is_honoured(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    load(tunnel, table, rows(300))
    session = tunnel.create_download_session(table)
    faults.add(method="GET", session_kind="download", kind="throttle", seconds=0.3)
    started = time.monotonic()
    with session.open_record_reader(0, session.count) as reader:
        got = [r.values for r in reader]
    assert time.monotonic() - started >= 0.3
    assert got == rows(300) and len(faults.injected) == 1


def test_throttle_on_upload_put(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(method="PUT", session_kind="upload", kind="throttle", code="SlotExceeded", seconds=0)
    with session.open_record_writer(buffer_size=4096) as writer:
        for row in rows(300):
            writer.write(row)
    session.commit(writer.get_blocks_written())
    assert table_rows(emulator, table) == rows(300)


@pytest.mark.parametrize("arrow", [False, True])
def test_reset_in_mid_download_resumes_at_the_current_row(tunnel, emulator_table, faults, arrow):
    table = emulator_table(SCHEMA)
    load(tunnel, table, rows(5000))
    session = tunnel.create_download_session(table)
    faults.add(
        method="GET", session_kind="download", kind="reset_after_bytes", bytes=150_000, times=2
    )
    if arrow:
        with session.open_arrow_reader(0, session.count) as reader:
            ids = reader.read().column("id").to_pylist()
    else:
        with session.open_record_reader(0, session.count) as reader:
            ids = [r["id"] for r in reader]
    assert ids == list(range(5000))
    assert len(faults.injected) == 2


def test_corrupt_body_is_detected_and_reread(tunnel, emulator_table, faults):
    table = emulator_table(SCHEMA)
    load(tunnel, table, rows(1000))
    session = tunnel.create_download_session(table)
    faults.add(method="GET", session_kind="download", kind="corrupt_crc")
    with session.open_record_reader(0, session.count) as reader:
        assert [r["id"] for r in reader] == list(range(1000))
    assert len(faults.injected) == 1


def test_on_exception_can_stop_the_reader(tunnel, emulator_table, faults):
    table = emulator_table(SCHEMA)
    load(tunnel, table, rows(1000))
    session = tunnel.create_download_session(table)
    faults.add(method="GET", session_kind="download", kind="corrupt_crc")
    seen: list[BaseException] = []

    def give_up(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    with pytest.raises(errors.DataStreamError) as info:
        list(session.open_record_reader(0, session.count, on_exception=give_up))
    assert seen and info.value.row is not None


def test_on_exception_resends_a_failed_block(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(
        method="PUT", session_kind="upload", kind="status", status=400, code="InvalidArgument"
    )
    seen: list[BaseException] = []
    with session.open_record_writer(on_exception=lambda exc: seen.append(exc) or False) as writer:
        for row in rows(10):
            writer.write(row)
    assert len(seen) == 1 and isinstance(seen[0], errors.InvalidArgument)
    assert seen[0].block_id is not None
    session.commit(writer.get_blocks_written())
    assert table_rows(emulator, table) == rows(10)


def test_expired_session_is_reported(tunnel, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(method="GET", session_kind="upload", kind="expire_session")
    with pytest.raises(errors.TunnelError) as info:
        session.commit([])
    assert info.value.session_id == session.id


def test_upsert_commit_retried_after_503(tunnel, emulator, emulator_table, faults):
    table = emulator_table("k bigint, v string", primary_key=["k"], buckets=3)
    session = tunnel.create_upsert_session(table)
    with session.open_upsert_stream() as stream:
        for k in range(30):
            stream.upsert([k, str(k)])
    faults.add(method="POST", session_kind="upsert", kind="status", status=503)
    session.commit()
    assert [r[0] for r in table_rows(emulator, table)] == list(range(30))


def test_background_block_error_surfaces_at_close(tunnel, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(
        method="PUT", session_kind="upload", kind="status", status=400, code="InvalidArgument"
    )
    writer = session.open_arrow_writer(buffer_size=4096)
    import pandas as pd

    frame = pd.DataFrame(rows(50), columns=["id", "name", "score", "flag", "ts", "amount"])
    with pytest.raises(errors.InvalidArgument) as info:
        writer.write(frame)
        writer.close()
    assert info.value.block_id is not None


def test_stream_put_failure_reloads_and_retries(tunnel, emulator, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_stream_upload_session(table)
    faults.add(method="PUT", session_kind="stream", kind="status", status=502)
    with session.open_record_writer() as writer:
        for row in rows(100):
            writer.write(row)
    assert len(faults.injected) == 1
    assert table_rows(emulator, table) == rows(100)


@pytest.mark.parametrize("arrow", [False, True])
def test_streamed_block_is_resent_from_its_spool(tunnel, emulator, emulator_table, faults, arrow):
    import pandas as pd

    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    faults.add(method="PUT", session_kind="upload", kind="reset_after_bytes", bytes=100_000)
    data = rows(5000)
    if arrow:
        with session.open_arrow_writer(7) as writer:
            for start in range(0, 5000, 500):
                frame = pd.DataFrame(data[start : start + 500], columns=list(COLUMNS))
                writer.write(frame)
    else:
        with session.open_record_writer(7) as writer:
            for row in data:
                writer.write(row)
    assert len(faults.injected) == 1
    session.commit([7])
    assert table_rows(emulator, table) == data


def test_aborted_streamed_block_is_not_resent(tunnel, emulator_table, faults):
    table = emulator_table(SCHEMA)
    session = tunnel.create_upload_session(table)
    with pytest.raises(RuntimeError), session.open_record_writer(3) as writer:
        for row in rows(3000):
            writer.write(row)
        raise RuntimeError("producer failed")
    assert session.get_block_list() == []
