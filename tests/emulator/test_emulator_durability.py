"""Sessions and commits survive restarts, and a kill -9 mid-commit leaves all or nothing."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from odps import ODPS
from odps.tunnel import TableTunnel
from polling import wait_until

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns


def _tunnel(emu: Emulator) -> TableTunnel:
    entry = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    return TableTunnel(entry, endpoint=emu.tunnel_endpoint)


def _write(session, block: int, keys: range) -> None:
    with session.open_record_writer(block) as writer:
        for k in keys:
            writer.write(session.new_record([k, f"v{k}"]))


def _keys(emu: Emulator, table: str) -> list[int]:
    return sorted(emu.catalog.read_table(emu.project, table).column("k").to_pylist())


def test_sessions_and_data_survive_restart(tmp_path):
    with Emulator(tmp_path) as emu:
        emu.catalog.create_table(emu.project, "t", TableSchema(parse_columns("k bigint, v string")))
        tunnel = _tunnel(emu)
        first = tunnel.create_upload_session("t")
        _write(first, 0, range(10))
        first.commit([0])
        download = tunnel.create_download_session("t")
        pending = tunnel.create_upload_session("t")
        _write(pending, 0, range(10, 15))
        port = emu.port

        emu.restart()
        assert emu.port == port
        tunnel = _tunnel(emu)
        assert _keys(emu, "t") == list(range(10))
        resumed = tunnel.create_upload_session("t", upload_id=pending.id)
        assert resumed.get_block_list() == [0]
        _write(resumed, 1, range(15, 20))
        resumed.commit([0, 1])
        old = tunnel.create_download_session("t", download_id=download.id)
        assert old.count == 10
        with old.open_record_reader(0, old.count) as reader:
            assert [r[0] for r in reader] == list(range(10))
    with Emulator(tmp_path) as again:  # a fresh process state on the same directory
        assert _keys(again, "t") == list(range(20))


@pytest.mark.parametrize(
    ("point", "committed"),
    [("request", False), ("commit:staged", False), ("commit:published", True)],
)
def test_kill_9_during_commit_is_all_or_nothing(tmp_path, point, committed):
    emu = Emulator(tmp_path, subprocess=True)
    emu.catalog.create_table(emu.project, "t", TableSchema(parse_columns("k bigint, v string")))
    emu.start()
    try:
        tunnel = _tunnel(emu)
        base = tunnel.create_upload_session("t")
        _write(base, 0, range(5))
        base.commit([0])
        session = tunnel.create_upload_session("t")
        _write(session, 0, range(100, 150))
        _write(session, 1, range(150, 200))
        if point == "request":
            emu.faults.add(method="POST", resource="uploadid", kind="delay", seconds=60)
        else:
            emu.faults.add(kind="delay", point=point, seconds=60)
        outcome: list[BaseException | None] = []

        def commit() -> None:
            try:
                session.commit([0, 1])
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the server dies under it
                outcome.append(exc)

        thread = threading.Thread(target=commit, daemon=True)
        thread.start()
        wait_until(lambda: emu.faults.injected, timeout=30, message=f"the commit to reach {point}")
        emu.kill()
        thread.join(30)
        assert outcome and outcome[0] is not None  # the client saw the crash

        emu.start()
        expected = list(range(5)) + (list(range(100, 200)) if committed else [])
        assert _keys(emu, "t") == expected
        # The client retries the commit: applied exactly once, whatever the crash point.
        retried = _tunnel(emu).create_upload_session("t", upload_id=session.id)
        retried.commit([0, 1])
        assert _keys(emu, "t") == list(range(5)) + list(range(100, 200))
    finally:
        if emu.running:
            emu.stop()


def test_overwrite_retried_after_a_crash_removes_the_replaced_files(tmp_path):
    """A crash between an overwrite's publish and its clean-up leaves the replaced data files
    on disk; the client's retried commit (already applied) must still remove them."""
    emu = Emulator(tmp_path, subprocess=True)
    emu.catalog.create_table(emu.project, "t", TableSchema(parse_columns("k bigint, v string")))
    emu.start()
    try:
        tunnel = _tunnel(emu)
        base = tunnel.create_upload_session("t")
        _write(base, 0, range(5))
        base.commit([0])
        session = tunnel.create_upload_session("t", overwrite=True)
        _write(session, 0, range(100, 110))
        emu.faults.add(kind="delay", point="commit:published", seconds=60)
        thread = threading.Thread(target=lambda: _commit_quietly(session), daemon=True)
        thread.start()
        wait_until(lambda: emu.faults.injected, timeout=30, message="the commit to be published")
        emu.kill()
        thread.join(30)

        emu.start()
        assert _keys(emu, "t") == list(range(100, 110))
        _tunnel(emu).create_upload_session("t", upload_id=session.id).commit([0])
        info = emu.catalog.get_table(emu.project, "t")
        manifest_files = {
            f["name"] for p in (info.path / "partitions").glob("*.json") for f in _json(p)["files"]
        }
        assert {p.name for p in info.data_dir.glob("*.arrow")} == manifest_files
    finally:
        if emu.running:
            emu.stop()


def _commit_quietly(session) -> None:
    with contextlib.suppress(Exception):  # the server dies under it
        session.commit([0])


def _json(path):
    return json.loads(path.read_text())


def test_a_data_dir_that_cannot_be_used_fails_start_with_its_own_error(tmp_path):
    """The in-process emulator loads its data directory in the serving thread; a failure
    there reaches ``start()`` as itself, not as a bare "did not start"."""
    not_a_dir = tmp_path / "afile"
    not_a_dir.write_text("not a directory")
    with pytest.raises(FileExistsError):
        Emulator(not_a_dir).start()
