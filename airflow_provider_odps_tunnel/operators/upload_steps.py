"""The steps of a block upload that survive retries: open or reattach, write, commit.

Used by the mapped chain (one step per task) and by the single-task transfer (all steps in
one task). The rules:

* **open**: a session id remembered in the task state store is reused while the service
  still says ``normal``; otherwise a new session is opened and remembered;
* **write**: each block id is written from a fixed list of source pieces, so a rewrite
  sends the same rows and replaces the earlier write; a block is skipped when the task state
  store says it was finished in this session from this plan and the service lists it;
* **commit**: the server's block list must equal the plan; a session that is already
  committed with the planned blocks counts as committed (a retry after a commit whose
  success was not recorded), and a commit whose answer was lost is verified by the client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.ledger import BlockLedger, TaskState
from airflow_provider_odps_tunnel.operators.planning import BlockPlan, plan_blocks
from airflow_provider_odps_tunnel.operators.progress import TransferProgress
from airflow_provider_odps_tunnel.operators.sources import LoadSource
from airflow_provider_odps_tunnel.operators.table_options import TableOptions
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors

__all__ = [
    "SESSION_KEY",
    "open_upload",
    "open_or_reattach_upload",
    "write_planned_blocks",
    "commit_planned_upload",
    "plan_source_blocks",
]

#: Task-state key of the upload session a task opened.
SESSION_KEY = "upload_session"


def open_upload(hook: OdpsTunnelHook, target: TableOptions) -> SessionRef:
    """Open a block upload session on ``target``'s table as its options say."""
    ref, _ = hook.create_upload_session(
        target.table,
        target.partition,
        overwrite=target.overwrite,
        create_partition=target.create_partition,
        compression=target.compression,
        tags=target.tags,
    )
    return ref


def open_or_reattach_upload(
    hook: OdpsTunnelHook,
    state: TaskState,
    log: Any,
    target: TableOptions,
    *,
    force_rerun: bool = False,
) -> SessionRef:
    """The upload session of this task: the remembered one if still open, else a new one.

    A remembered session that was committed means this task instance ran to the end before
    and was cleared. Appending again would load the rows a second time, so unless
    ``force_rerun`` (or ``overwrite``, which replaces the data) the task fails and says so.
    """
    stored = state.get(SESSION_KEY)
    if isinstance(stored, dict) and target.matches(hook, stored, upload=True):
        ref = SessionRef.of(stored)
        status = hook.session_status(ref)
        if status == "normal":
            log.info("Reattaching to upload session %s opened by an earlier try", ref.session_id)
            return ref
        if status in ("closed", "committed") and not (target.overwrite or force_rerun):
            raise AirflowFailException(
                f"upload session {ref.session_id} of an earlier run of this task was committed "
                f"into {ref.target}; loading again would append the same rows twice. Use "
                "overwrite=True to replace the data on every run, or force_rerun=True to "
                "append again"
            )
        log.info(
            "Upload session %s of an earlier try is %s; opening a new one", ref.session_id, status
        )
    ref = open_upload(hook, target)
    state.set(SESSION_KEY, ref.to_dict())
    return ref


def _writable_session(hook: OdpsTunnelHook, ref: SessionRef) -> Any:
    if ref.kind != "upload":
        raise AirflowFailException(f"expected an upload session, got a {ref.kind} session")
    try:
        upload = hook.upload_session(ref)
    except tunnel_errors.NoSuchUpload as exc:
        raise AirflowFailException(
            f"upload session {ref.session_id} no longer exists ({exc}); clear the task that "
            "created it to start the upload again"
        ) from exc
    status = str(getattr(upload.status, "value", upload.status)).lower()
    if status != "normal":
        raise AirflowFailException(
            f"upload session {ref.session_id} is {status}, so no block can be written to it; "
            "clear the task that created it to start the upload again"
        )
    return upload


def write_planned_blocks(
    hook: OdpsTunnelHook,
    ref: SessionRef,
    blocks: Sequence[BlockPlan],
    state: TaskState,
    log: Any,
    *,
    sources: LoadSource,
    threads: int = 1,
    progress_interval: float = 10.0,
    plan_blocks: int | None = None,
) -> list[dict[str, Any]]:
    """Write every block of ``blocks`` that is not already written; one result per block.

    The blocks' pieces are read as ``sources`` says (its callable, batch size and column
    handling). ``plan_blocks``, the number of blocks in the whole plan, lets the progress
    lines name this call's share (``block 3 of 16``) when ``blocks`` is one writer's part.

    A result is ``{"block_id", "rows", "bytes", "digest", "skipped"}``; ``skipped`` says the
    block was written by an earlier try and not sent again. Blocks finished before a
    failure are recorded, so the retry only sends the rest.
    """
    upload = _writable_session(hook, ref)
    ledger = BlockLedger(state, ref.session_id)
    on_server = set(upload.blocks)
    known_rows = [b.rows for b in blocks]
    progress = TransferProgress(
        log,
        f"{_share(blocks, plan_blocks)} of the upload to {ref.target}",
        total_rows=None if None in known_rows else sum(known_rows),
        total_units=len(blocks) if len(blocks) > 1 else None,
        unit="blocks",
        interval=progress_interval,
    )
    results: dict[int, dict[str, Any]] = {}
    todo: list[BlockPlan] = []
    for block in blocks:
        record = ledger.finished(block.block_id, block.fingerprint())
        if record is not None and block.block_id in on_server:
            results[block.block_id] = _result(record, skipped=True)
            progress.unit_done(record["rows"], record["bytes"])
        else:
            todo.append(block)
    if results:
        log.info(
            "%d of %d blocks were written by an earlier try and are not sent again: %s",
            len(results),
            len(blocks),
            _ids(sorted(results)),
        )
    arrow_schema = hook.arrow_schema(upload)

    def write(block: BlockPlan) -> dict[str, Any]:
        written = hook.write_block(
            upload,
            block.block_id,
            sources.read(block.pieces, arrow_schema),
            compress=bool(ref.compression),
            on_batch=progress.add,
        )
        return {
            "block_id": block.block_id,
            "rows": written.rows,
            "bytes": written.bytes,
            "digest": written.digest,
        }

    def finished(block: BlockPlan, written: dict[str, Any]) -> None:
        record = ledger.record(block.block_id, block.fingerprint(), written)
        results[block.block_id] = _result(record, skipped=False)
        progress.unit_done()
        log.info("Block %d written: %d rows, %d bytes", block.block_id, *_counts(written))

    _run(todo, write, finished, threads)
    progress.finish()
    return [results[b.block_id] for b in blocks]


