"""Crashes: ``kill -9`` the emulator during uploads, commits and upsert commits.

Our client drives each transfer against a child-process emulator; at the chosen instant the
emulator is SIGKILLed and restarted on the same data directory and port (see
``crash_scenarios`` for the jobs, modes and triggers). After every kill, before anything
resumes, every table holds all or none of each commit (read from disk and, for a
reattaching driver, through the restarted server); then the open session is resumed (by
id, or by the client's own retries) and the transfer completes exactly once: row count and
an order-independent checksum of every value equal the source. The fast mode kills the
emulator at fixed points and at seeded random instants (set ``CRASH_SEED`` to replay a
plan; ``benchmarks/soak.py`` runs the long series).
"""

from __future__ import annotations

import os

import pytest

from .conftest import show
from .crash_scenarios import (
    BLOCK_PUT,
    BUCKET_PUT,
    UPLOAD_COMMIT,
    UPSERT_COMMIT,
    Case,
    CrashHarness,
    Trigger,
    random_case,
)

SEED = int(os.environ.get("CRASH_SEED", "20261127"))


@pytest.fixture(scope="module")
def harness(tmp_path_factory, request):
    with CrashHarness(tmp_path_factory.mktemp("crash-emulator"), SEED) as h:
        yield h
        show(request, h.stats.lines())


def _run(harness: CrashHarness, case: Case):
    """Run ``case``; returns its job, after checking that every kill hit the transfer."""
    before = harness.stats.mid_transfer
    job = harness.run_case(case)
    assert harness.stats.mid_transfer - before == len(case.triggers), job.landed
    return job


@pytest.mark.parametrize(
    ("trigger", "state"),
    [
        (Trigger.request("commit", **UPLOAD_COMMIT), "none"),
        (Trigger.at_point("commit:staged"), "none"),
        (Trigger.at_point("commit:published"), "all"),
    ],
    ids=["before-commit", "commit-staged", "commit-published"],
)
def test_upload_commit_crash_reattach(harness, trigger, state):
    """A commit killed before, inside and after publishing: none, none, all; the driver
    reattaches by id and its commit completes (or is recognised as done) exactly once."""
    job = _run(harness, Case("upload", "reattach", [trigger]))
    assert job.landed == ["commit"]
    assert job.crash_states == [state]
    assert job.resumed == 1


@pytest.mark.parametrize(
    ("job", "trigger", "state"),
    [
        ("upload-partition", Trigger.at_point("commit:staged"), "none"),
        ("upload-overwrite", Trigger.at_point("commit:published"), "all"),
    ],
    ids=["new-partition-staged", "overwrite-published"],
)
def test_partition_and_overwrite_commit_crash_reattach(harness, job, trigger, state):
    """A commit that creates its partition, killed before publishing: the partition does
    not exist after the restart, and the resumed commit creates it once. An overwriting
    commit killed after publishing: the table holds the new rows only, and the re-commit
    changes nothing."""
    done = _run(harness, Case(job, "reattach", [trigger]))
    assert done.crash_states == [state]
    table = harness.emu.catalog.get_table(harness.emu.project, done.table)
    if job == "upload-partition":
        partitions = harness.emu.catalog.list_partitions(harness.emu.project, done.table)
        assert [p.to_param() for p in partitions] == ["pt=base", "pt=new"]
    else:
        assert not table.partitioned


def test_upload_crash_in_blocks_then_in_commit(harness):
    """Killed mid block PUT, then again while the resumed commit is staged: the new driver
    writes only the blocks the server lacks, and the second resumption commits."""
    nth = harness.rng.randint(2, 5)
    job = _run(
        harness,
        Case(
            "upload",
            "reattach",
            [Trigger.request("put", nth=nth, **BLOCK_PUT), Trigger.at_point("commit:staged")],
        ),
    )
    assert job.landed == ["blocks", "commit"]
    assert job.crash_states == ["none", "none"]
    assert job.resumed == 2


