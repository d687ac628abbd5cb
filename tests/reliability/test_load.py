"""Load: 32 concurrent block writers and 8 readers against one emulator for a bounded time.

The scenario and every check it makes are in :mod:`.load_scenario` (shared with the soak
script ``benchmarks/soak.py``): no lost, duplicated, torn or phantom rows in any snapshot or
at the end (row count and order-independent checksum against the source), snapshots
linearizable with the commits, no 5xx, no unexpected 4xx, no hung thread. This file runs it
for :data:`SECONDS`, prints the figures and bounds the server's memory, and pins two defects
found while building it: sessions were never released (memory grew with every session
ever created), and a commit racing a block PUT of its session deadlocked the table.

The emulator runs as its own process, so its RSS is its own: sampled from ``/proc`` during
the run, peak = VmHWM.
"""

from __future__ import annotations

import threading

import pytest
import requests
from signed_requests import signed

from airflow_provider_odps_tunnel.emulator import Emulator
from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel, errors
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

from .conftest import fingerprint, show, table_fingerprint
from .load_scenario import (
    Commit,
    LoadState,
    SnapshotSeen,
    Target,
    check_linearizable,
    check_snapshot,
    format_figures,
    make_row,
    run_load,
    server_memory,
)

WRITERS = 32
READERS = 8
SECONDS = 15.0
MIB = 1 << 20
# What the server may add to its idle RSS (~95 MiB) under this load. Per request being
# served it holds at most one response chunk (1 MiB) and one decoded batch of at most 8192
# small rows, and it streams request bodies through staging files: with 40 clients,
# < 100 MiB. It keeps its sessions in memory: ~3 KiB per upload session, and a download
# session holds its snapshot's file list (up to ~30 KiB here), < 20 MiB for the ~1,000
# sessions of a 15 s run. Measured: +85..105 MiB; the bound leaves 2.5x for slow machines
# (more requests in flight at once) and allocator slack.
RSS_HEADROOM = 256 * MIB
DAY = 24 * 3600.0


@pytest.fixture
def server(tmp_path):
    """A child-process emulator of its own (default limits: no rate limit)."""
    with Emulator(tmp_path / "emulator", subprocess=True) as emu:
        yield emu


def _tunnel(emu) -> TableTunnel:
    return TableTunnel(
        ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    )


def test_32_writers_8_readers(server, request):
    result = run_load(server, SECONDS, writers=WRITERS, readers=READERS)
    lines = format_figures(result)

    # The sessions the load left are released once long expired (defect 2): the server's
    # state, and so its memory, does not grow with every session ever created.
    sessions_dir = server.data_dir / "sessions"
    held_before = len(list(sessions_dir.glob("*.json")))
    old_download = _tunnel(server).create_download_session(f"{result['tables']}_a").id
    server.clock.advance(2 * DAY + 60)
    _tunnel(server).create_upload_session(f"{result['tables']}_a")  # triggers the purge
    held_after = len(list(sessions_dir.glob("*.json")))
    rss_after = server_memory(server.pid)["VmRSS"]
    lines.append(
        f"  sessions held: {held_before} after the load, {held_after} once they were two days "
        f"old; server RSS then {rss_after / MIB:.0f} MiB"
    )
    show(request, lines)

    assert result["problems"] == []
    assert result["hung_threads"] == 0
    assert result["server_errors"] == 0
    assert result["commits_failed"] == 0
    assert result["rows_final"] == result["rows_written"] > 0
    assert result["abandoned"] > 0  # and no snapshot showed their rows (a problem otherwise)
    # Real concurrency: every writer committed, the server served many requests at once,
    # and the readers verified snapshots throughout.
    assert result["commits_per_writer_min"] >= 1
    assert result["max_in_flight"] >= WRITERS // 2
    assert result["snapshots"] >= 2 * READERS
    assert result["rows_read"] > 0
    assert result["rss_peak"] < result["rss_before"] + RSS_HEADROOM, (
        f"server peak RSS {result['rss_peak'] / MIB:.0f} MiB, idle "
        f"{result['rss_before'] / MIB:.0f} MiB"
    )
    assert held_before >= result["sessions_created"] + result["snapshots"]
    assert held_after == 1
    with pytest.raises(errors.NoSuchDownload):
        _tunnel(server).create_download_session(f"{result['tables']}_a", download_id=old_download)