def _share(blocks: Sequence[BlockPlan], plan_blocks: int | None) -> str:
    """Which blocks a writer holds, for its progress lines: ``block 3 of 16``, ``blocks
    3-5 (3 of 16)``, or without the plan's size ``blocks 3-5``."""
    ids = [b.block_id for b in blocks]
    of = f" of {plan_blocks}" if plan_blocks else ""
    if not ids:
        return "no blocks"
    if len(ids) == 1:
        return f"block {ids[0]}{of}"
    if plan_blocks and len(ids) != plan_blocks:
        return f"blocks {_ids(ids)} ({len(ids)}{of})"
    return f"blocks {_ids(ids)}"


def _run(
    blocks: Sequence[BlockPlan],
    write: Callable[[BlockPlan], dict[str, Any]],
    finished: Callable[[BlockPlan, dict[str, Any]], None],
    threads: int,
) -> None:
    """Write blocks on ``threads`` threads; ``finished`` always runs on the calling thread
    (it writes to the task state store). On a failure, blocks already being written are
    allowed to finish (and are recorded), then the first error is raised."""
    if threads <= 1 or len(blocks) <= 1:
        for block in blocks:
            finished(block, write(block))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="odps-block") as pool:
        pending: dict[Future, BlockPlan] = {pool.submit(write, b): b for b in blocks}
        error: BaseException | None = None
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                block = pending.pop(future)
                if future.exception() is None:
                    finished(block, future.result())
                elif error is None:
                    error = future.exception()
                    for other in pending:
                        other.cancel()
            pending = {f: b for f, b in pending.items() if not f.cancelled()}
        if error is not None:
            raise error


def commit_planned_upload(
    hook: OdpsTunnelHook,
    ref: SessionRef,
    planned_blocks: Sequence[int],
    log: Any,
    *,
    rows: int | None = None,
) -> bool:
    """Commit the session with exactly ``planned_blocks``; True if this call committed it,
    False if it was already committed (by an earlier try, or a commit whose answer was lost).
    Logs the one summary line of the load (with ``rows``, the rows written, when given).

    A block list that differs from the plan, or a session that expired, fails the task
    without retries: no retry of the commit can repair either.
    """
    planned = sorted({int(b) for b in planned_blocks})
    try:
        upload = hook.upload_session(ref)
    except tunnel_errors.NoSuchUpload as exc:
        raise AirflowFailException(
            f"upload session {ref.session_id} does not exist: {exc}"
        ) from exc
    status = str(getattr(upload.status, "value", upload.status)).lower()
    already = status in ("closed", "committed")
    if not already and status != "normal":
        raise AirflowFailException(
            f"upload session {ref.session_id} is {status}: its blocks cannot be committed; "
            "clear the task that created the session to upload again"
        )
    try:
        upload.commit(planned)
    except tunnel_errors.BlockListMismatch as exc:
        raise AirflowFailException(
            f"the service holds other blocks than planned for session {ref.session_id}: "
            f"missing {_ids(exc.missing)}, unexpected {_ids(exc.extra)}"
        ) from exc
    except tunnel_errors.SessionStateError as exc:
        raise AirflowFailException(str(exc)) from exc
    counted = f"{rows:,} rows in " if rows is not None else ""
    log.info(
        "%s %s: %s%d blocks, upload session %s",
        "Already committed by an earlier try:" if already else "Committed",
        ref.target,
        counted,
        len(planned),
        ref.session_id,
    )
    return not already


def _result(record: dict[str, Any], *, skipped: bool) -> dict[str, Any]:
    return {
        "block_id": int(record["block_id"]),
        "rows": int(record["rows"]),
        "bytes": int(record["bytes"]),
        "digest": record["digest"],
        "skipped": skipped,
    }


def _counts(written: dict[str, Any]) -> tuple[int, int]:
    return int(written["rows"]), int(written["bytes"])


def _ids(ids: Sequence[int]) -> str:
    """Block ids for a log line: ``0-3, 7`` instead of a long list."""
    ids = sorted(ids)
    if not ids:
        return "none"
    spans: list[str] = []
    start = prev = ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(spans)


def plan_source_blocks(
    source: LoadSource,
    *,
    block_bytes: int,
    first_block_id: int,
    allow_empty: bool,
) -> list[BlockPlan]:
    """List the source (files, or a callable's parts) and group it into blocks."""
    pieces = source.plan_pieces(split_bytes=block_bytes, allow_empty=allow_empty)
    return plan_blocks(pieces, block_bytes=block_bytes, first_block_id=first_block_id)