def test_upsert_crashes_reattach(harness):
    """Killed mid bucket PUT, then after the upsert commit published but before the session
    was marked committed: the replay and the re-commit leave the expected key -> row map."""
    job = _run(
        harness,
        Case(
            "upsert",
            "reattach",
            [Trigger.request("put", nth=2, **BUCKET_PUT), Trigger.at_point("commit:published")],
        ),
    )
    assert job.landed == ["upserts", "upsert-commit"]
    assert job.crash_states == ["none", "all"]
    assert job.resumed == 2


def test_upsert_commit_crash_client_rides_through(harness):
    """The upsert commit killed before it is handled, then (retried) at commit:staged: the
    client's own retries carry the same commit through both restarts."""
    failed = harness.stats.failed_attempts
    job = _run(
        harness,
        Case(
            "upsert",
            "ride",
            [Trigger.request("commit", **UPSERT_COMMIT), Trigger.at_point("commit:staged")],
        ),
    )
    assert job.landed == ["upsert-commit", "upsert-commit"]
    assert job.crash_states == ["none", "none"]
    assert job.resumed == 0
    assert harness.stats.failed_attempts - failed >= 2  # each kill broke a request in flight


def test_buffered_upload_client_rides_through(harness):
    """A buffered writer's background block PUT killed, then the commit after publishing:
    re-sent blocks and the commit verified by reload, all inside one client call."""
    failed = harness.stats.failed_attempts
    job = _run(
        harness,
        Case(
            "upload-buffered",
            "ride",
            [Trigger.request("put", nth=2, **BLOCK_PUT), Trigger.at_point("commit:published")],
        ),
    )
    assert job.landed == ["blocks", "commit"]
    assert job.crash_states == ["none", "all"]
    assert job.resumed == 0
    assert harness.stats.failed_attempts - failed >= 2


def _states_consistent(groups) -> None:
    """Every job saw one state per kill, and a committed job never went back to none."""
    for group in groups:
        for job in group.jobs:
            assert job.crash_states, job.table
            if "all" in job.crash_states:
                first = job.crash_states.index("all")
                assert set(job.crash_states[first:]) == {"all"}, job.crash_states


def test_concurrent_sessions_reattach(harness):
    """Two upload sessions appending to one table and an upsert session on another, killed
    together mid block PUT, then at a staged commit: after each kill every commit is all or
    none on its own (every combination is recognised), and all complete exactly once."""
    before = harness.stats.mid_transfer
    groups = harness.run_concurrent(
        "reattach",
        [Trigger.request("put", nth=4, **BLOCK_PUT), Trigger.at_point("commit:staged")],
    )
    assert harness.stats.mid_transfer - before == 2
    assert [len(g.jobs) for g in groups] == [2, 1]
    _states_consistent(groups)
    assert all(len(job.crash_states) == 2 for g in groups for job in g.jobs)


def test_concurrent_sessions_client_rides_through(harness):
    """The same three sessions riding through a kill of the held upsert commit and one at
    the next published commit."""
    before = harness.stats.mid_transfer
    failed = harness.stats.failed_attempts
    groups = harness.run_concurrent(
        "ride",
        [Trigger.request("commit", **UPSERT_COMMIT), Trigger.at_point("commit:published")],
    )
    assert harness.stats.mid_transfer - before == 2
    assert harness.stats.failed_attempts > failed
    _states_consistent(groups)
    assert all(job.resumed == 0 for g in groups for job in g.jobs)


def test_random_instants(harness):
    """Seeded random kills (request counts, delays, held requests, commit points) over
    every job and mode, after one crash-free run of each job measures its duration."""
    for kind in ("upload", "upload-buffered", "upsert"):
        assert harness.clean_run(kind).crash_states == []
    crashes = harness.stats.crashes
    cases = [
        random_case(harness.rng, harness.baseline, max_kills=2, sizes=(300, 600)) for _ in range(3)
    ]
    for case in cases:
        job = harness.run_case(case)
        assert len(job.landed) == len(case.triggers)
        assert len(job.crash_states) == len(case.triggers)
    assert harness.stats.crashes - crashes == sum(len(c.triggers) for c in cases)
    assert harness.stats.exactly_once == harness.stats.transfers
