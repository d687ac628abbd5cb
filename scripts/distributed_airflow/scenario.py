"""What a distributed run loads and how it is checked: source files, runs, exactly-once.

The source is Parquet files under one directory that every worker reaches by its URI
(``file://`` here; an object store in production). Each row has a unique ``id``, so a row
loaded twice or lost shows in the count of distinct ids; the content is compared with an
order-independent checksum (the sum of per-row hashes, mod 2**64) of source and partition.
Block writes and commits are checked in the emulator's request log: every planned block
id written, one successful commit per session.
"""

from __future__ import annotations

import datetime
import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# The upsert's changes are the upsert example's of `make demo` (scripts/demo.py).
from demo import write_customer_changes as write_account_changes

from airflow_provider_odps_tunnel.tunnel import ODPS, TableSchema, TableTunnel
from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns

from .cluster import AirflowCluster, Worker

__all__ = [
    "DAG_ID",
    "EVENT_COLUMNS",
    "Source",
    "RunReport",
    "write_source",
    "write_account_changes",
    "create_tables",
    "trigger_run",
    "wait_for_run",
    "kill_worker_mid_block",
    "check_run",
    "attempts_by_worker",
    "deferred_to_triggerer",
    "emulator_env",
    "wait_cluster_ready",
]

DAG_ID = "odps_distributed_load"
EVENT_COLUMNS = "id bigint, item string, amount double, payload string"
_PAYLOAD_CHARS = 96


@dataclass
class Source:
    """Source files written for a run: where, how many rows and bytes, their checksum."""

    uri: str
    rows: int
    nbytes: int
    checksum: int


def rows_checksum(frame: pd.DataFrame) -> int:
    """Order-independent checksum of the rows (the columns of ``EVENT_COLUMNS``)."""
    cols = ["id", "item", "amount", "payload"]
    hashes = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy(np.uint64)
    return int(hashes.sum(dtype=np.uint64))


