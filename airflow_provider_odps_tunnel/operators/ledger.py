"""What a task remembers across its own retries, in Airflow's task state store.

On Airflow 3 a task's own XComs are deleted when it starts a new try, so progress that a
retry must see lives in ``context["task_state_store"]`` (Airflow >= 3.3), keyed by the task
instance (and map index). Every record here names the session it belongs to, and readers
re-validate it against the service: a record of another session, or of other work, is
ignored rather than trusted.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TaskState", "BlockLedger"]


class TaskState:
    """The task state store of a running task, or an in-memory stand-in outside Airflow.

    The stand-in (``store=None``) keeps values for the life of the object, which is what a
    hook or operator used from plain Python (tests, scripts) gets.
    """

    def __init__(self, store: Any | None):
        self._store = store
        self._local: dict[str, Any] = {}

    @classmethod
    def of(cls, context: Any) -> TaskState:
        """The store of ``context`` (an Airflow task context)."""
        return cls(context.get("task_state_store") if context is not None else None)

    def get(self, key: str) -> Any:
        if self._store is None:
            return self._local.get(key)
        return self._store.get(key)

    def set(self, key: str, value: Any) -> None:
        if self._store is None:
            self._local[key] = value
        else:
            self._store.set(key, value)


class BlockLedger:
    """The blocks one writer finished in one upload session, keyed by block id.

    A record holds the block's plan fingerprint and what was sent (rows, bytes, content
    digest). ``finished`` only returns a record for the same session and the same plan,
    so a re-planned block, or a block of a new session, is written again.
    """

    def __init__(self, state: TaskState, session_id: str):
        self._state = state
        self.session_id = session_id

    @staticmethod
    def key(block_id: int) -> str:
        return f"block/{block_id}"

    def finished(self, block_id: int, fingerprint: str) -> dict[str, Any] | None:
        """The record of ``block_id`` if it was written in this session from this plan."""
        record = self._state.get(self.key(block_id))
        if (
            isinstance(record, dict)
            and record.get("session_id") == self.session_id
            and record.get("fingerprint") == fingerprint
        ):
            return record
        return None

    def record(self, block_id: int, fingerprint: str, written: dict[str, Any]) -> dict[str, Any]:
        """Remember that ``block_id`` was written completely; returns the stored record."""
        record = {"session_id": self.session_id, "fingerprint": fingerprint, **written}
        self._state.set(self.key(block_id), record)
        return record
