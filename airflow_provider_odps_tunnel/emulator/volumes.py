"""Volumes on disk: metadata, partitions of partitioned volumes, the tree of file-system ones.

A volume is ``projects/<p>/volumes/<v>/`` with ``volume.json`` (name, type, comment,
creation time). A partitioned ("old") volume keeps committed files under
``files/<partition>/<name>``; a file-system ("new") volume keeps its tree under ``fs/``, so
``/<v>/a/b.txt`` (the ``x-odps-volume-fs-path`` form pyodps sends) is ``fs/a/b.txt``. This
module knows paths, names and listings; the HTTP side is ``handlers/volume.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog
from .errors import EmulatorError
from .fsutil import fsync_dir, read_json

__all__ = [
    "OLD",
    "NEW",
    "VolumeInfo",
    "volume_info",
    "partition_dir",
    "list_partitions",
    "list_files",
    "tree_size",
    "FsPath",
    "fs_path",
    "make_dirs",
    "remove",
    "move",
    "make_parents",
    "page",
]

OLD, NEW = "old", "new"
# Longest name (bytes) of a file path, and of one part of it: longer ones the OS refuses.
_MAX_NAME, _MAX_PART = 1024, 255


@dataclass(frozen=True)
class VolumeInfo:
    """An existing volume: its name, type (``old``/``new``), comment, times and directory."""

    project: str
    name: str
    type: str
    comment: str
    created: float
    path: Path

    @property
    def modified(self) -> float:
        return max(self.created, self.path.stat().st_mtime)

    def require(self, kind: str) -> VolumeInfo:
        """This volume if it is of type ``kind``; ``InvalidArgument`` otherwise (inferred)."""
        if self.type != kind:
            what = "partitioned" if kind == OLD else "file-system"
            raise EmulatorError.invalid_argument(f"volume {self.name} is not a {what} volume")
        return self


def volume_info(catalog: Catalog, project: str, name: str) -> VolumeInfo:
    """The volume ``name`` (``NoSuchVolume`` if missing); volumes without a type are ``old``."""
    path = catalog.volume_dir(project, name)
    meta = read_json(path / "volume.json")
    return VolumeInfo(
        project,
        name,
        meta.get("type", OLD),
        meta.get("comment", ""),
        float(meta.get("created") or path.stat().st_mtime),
        path,
    )


def check_name(name: str) -> str:
    """A relative file name with single slashes; ``InvalidArgument`` for ``..``, NUL, too long."""
    parts = [p for p in name.split("/") if p]
    if (
        not parts
        or "\x00" in name
        or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME
        or any(
            p in (".", "..") or len(p.encode("utf-8", "surrogatepass")) > _MAX_PART for p in parts
        )
    ):
        raise EmulatorError.invalid_argument(f"invalid volume file name {name!r}")
    return "/".join(parts)


# ---------------------------------------------------------------- partitioned volumes
def partition_dir(info: VolumeInfo, partition: str) -> Path:
    """The directory of ``partition`` (which need not exist yet)."""
    if partition in ("", ".", "..") or "/" in partition or "\x00" in partition:
        raise EmulatorError.invalid_argument(f"invalid volume partition {partition!r}")
    return info.require(OLD).path / "files" / partition


def existing_partition(info: VolumeInfo, partition: str) -> Path:
    """The directory of an existing partition; ``NoSuchPartition`` (404) otherwise."""
    path = partition_dir(info, partition)
    if not path.is_dir():
        raise EmulatorError(
            "NoSuchPartition", f"volume {info.name} has no partition {partition}", 404
        )
    return path


def list_partitions(info: VolumeInfo) -> list[str]:
    """Partition names of a partitioned volume, sorted (a partition exists once it has files)."""
    root = info.require(OLD).path / "files"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def list_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative ``a/b`` name, sorted."""
    return sorted(str(p.relative_to(root).as_posix()) for p in _walk_files(root))


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            yield Path(dirpath) / name


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, number of files) under ``root``; (0, 0) when it does not exist."""
    length = count = 0
    for path in _walk_files(root):
        length += path.stat().st_size
        count += 1
    return length, count


# ---------------------------------------------------------------- file-system volumes
@dataclass(frozen=True)
class FsPath:
    """A path of a file-system volume: the ``/<volume>/a/b`` form and the file on disk."""

    volume: VolumeInfo
    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        return "/".join(("", self.volume.name, *self.parts))

    @property
    def disk(self) -> Path:
        return self.volume.path.joinpath("fs", *self.parts)

    @property
    def is_root(self) -> bool:
        return not self.parts

    def child(self, name: str) -> FsPath:
        return FsPath(self.volume, (*self.parts, name))

    def require_exists(self) -> Path:
        """The path on disk; ``NoSuchPath`` (404) when nothing is there."""
        if not (self.is_root or self.disk.exists()):
            raise EmulatorError("NoSuchPath", f"path {self.text} does not exist", 404)
        return self.disk


def fs_path(info: VolumeInfo, text: str | None) -> FsPath:
    """``/<volume>/a/b`` as an :class:`FsPath`; the volume part must name ``info``."""
    info.require(NEW)
    parts = [p for p in (text or "").split("/") if p]
    if not parts or parts[0] != info.name:
        raise EmulatorError.invalid_argument(
            f"volume path {text!r} does not start with /{info.name}"
        )
    rest = parts[1:]
    if rest:
        check_name("/".join(rest))
    return FsPath(info, tuple(rest))


def make_dirs(path: FsPath) -> None:
    """``mkdir -p``; ``InvalidArgument`` when a file is in the way."""
    try:
        path.disk.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EmulatorError.invalid_argument(
            f"a file is in the way of directory {path.text}"
        ) from None
    fsync_dir(path.disk.parent)


def remove(path: FsPath, recursive: bool) -> None:
    """Delete a file, or a directory (non-empty ones only when ``recursive``)."""
    disk = path.require_exists()
    if path.is_root:
        raise EmulatorError.invalid_argument("the root of a volume cannot be deleted")
    if disk.is_dir():
        if any(disk.iterdir()) and not recursive:
            raise EmulatorError.invalid_argument(
                f"directory {path.text} is not empty; delete it with recursive=true"
            )
        shutil.rmtree(disk)
    else:
        disk.unlink()
    fsync_dir(disk.parent)


def move(source: FsPath, target: FsPath) -> None:
    """Rename a file or directory; the target must not exist, its parents are created."""
    disk = source.require_exists()
    if source.is_root or target.is_root:
        raise EmulatorError.invalid_argument("the root of a volume cannot be moved")
    if target.parts[: len(source.parts)] == source.parts:
        raise EmulatorError.invalid_argument(f"cannot move {source.text} into itself")
    if target.disk.exists():
        raise EmulatorError("ObjectAlreadyExists", f"path {target.text} already exists", 409)
    make_parents(target)
    os.replace(disk, target.disk)
    fsync_dir(target.disk.parent)


def make_parents(path: FsPath) -> None:
    """Create the directories above ``path``; ``InvalidArgument`` when a file is in the way."""
    try:
        path.disk.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EmulatorError.invalid_argument(f"a file is in the way of {path.text}") from None


def page(names: list[str], marker: str | None, max_items: str | None) -> tuple[list[str], str]:
    """One page of sorted ``names`` after ``marker`` and the marker of the next ('' at the end)."""
    try:
        size = max(1, int(max_items)) if max_items else 1000
    except ValueError:
        raise EmulatorError.invalid_argument(f"invalid maxitems {max_items!r}") from None
    rest = [n for n in names if not marker or n > marker]
    chunk = rest[:size]
    return chunk, chunk[-1] if len(rest) > size else ""
