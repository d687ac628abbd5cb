"""Operators run directly (``execute`` with a hand-made context and a fake task state store)
against the emulator: what each one does on a first run, a retry and a re-run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.export import (
    OdpsExportRangeOperator,
    OdpsPlanExportOperator,
)
from airflow_provider_odps_tunnel.operators.stream import OdpsStreamUploadOperator
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.operators.upload import (
    OdpsCommitUploadOperator,
    OdpsCreateUploadSessionOperator,
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)
from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator

from .data import SALES_COLUMNS, create_table, load_rows, read_table, sales_rows, write_sales_files


def context(store: Any, try_number: int = 1) -> dict[str, Any]:
    return {"task_state_store": store, "ti": SimpleNamespace(try_number=try_number, stats_tags={})}


@pytest.fixture
def sales_table(odps_conn, request) -> str:
    name = "op_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    return create_table(odps_conn, name, SALES_COLUMNS, "ds string")


def test_create_reattaches_while_the_session_is_normal(odps_conn, sales_table, state_store):
    op = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", create_partition=True
    )
    first = op.execute(context(state_store))
    assert first["table"] == f"{odps_conn.project}.{sales_table}"
    assert op.execute(context(state_store, 2)) == first
    # Committed, then the task is cleared: appending again would double the rows, so the
    # task fails and says what to do; force_rerun=True appends again on purpose.
    OdpsTunnelHook().upload_session(SessionRef.of(first)).commit([])
    with pytest.raises(AirflowFailException, match="append the same rows twice"):
        op.execute(context(state_store, 3))
    op.force_rerun = True
    third = op.execute(context(state_store, 3))
    assert third["session_id"] != first["session_id"]
    # Another target (here: overwrite) never reuses the stored session.
    other = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", overwrite=True, create_partition=True
    ).execute(context(state_store, 4))
    assert other["session_id"] != third["session_id"] and other["overwrite"] is True


def test_plan_respects_max_writers_and_airflows_map_length(tmp_path, monkeypatch):
    write_sales_files(tmp_path / "in", files=10, rows_per_file=10)
    plan = OdpsPlanUploadOperator(
        task_id="p", source=str(tmp_path / "in"), block_size=1, max_writers=4
    )
    work = plan.execute({})
    assert [len(w["blocks"]) for w in work] == [3, 3, 2, 2]
    assert [b["block_id"] for w in work for b in w["blocks"]] == list(range(10))
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    assert len(plan.execute({})) == 2


def test_plan_of_an_empty_source(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirflowFailException, match="no source files"):
        OdpsPlanUploadOperator(task_id="p", source=str(tmp_path / "empty")).execute({})
    plan = OdpsPlanUploadOperator(task_id="p", source=str(tmp_path / "empty"), allow_empty=True)
    assert plan.execute({}) == [{"blocks": [], "plan_blocks": 0}]
    with pytest.raises(AirflowFailException, match="either"):
        OdpsPlanUploadOperator(task_id="p").execute({})


def test_chain_with_a_callable_source_in_threads(odps_conn, sales_table, state_store):
    session = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", compression="zstd", create_partition=True
    ).execute(context(state_store))
    work = OdpsPlanUploadOperator(task_id="p", source_parts=6, max_writers=2).execute({})

    def source(part: int, parts: int):
        yield sales_rows(part * 100, 100).append_column("extra", pa.array([1] * 100))

    results = [
        OdpsWriteBlocksOperator(
            task_id="w",
            session=session,
            source_callable=source,
            ignore_extra_columns=True,
            threads=3,
            **kwargs,
        ).execute(context(state_store))
        for kwargs in work
    ]
    assert [r["rows"] for r in results] == [300, 300]
    committed = OdpsCommitUploadOperator(
        task_id="m", session=session, plan=work, written=results
    ).execute(context(state_store))
    assert (committed["rows"], committed["blocks"], committed["committed"]) == (600, 6, True)
    data = read_table(odps_conn, sales_table, "ds=1")
    assert sorted(data.column("id").to_pylist()) == list(range(600))


def test_extra_source_columns_fail_unless_ignored(odps_conn, sales_table, state_store):
    session = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", create_partition=True
    ).execute(context(state_store))
    work = OdpsPlanUploadOperator(task_id="p", source_parts=1).execute({})
    op = OdpsWriteBlocksOperator(
        task_id="w",
        session=session,
        source_callable=lambda part, parts: [pa.table({"id": [1], "nope": [2]})],
        **work[0],
    )
    with pytest.raises(Exception, match="nope"):
        op.execute(context(state_store))


def test_commit_refuses_blocks_that_differ_from_the_plan(odps_conn, sales_table, state_store):
    session = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", create_partition=True
    ).execute(context(state_store))
    work = OdpsPlanUploadOperator(task_id="p", source_parts=2, max_writers=1).execute({})
    only_first = {"blocks": work[0]["blocks"][:1]}
    written = OdpsWriteBlocksOperator(
        task_id="w", session=session, source_callable=lambda p, n: [sales_rows(p, 1)], **only_first
    ).execute(context(state_store))
    commit = OdpsCommitUploadOperator(task_id="m", session=session, plan=work, written=[written])
    with pytest.raises(AirflowFailException, match=r"planned blocks \[1\] were not written"):
        commit.execute(context(state_store))
    commit = OdpsCommitUploadOperator(task_id="m", session=session, plan=work)
    with pytest.raises(AirflowFailException, match="missing 1"):
        commit.execute(context(state_store))
    assert (
        OdpsCommitUploadOperator(task_id="m", session=session, written=[written]).execute(
            context(state_store)
        )["rows"]
        == 1
    )


def test_writers_and_commit_refuse_an_expired_session(odps_conn, sales_table, state_store):
    session = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", create_partition=True
    ).execute(context(state_store))
    odps_conn.faults.add(method="GET", session_kind="upload", kind="expire_session")
    with pytest.raises(AirflowFailException, match="expired"):
        OdpsWriteBlocksOperator(task_id="w", session=session, blocks=[]).execute(
            context(state_store)
        )
    with pytest.raises(AirflowFailException, match="expired"):
        OdpsCommitUploadOperator(task_id="m", session=session, plan=[{"blocks": []}]).execute(
            context(state_store)
        )


def test_single_task_transfer_resumes_after_a_crash_and_returns_after_success(
    odps_conn, sales_table, state_store, tmp_path
):
    rows = write_sales_files(tmp_path / "in", files=4, rows_per_file=250)
    op = ObjectStorageToOdpsOperator(
        task_id="t",
        table=sales_table,
        partition="ds=1",
        source=(tmp_path / "in").as_uri(),
        block_size=1,
        threads=1,
        create_partition=True,
    )
    puts = odps_conn.faults.add(method="PUT", session_kind="upload", kind="delay", nth=10**9)
    # Block 2 breaks mid-body on every attempt (the client's re-sends included) until disarmed.
    breaker = odps_conn.faults.add(
        method="PUT",
        session_kind="upload",
        resource=r"[?&]blockid=2(&|$)",
        kind="reset_after_bytes",
        bytes=64,
        times=0,
    )
    with pytest.raises(Exception, match="(?i)connection|reset|closed|abort"):
        op.execute(context(state_store, 1))
    first_session = state_store.data["upload_session"]["session_id"]
    breaker.times = breaker.fired
    result = op.execute(context(state_store, 2))
    assert result["session_id"] == first_session
    assert (result["rows"], result["blocks"]) == (rows, 4)
    # Blocks 0, 1 and the broken attempts at 2; then 2 and 3: never 0 or 1 again.
    assert puts.seen == 2 + breaker.fired + 2
    again = op.execute(context(state_store, 3))  # a re-run after success: nothing is sent
    assert again == result and puts.seen == 2 + breaker.fired + 2
    assert read_table(odps_conn, sales_table, "ds=1").num_rows == rows


def test_export_ranges_are_idempotent(odps_conn, sales_table, state_store, tmp_path):
    load_rows(odps_conn, sales_table, "ds=1", sales_rows(0, 300))
    plan = OdpsPlanExportOperator(
        task_id="p",
        table=sales_table,
        partition="ds=1",
        destination=(tmp_path / "out").as_uri(),
        rows_per_file=100,
    ).execute({})
    assert [(p["start"], p["count"]) for p in plan] == [(0, 100), (100, 100), (200, 100)]
    op = OdpsExportRangeOperator(task_id="e", columns=["id"], **plan[1])
    first = op.execute(context(state_store))
    assert (first["rows"], first["skipped"]) == (100, False)
    assert op.execute(context(state_store, 2)) == {**first, "skipped": True}
    Path(first["path"].removeprefix("file://")).unlink()
    assert op.execute(context(state_store, 3))["skipped"] is False
    data = pq.read_table(first["path"].removeprefix("file://"))
    assert data.schema.names == ["id"]
    assert data.column("id").to_pylist() == list(range(100, 200))


def test_export_of_an_empty_partition_writes_one_empty_file(odps_conn, sales_table, tmp_path):
    load_rows(odps_conn, sales_table, "ds=9", sales_rows(0, 0))
    (plan,) = OdpsPlanExportOperator(
        task_id="p", table=sales_table, partition="ds=9", destination=str(tmp_path / "out")
    ).execute({})
    result = OdpsExportRangeOperator(task_id="e", **plan).execute({})
    assert result["rows"] == 0
    assert pq.read_table(result["path"]).schema.names == ["id", "item", "amount"]
    with pytest.raises(AirflowFailException, match="either"):
        OdpsPlanExportOperator(task_id="p", destination=str(tmp_path)).execute({})


def test_stream_upload_skips_pieces_appended_by_an_earlier_try(odps_conn, state_store, tmp_path):
    table = create_table(odps_conn, "stream_retry", "id bigint, item string, amount double")
    write_sales_files(tmp_path / "in", files=3, rows_per_file=10)
    op = OdpsStreamUploadOperator(task_id="s", table=table, source=str(tmp_path / "in"))
    puts = odps_conn.faults.add(
        method="PUT", session_kind="stream", nth=2, times=1, kind="status", status=400
    )
    with pytest.raises(Exception, match="400|injected"):
        op.execute(context(state_store))
    result = op.execute(context(state_store, 2))
    assert (result["rows"], result["pieces"]) == (30, 3)
    assert puts.seen == 4  # piece 1, piece 2 (refused), then pieces 2 and 3
    assert sorted(read_table(odps_conn, table).column("id").to_pylist()) == list(range(30))


class _LazyResults(list):
    """Stands in for Airflow's lazy XCom sequence of mapped results: reading an item past
    the end is what made the API server log ``XCom not found ... offset=N``."""

    def __init__(self, items: list[Any]):
        super().__init__(items)
        self.past_the_end: list[int] = []

    def __iter__(self):
        index = 0
        while True:  # like LazyXComIterator: ask for the next offset until one is missing
            try:
                yield self[index]
            except IndexError:
                return
            index += 1

    def __getitem__(self, key):
        if isinstance(key, int) and key >= len(self):
            self.past_the_end.append(key)
        return super().__getitem__(key)


def test_commit_reads_the_writers_results_in_one_slice_and_logs_one_summary(
    odps_conn, sales_table, state_store, capsys
):
    session = OdpsCreateUploadSessionOperator(
        task_id="c", table=sales_table, partition="ds=1", create_partition=True
    ).execute(context(state_store))
    work = OdpsPlanUploadOperator(task_id="p", source_parts=3, max_writers=3).execute({})
    assert [w["plan_blocks"] for w in work] == [3, 3, 3]
    capsys.readouterr()
    results = _LazyResults(
        [
            OdpsWriteBlocksOperator(
                task_id="w",
                session=session,
                source_callable=lambda part, parts: [sales_rows(part * 10, 10)],
                **kwargs,
            ).execute(context(state_store))
            for kwargs in work
        ]
    )
    # Each writer's progress line names its share of the plan, not "1/1 done".
    target = f"{odps_conn.project}.{sales_table}/ds=1"
    logged = capsys.readouterr().out
    for n in range(3):
        assert f"block {n} of 3 of the upload to {target}: 10 rows, " in logged
    assert " done" not in logged
    commit = OdpsCommitUploadOperator(task_id="m", session=session, plan=work)
    commit.written = results  # as rendering sets it, from the mapped writers' XCom
    results.past_the_end.clear()  # (setting an operator attribute looks for XComArgs in it)
    committed = commit.execute(context(state_store))
    assert committed["rows"] == 30
    assert results.past_the_end == []
    summaries = [line for line in capsys.readouterr().out.splitlines() if "ommitted" in line]
    assert len(summaries) == 1
    assert (
        f"Committed {target}: 30 rows in 3 blocks, upload session {session['session_id']}"
        in summaries[0]
    )


def test_upsert_and_stream_drop_extra_source_columns_when_asked(odps_conn, state_store):
    """``ignore_extra_columns`` works as in the block load; the upsert keeps its delete flag."""
    keyed = create_table(
        odps_conn, "upsert_extra_cols", "id bigint, name string", primary_key=["id"], buckets=1
    )
    changes = pa.table(
        {
            "id": [1, 2, 1],
            "name": ["a", "b", "a"],
            "loaded_by": ["x", "x", "x"],  # a column the table does not have
            "deleted": [False, False, True],
        }
    )
    with pytest.raises(Exception, match="loaded_by"):
        OdpsUpsertOperator(
            task_id="u",
            table=keyed,
            source_callable=lambda p, n: [changes],
            delete_column="deleted",
        ).execute(context(state_store))
    result = OdpsUpsertOperator(
        task_id="u",
        table=keyed,
        source_callable=lambda p, n: [changes],
        delete_column="deleted",
        ignore_extra_columns=True,
    ).execute(context(state_store))
    assert (result["upserted"], result["deleted"]) == (2, 1)
    assert read_table(odps_conn, keyed).column("id").to_pylist() == [2]

    appended = create_table(odps_conn, "stream_extra_cols", "id bigint, item string")
    rows = pa.table({"id": [1, 2], "item": ["a", "b"], "loaded_by": ["x", "x"]})
    with pytest.raises(Exception, match="loaded_by"):
        OdpsStreamUploadOperator(
            task_id="s", table=appended, source_callable=lambda p, n: [rows]
        ).execute(context(state_store))
    result = OdpsStreamUploadOperator(
        task_id="s2",
        table=appended,
        source_callable=lambda p, n: [rows],
        ignore_extra_columns=True,
    ).execute(context(state_store))
    assert result["rows"] == 2
    assert sorted(read_table(odps_conn, appended).column("id").to_pylist()) == [1, 2]


def test_clearing_a_committed_chain_never_doubles_the_rows(odps_conn, sales_table, state_store):
    """The getting-started chain, run, then cleared as a whole: with ``overwrite=True`` the
    second run replaces the partition; without it the create task refuses to append again."""
    plan = OdpsPlanUploadOperator(task_id="p", source_parts=2, max_writers=2)

    def run(overwrite: bool, store: Any) -> dict[str, Any]:
        session = OdpsCreateUploadSessionOperator(
            task_id="c",
            table=sales_table,
            partition="ds=1",
            create_partition=True,
            overwrite=overwrite,
        ).execute(context(store))
        work = plan.execute({})
        written = [
            OdpsWriteBlocksOperator(
                task_id="w",
                session=session,
                source_callable=lambda part, parts: [sales_rows(part * 5, 5)],
                **kwargs,
            ).execute(context(store))
            for kwargs in work
        ]
        return OdpsCommitUploadOperator(
            task_id="m", session=session, plan=work, written=written
        ).execute(context(store))

    assert run(True, state_store)["rows"] == 10
    assert run(True, state_store)["rows"] == 10  # cleared and run again
    assert read_table(odps_conn, sales_table, "ds=1").num_rows == 10
    appending = type(state_store)()
    run(False, appending)
    with pytest.raises(AirflowFailException, match="append the same rows twice"):
        run(False, appending)
    assert read_table(odps_conn, sales_table, "ds=1").num_rows == 20
