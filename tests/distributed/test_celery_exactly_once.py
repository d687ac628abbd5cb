"""A real distributed Airflow loads a partition exactly once through a worker death and a
scheduler restart.

PostgreSQL, Redis, the API server, scheduler, DAG processor, triggerer and two Celery
workers (two slots each) run as separate process groups with their own directories; the
emulator caps every block stream at 128 KB/s, so writers spend seconds inside each block
body. Once blocks stream, the worker running the most writers gets SIGKILL (all of its
processes at once, as when a host dies) and the scheduler is restarted. The writers must be
retried on the surviving worker, the commit must publish each planned block once, and the
partition must hold exactly the source rows (count, distinct ids, checksum). In the same
run a resumable upsert lands its changes and a deferrable sensor waits in the triggerer.
Wall time: about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from distributed_airflow.cluster import AirflowCluster
from distributed_airflow.scenario import (
    attempts_by_worker,
    check_run,
    create_tables,
    deferred_to_triggerer,
    kill_worker_mid_block,
    trigger_run,
    wait_cluster_ready,
    wait_for_run,
    write_account_changes,
    write_source,
)
from polling import wait_until

DAY = datetime.date(2024, 7, 1)


@pytest.mark.timeout(900)
def test_worker_killed_and_scheduler_restarted_load_exactly_once(
    cluster: AirflowCluster, capped_emulator: Any, tmp_path
):
    emu = capped_emulator
    create_tables(emu, "events", "accounts")
    # 8 files of ~512 KB: 8 blocks dealt to 4 writers, two blocks each (~4 s per block).
    source = write_source(tmp_path / "shared" / "events", total_bytes=4 * 1024 * 1024, files=8)
    accounts = write_account_changes(tmp_path / "shared" / "accounts")
    wait_cluster_ready(cluster, wait_until)
    conf = {
        "source": source.uri,
        "table": "events",
        "block_size": 1,  # one block per file
        "max_writers": 4,
        "upsert_table": "accounts",
        "upsert_source": accounts,
    }
    run_id = trigger_run(cluster, conf, DAY)

    victim, killed, streams = kill_worker_mid_block(cluster, emu, run_id, "events", wait_until)
    cluster.restart_scheduler()
    state = wait_for_run(cluster, run_id, timeout=600, wait=wait_until)

    report = check_run(cluster, emu, run_id, state, "events", DAY, source)
    context = (report, victim.name, killed, cluster.logs_tail())
    assert report.state == "success", context
    assert len(report.planned_blocks) == 8, context
    assert report.written_blocks == report.planned_blocks, context
    assert report.successful_commits == 1, context
    assert report.rows == source.rows == report.distinct_ids, context
    assert report.checksum_ok, context
    assert killed >= 1 and max(report.writer_tries.values()) >= 2, context  # retried
    assert report.other_tasks["upsert_accounts"][0] == "success", context
    assert report.other_tasks["partition_loaded"][0] == "success", context
    assert streams >= killed, context  # each killed writer was inside a block body
    assert deferred_to_triggerer(cluster, run_id, "partition_loaded"), context
    # The killed writers' retries ran on the worker that survived.
    (survivor,) = [w.name for w in cluster.workers if w is not victim]
    attempts = attempts_by_worker(cluster, run_id)
    retried = [f"write_blocks[{i}] try 2" for i, t in report.writer_tries.items() if t >= 2]
    assert set(retried) <= set(attempts[survivor]), attempts
    # A second scheduler took over the run.
    assert len(cluster.query("SELECT id FROM job WHERE job_type = 'SchedulerJob'")) == 2
    upserted = emu.catalog.read_table(emu.project, "accounts", None).to_pydict()
    assert sorted(upserted["id"]) == [1, 2, 4, 5], upserted
    assert all(w.peak_rss > 0 for w in cluster.workers)
