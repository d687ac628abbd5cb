"""Progress lines and the task-state records (with a fake task state store)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_odps_tunnel.operators.ledger import BlockLedger, TaskState
from airflow_provider_odps_tunnel.operators.progress import TransferProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_show_rows_megabytes_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    log = logging.getLogger("progress-test")
    progress = TransferProgress(log, "upload to p.t", total_rows=1000, interval=5, clock=clock)
    clock.now += 2
    progress.add(100, 2_000_000)
    assert caplog.records == []  # not due yet
    clock.now += 8
    progress.add(150, 3_000_000)
    (record,) = caplog.records
    assert record.getMessage() == (
        "upload to p.t: 250/1,000 (25%) rows, 5.0 MB, 0.5 MB/s, ETA 0:00:30"
    )
    progress.finish()
    assert caplog.records[-1].getMessage().endswith("finished in 0:00:10")


def test_eta_from_units_when_rows_are_unknown():
    clock = Clock()
    progress = TransferProgress(logging.getLogger("x"), "w", total_units=4, clock=clock)
    assert progress.eta() is None
    clock.now += 10
    progress.unit_done(10, 10)
    assert str(progress.eta()) == "0:00:30"
    assert "1 of 4 units done" in progress.line()


def test_task_state_uses_the_store_or_a_local_dict(state_store):
    durable = TaskState.of({"task_state_store": state_store})
    durable.set("k", {"a": 1})
    assert state_store.data == {"k": {"a": 1}}
    assert durable.get("k") == {"a": 1}
    assert durable.get("missing") is None
    local = TaskState.of({})
    local.set("k", [1])
    assert local.get("k") == [1]
    assert state_store.data == {"k": {"a": 1}}
    assert TaskState.of(None).get("k") is None


def test_ledger_only_trusts_records_of_the_same_session_and_plan(state_store):
    state = TaskState(state_store)
    ledger = BlockLedger(state, "session-1")
    record = ledger.record(7, "fp", {"block_id": 7, "rows": 3, "bytes": 10, "digest": "d"})
    assert state_store.data["block/7"] == record
    assert ledger.finished(7, "fp") == record
    assert ledger.finished(7, "other plan") is None
    assert BlockLedger(state, "session-2").finished(7, "fp") is None
    assert ledger.finished(8, "fp") is None


def test_fake_store_refuses_none_like_the_real_one(state_store):
    with pytest.raises(ValueError):
        state_store.set("k", None)
