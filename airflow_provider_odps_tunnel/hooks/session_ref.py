"""``SessionRef``: a tunnel session by id, as tasks hand it to each other through XCom."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SESSION_KINDS", "SessionRef"]

#: Session kinds a ``SessionRef`` can name.
SESSION_KINDS = ("upload", "download", "instance_download", "upsert", "stream")


@dataclass(frozen=True)
class SessionRef:
    """A tunnel session by id: what one task hands the next through XCom.

    ``table`` is fully qualified (``project.table`` or ``project.schema.table``) so that a
    downstream task reattaches to the same table whatever its own default project is.
    ``compression`` and ``overwrite`` repeat how the session was opened, because the
    writers of an upload session must compress the way the session was created.
    ``instance_id`` is set (and ``table`` empty) for SQL result downloads.
    """

    kind: str
    session_id: str
    table: str = ""
    partition: str | None = None
    compression: str | None = None
    overwrite: bool = False
    instance_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SESSION_KINDS:
            raise ValueError(f"unknown session kind {self.kind!r}; expected one of {SESSION_KINDS}")
        if not self.session_id:
            raise ValueError("a session reference needs a session id")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in XCom and in the task state store."""
        return asdict(self)

    @classmethod
    def of(cls, value: SessionRef | dict[str, Any]) -> SessionRef:
        """Accept a ``SessionRef`` or its dict form (an XCom value)."""
        if isinstance(value, SessionRef):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"expected a session reference (dict), got {type(value).__name__}")
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def target(self) -> str:
        """``table`` or ``table/partition``, for messages and asset events."""
        if self.instance_id:
            return f"instance {self.instance_id}"
        return f"{self.table}/{self.partition}" if self.partition else self.table