def _events(start: int, count: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.arange(start, start + count, dtype=np.int64)
    raw = rng.integers(0, 2**63, size=(count, _PAYLOAD_CHARS // 16), dtype=np.int64)
    payload = [b"".join(f"{v:016x}".encode() for v in row).decode() for row in raw]
    return pd.DataFrame(
        {
            "id": ids,
            "item": [f"item-{i % 97:02d}" for i in ids],
            "amount": np.round(ids * 0.37 % 1000, 2),
            "payload": payload,
        }
    )


def write_source(directory: Path, total_bytes: int, files: int, seed: int = 15) -> Source:
    """Parquet files holding about ``total_bytes`` of rows in all, ``files`` of them."""
    directory.mkdir(parents=True, exist_ok=True)
    row_bytes = 8 + 7 + 8 + _PAYLOAD_CHARS + 8  # roughly, as the tunnel encodes a row
    per_file = max(1, total_bytes // row_bytes // files)
    rng = np.random.default_rng(seed)
    checksum = 0
    for i in range(files):
        frame = _events(i * per_file, per_file, rng)
        checksum = (checksum + rows_checksum(frame)) % 2**64
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, directory / f"events-{i:04d}.parquet", row_group_size=per_file)
    nbytes = sum(p.stat().st_size for p in directory.glob("*.parquet"))
    return Source(directory.as_uri(), per_file * files, nbytes, checksum)


def create_tables(emu: Any, table: str, accounts: str) -> None:
    """The partitioned load target and the primary-key upsert target."""
    catalog, project = emu.catalog, emu.project
    catalog.create_table(
        project,
        table,
        TableSchema(parse_columns(EVENT_COLUMNS), parse_columns("ds string")),
        if_not_exists=True,
    )
    catalog.create_table(
        project,
        accounts,
        TableSchema(parse_columns("id bigint, name string, tier string"), []),
        if_not_exists=True,
        primary_key=["id"],
        buckets=4,
    )


def trigger_run(cluster: AirflowCluster, conf: dict[str, Any], day: datetime.date) -> str:
    """Trigger the DAG for ``day`` (its partition is ``ds=<day>``); the run id."""
    run_id = f"distributed-{day.isoformat()}"
    cluster.airflow(
        "dags", "trigger", DAG_ID, "-c", json.dumps(conf), "-l", day.isoformat(), "-r", run_id
    )
    return run_id


def run_state(cluster: AirflowCluster, run_id: str) -> str | None:
    """``success`` or ``failed`` once the run has finished, else None."""
    rows = cluster.query(
        "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id
    )
    state = rows[0][0] if rows else None
    return state if state in ("success", "failed") else None


def wait_for_run(
    cluster: AirflowCluster, run_id: str, timeout: float, wait: Callable[..., Any]
) -> str:
    """Wait (with ``wait``, a ``wait_until``) for the run to finish; its state."""
    return wait(
        lambda: run_state(cluster, run_id) or _crashed(cluster),
        timeout=timeout,
        interval=0.5,
        message=lambda: f"DAG run {run_id} to finish\n{cluster.logs_tail()}",
    )


def _crashed(cluster: AirflowCluster) -> str | None:
    failed = cluster.failed_component()
    if failed:
        raise RuntimeError(f"an Airflow component exited:\n{failed}")
    return None


def running_writers(cluster: AirflowCluster, run_id: str) -> dict[str, list[str]]:
    """Running ``write_blocks`` task instance ids of the run, by the worker running them."""
    ids = {
        str(row[0]).replace("-", "")
        for row in cluster.query(
            "SELECT id FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND task_id = 'write_blocks' AND state = 'running'",
            DAG_ID,
            run_id,
        )
    }
    found: dict[str, list[str]] = {}
    for worker in cluster.live_workers():
        mine = [ti for ti in worker.task_processes() if ti in ids]
        if mine:
            found[worker.name] = mine
    return found


def requests_of(emu: Any, session_id: str) -> list[dict[str, Any]]:
    """The emulator's request log lines about one session."""
    path = Path(emu.data_dir) / "requests.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e.get("session") == session_id]


def upload_session_id(cluster: AirflowCluster, run_id: str) -> str | None:
    value = xcom(cluster, run_id, "create_session")
    return value.get("session_id") if isinstance(value, dict) else None


def streams_in_flight(emu: Any, table: str) -> int:
    """Block bodies the emulator is receiving for ``table`` right now (its admin resource;
    counted when the emulator runs with a ``stream_limit``)."""
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        conn.request("GET", "/__emulator__/service")
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return int(answer.get("in_flight", {}).get(f"{emu.project}.{table}", 0))


def kill_worker_mid_block(
    cluster: AirflowCluster, emu: Any, run_id: str, table: str, wait: Callable[..., Any]
) -> tuple[Worker, int, int]:
    """Once every running writer is inside a block body, SIGKILL the worker running most.

    The per-connection cap makes each block body take seconds; when the emulator receives
    as many block bodies as there are running writer tasks, each of them is mid-block. Then
    every process of the worker running the most writers gets SIGKILL at once. Returns the
    worker, how many writers it ran and how many block bodies were in flight then.
    """

    def all_streaming() -> tuple[dict[str, list[str]], int] | None:
        writers = running_writers(cluster, run_id)
        running = sum(len(ids) for ids in writers.values())
        streams = streams_in_flight(emu, table)
        return (writers, streams) if running and streams >= running else None

    writers, streams = wait(
        all_streaming,
        timeout=300,
        interval=0.1,
        message=lambda: f"every running writer to be inside a block\n{cluster.logs_tail()}",
    )
    name = max(writers, key=lambda n: len(writers[n]))
    victim = next(w for w in cluster.workers if w.name == name)
    cluster.kill_worker(victim)
    return victim, len(writers[name]), streams


def attempts_by_worker(cluster: AirflowCluster, run_id: str) -> dict[str, list[str]]:
    """Which worker ran which try of which task (from where each task log was written),
    e.g. ``{"worker2": ["write_blocks[0] try 2", ...]}``."""
    found: dict[str, list[str]] = {}
    for worker in cluster.workers:
        logs = worker.root / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
        for path in sorted(logs.glob("task_id=*/**/attempt=*.log")):
            task = path.relative_to(logs).parts[0].removeprefix("task_id=")
            index = [p.removeprefix("map_index=") for p in path.parts if p.startswith("map_")]
            label = f"{task}[{index[0]}]" if index else task
            found.setdefault(worker.name, []).append(f"{label} try {path.stem.split('=')[1]}")
    return found


def deferred_to_triggerer(cluster: AirflowCluster, run_id: str, task_id: str) -> bool:
    """Whether the triggerer ran a trigger for the task (it writes the trigger's log)."""
    logs = cluster.root / "triggerer" / "airflow" / "logs" / f"dag_id={DAG_ID}"
    return any((logs / f"run_id={run_id}" / f"task_id={task_id}").glob("*.log.trigger.*"))


def xcom(cluster: AirflowCluster, run_id: str, task_id: str, map_index: int = -1) -> Any:
    rows = cluster.query(
        "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
        "AND map_index = %s AND key = 'return_value'",
        DAG_ID,
        run_id,
        task_id,
        map_index,
    )
    if not rows:
        return None
    value = rows[0][0]
    return json.loads(value) if isinstance(value, str | bytes) else value


def read_partition(emu: Any, table: str, partition: str) -> pd.DataFrame:
    """Every row of the partition, read back through the tunnel."""
    odps = ODPS(emu.access_id, emu.secret_access_key, emu.project, endpoint=emu.endpoint)
    session = TableTunnel(odps).create_download_session(table, partition_spec=partition)
    frames = []
    step = 200_000
    for start in range(0, session.count, step):
        with session.open_arrow_reader(start, min(step, session.count - start)) as reader:
            frames.append(reader.read().to_pandas())
    if not frames:
        return pd.DataFrame(columns=["id", "item", "amount", "payload"])
    return pd.concat(frames, ignore_index=True)


@dataclass
class RunReport:
    """What one run did and whether it loaded every source row exactly once."""

    run_id: str
    state: str
    seconds: float
    write_seconds: float
    rows: int
    nbytes: int
    planned_blocks: list[int]
    written_blocks: list[int]
    successful_commits: int
    distinct_ids: int
    checksum_ok: bool
    writer_tries: dict[int, int] = field(default_factory=dict)
    other_tasks: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return (
            self.state == "success"
            and self.planned_blocks == self.written_blocks
            and self.successful_commits == 1
            and self.distinct_ids == self.rows
            and self.checksum_ok
        )

    @property
    def throughput(self) -> float:
        """MB (10**6 bytes) of block data per second of the write phase (first writer
        start to last writer end)."""
        return self.nbytes / 1e6 / self.write_seconds if self.write_seconds else 0.0


def check_run(
    cluster: AirflowCluster,
    emu: Any,
    run_id: str,
    state: str,
    table: str,
    day: datetime.date,
    source: Source,
) -> RunReport:
    """Compare what the run committed with the plan and the source."""
    times = cluster.query(
        "SELECT extract(epoch FROM end_date - start_date) FROM dag_run "
        "WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id,
    )
    writes = cluster.query(
        "SELECT extract(epoch FROM max(end_date) - min(start_date)) FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND task_id = 'write_blocks'",
        DAG_ID,
        run_id,
    )
    plan = xcom(cluster, run_id, "plan") or []
    planned = sorted(int(b["block_id"]) for work in plan for b in work["blocks"])
    session = upload_session_id(cluster, run_id) or ""
    log = requests_of(emu, session)
    written = sorted(
        {
            int(e["params"]["blockid"])
            for e in log
            if e["method"] == "PUT" and "blockid" in e["params"] and e["status"] == 200
        }
    )
    commits = [
        e for e in log if e["method"] == "POST" and "uploadid" in e["params"] and e["status"] == 200
    ]
    tries = {
        int(m): int(t)
        for m, t in cluster.query(
            "SELECT map_index, try_number FROM task_instance WHERE dag_id = %s "
            "AND run_id = %s AND task_id = 'write_blocks'",
            DAG_ID,
            run_id,
        )
    }
    others = {
        t: (s, int(n))
        for t, s, n in cluster.query(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = %s "
            "AND run_id = %s AND task_id <> 'write_blocks'",
            DAG_ID,
            run_id,
        )
    }
    nbytes = sum(int(w["bytes"]) for i in tries if (w := xcom(cluster, run_id, "write_blocks", i)))
    frame = read_partition(emu, table, f"ds={day.isoformat()}")
    return RunReport(
        run_id=run_id,
        state=state,
        seconds=float(times[0][0] or 0) if times else 0.0,
        write_seconds=float(writes[0][0] or 0) if writes else 0.0,
        rows=len(frame),
        nbytes=nbytes,
        planned_blocks=planned,
        written_blocks=written,
        successful_commits=len(commits),
        distinct_ids=int(frame["id"].nunique()) if len(frame) else 0,
        checksum_ok=len(frame) == source.rows and rows_checksum(frame) == source.checksum,
        writer_tries=tries,
        other_tasks=others,
    )


def wait_cluster_ready(cluster: AirflowCluster, wait: Callable[..., Any]) -> None:
    """Wait for the API server, scheduler, every worker and the parsed DAG."""
    started = time.monotonic()
    for what, check in (
        ("the API server", cluster.api_ready),
        ("the scheduler", cluster.scheduler_ready),
        (f"the DAG {DAG_ID} to be parsed", lambda: cluster.dag_parsed(DAG_ID)),
        ("every Celery worker", lambda: all(w.ready() for w in cluster.live_workers())),
    ):
        wait(
            lambda check=check: check() or _crashed(cluster),
            timeout=max(60.0, 300 - (time.monotonic() - started)),
            interval=0.5,
            message=lambda what=what: f"{what}\n{cluster.logs_tail()}",
        )


def emulator_env(emu: Any) -> dict[str, str]:
    """The ``odps_tunnel_default`` connection to ``emu``, for every component's environment."""
    conn = {
        "conn_type": "odps_tunnel",
        "login": emu.access_id,
        "password": emu.secret_access_key,
        "extra": {"project": emu.project, "endpoint": emu.endpoint},
    }
    return {"AIRFLOW_CONN_ODPS_TUNNEL_DEFAULT": json.dumps(conn)}
