"""Durable file operations: the only way the emulator changes committed state on disk.

A file is published by writing it under a temporary name in the same directory, flushing
and fsyncing it, renaming it over the target (atomic on POSIX) and fsyncing the directory so
the rename itself survives a power cut. A reader therefore sees the old or the new version,
never a mix, whatever instant the process is killed at.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "fsync_file", "atomic_write_bytes", "atomic_write_json", "read_json"]

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Persist the entries (creations, renames, deletions) of directory ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Persist the contents of an existing file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, before_rename: Any = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    ``before_rename`` (optional callable) runs once the new contents are durable under the
    temporary name and before they are published: the crash tests pause there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, before_rename: Any = None) -> None:
    atomic_write_bytes(
        path, json.dumps(obj, ensure_ascii=False, indent=1).encode(), before_rename=before_rename
    )


def read_json(path: Path) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())