def test_commit_racing_block_puts_never_hangs_the_table(server, request):
    """Defect 1: a commit racing block PUTs of the same session deadlocked the server.

    A block PUT took the table lock then the session's, the commit the session's then the
    table's: once they crossed, both requests hung and with them every later PUT and
    commit of the table (and a graceful stop). Now each PUT either lands before the commit
    and is in it (200) or comes after and is refused (409), and nothing hangs.
    """
    columns = parse_columns("k bigint, v string")
    server.catalog.create_table(server.project, "race", TableSchema(columns))
    path = f"/projects/{server.project}/tables/race"
    expected: list[list] = []
    outcomes = {"put 200": 0, "put 409": 0}
    for i in range(60):
        upload = signed(server, "POST", path, {"uploads": ""})
        assert upload.status_code == 200, upload.text
        session = upload.json()["UploadID"]
        bodies = {b: [[i * 10 + b, f"s{i}b{b}"] for _ in range(5)] for b in range(4)}
        answers: dict = {}

        def put(block: int, session=session, bodies=bodies, answers=answers) -> None:
            body = encode_rows(columns, bodies[block])
            params = {"uploadid": session, "blockid": str(block)}
            try:
                answers[block] = signed(server, "PUT", path, params, body=body).status_code
            except requests.RequestException as exc:  # a hung server: a read timeout
                answers[block] = type(exc).__name__

        def commit(session=session, answers=answers) -> None:
            try:
                answers["commit"] = signed(server, "POST", path, {"uploadid": session}).status_code
            except requests.RequestException as exc:
                answers["commit"] = type(exc).__name__

        put(0)  # one block lands before the race: the commit always has something
        threads = [threading.Thread(target=put, args=(b,)) for b in (1, 2, 3)]
        threads.append(threading.Thread(target=commit))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)  # each request times out after 10 s (helpers.TIMEOUT)
        assert not any(t.is_alive() for t in threads)
        assert answers.get("commit") == 200, (i, answers)
        for block in range(4):
            assert answers.get(block) in (200, 409), (i, answers)
            outcomes[f"put {answers[block]}"] += 1
            if answers[block] == 200:
                expected.extend(bodies[block])
    show(request, [f"commit racing 3 block PUTs, 60 sessions: {outcomes}"])
    assert outcomes["put 200"] >= 60
    # A PUT answered 200 is in its session's commit, one answered 409 is not.
    assert table_fingerprint(server, "race") == fingerprint(expected)
    assert outcomes["put 409"] > 0  # the race was run: some PUTs came after the commit


def test_the_checks_catch_torn_duplicated_altered_lost_and_phantom_rows():
    """The load's checks are not vacuous: each kind of wrong snapshot is reported."""
    whole = [make_row(1, 0, s, 3) for s in range(3)] + [make_row(2, 5, 0, 1)]
    assert check_snapshot(whole, "ok") == ({(1, 0), (2, 5)}, [])
    torn = check_snapshot(whole[1:], "torn")[1]
    duplicated = check_snapshot([*whole, whole[0]], "dup")[1]
    altered = check_snapshot([whole[0][:4] + ("other", 0.0), *whole[1:]], "alt")[1]
    assert torn and "not whole" in torn[0]
    assert duplicated and "not whole" in duplicated[0]
    assert altered and "altered" in altered[0]

    target, other = Target("t", None, False), Target("u", None, False)
    shared = LoadState()
    shared.commits = {
        (1, 0): Commit(1, 0, target, 3, started=1.0, ended=2.0),
        (1, 1): Commit(1, 1, target, 1, started=3.0, ended=4.0),
        (2, 0): Commit(2, 0, other, 1, started=1.0, ended=2.0),
        (3, 0): Commit(3, 0, target, 1, started=9.0, ended=10.0),
        (5, 0): Commit(5, 0, target, 1, started=4.5, ended=5.2),
        (5, 1): Commit(5, 1, target, 1, started=5.3, ended=5.4),
    }
    shared.abandoned = {(4, 0)}
    shared.snapshots = [
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1)})),  # right
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 1)})),  # lost (1, 0), not a prefix
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1), (2, 0)})),  # wrong target
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1), (3, 0)})),  # from the future
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1), (4, 0)})),  # abandoned
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1), (9, 9)})),  # unknown
        SnapshotSeen(target, 5.0, 5.5, frozenset({(1, 0), (1, 1), (5, 1)})),  # not a prefix
        SnapshotSeen(target, 5.0, 5.5, frozenset(), absent=True),  # lost both of writer 1
    ]
    assert check_linearizable(shared) == 8
    found = "\n".join(shared.problems)
    for text in (
        "lost (1, 0)",
        "another target",
        "before its commit",
        "never-committed",
        "unknown commit",
        "lost (1, 1)",
        "has a later commit of writer 5 but not (5, 0)",
    ):
        assert text in found, text
    assert len(shared.problems) == 8, found
