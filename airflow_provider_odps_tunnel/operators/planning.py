"""Cutting work into tunnel blocks and row ranges, within the service's and Airflow's limits.

Pure functions (no I/O), shared by the mapped chain and the single-task operators:

* ``plan_blocks`` groups source pieces into blocks of at least ``block_bytes`` where the
  data allows (the service recommends >= 64 MB per block: each block becomes one file),
  numbered from ``first_block_id`` and never beyond block id 19999;
* ``split_work`` deals consecutive blocks out to at most ``max_tasks`` writers, the
  number Airflow may map (``[core] max_map_length``, 1024 by default);
* ``plan_row_ranges`` cuts a download session's rows into ranges for parallel readers.

A block is fully determined by its pieces, so a retried writer rewrites the same block id
with the same rows: the last complete write of a block id wins on the service side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_odps_tunnel.operators.sources import SourcePiece

__all__ = [
    "MAX_BLOCK_ID",
    "DEFAULT_BLOCK_BYTES",
    "BlockPlan",
    "plan_blocks",
    "split_work",
    "plan_row_ranges",
    "max_map_length",
]

#: The highest block id of an upload session (ids are 0..19999).
MAX_BLOCK_ID = 19_999
#: The block size the service recommends as a minimum.
DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class BlockPlan:
    """One block to write: its id and the source pieces that make up its rows, in order."""

    block_id: int
    pieces: tuple[SourcePiece, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"block_id": self.block_id, "pieces": [p.to_dict() for p in self.pieces]}

    @classmethod
    def of(cls, value: BlockPlan | dict[str, Any]) -> BlockPlan:
        if isinstance(value, BlockPlan):
            return value
        return cls(int(value["block_id"]), tuple(SourcePiece.of(p) for p in value["pieces"]))

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pieces)

    @property
    def rows(self) -> int | None:
        """Rows of the block if every piece's metadata gave its row count."""
        counts = [p.rows for p in self.pieces]
        return None if any(c is None for c in counts) else sum(counts)

    def fingerprint(self) -> str:
        """A digest of the block's id and pieces: equal fingerprints mean the same rows."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _group(pieces: Sequence[SourcePiece], target: int) -> list[list[SourcePiece]]:
    groups: list[list[SourcePiece]] = []
    current: list[SourcePiece] = []
    size = 0
    for piece in pieces:
        if piece.part is not None:  # a callable part has no known size: a block of its own
            if current:
                groups.append(current)
                current, size = [], 0
            groups.append([piece])
            continue
        current.append(piece)
        size += piece.nbytes
        if size >= target:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def plan_blocks(
    pieces: Sequence[SourcePiece],
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    first_block_id: int = 0,
    last_block_id: int = MAX_BLOCK_ID,
) -> list[BlockPlan]:
    """Group ``pieces`` (in order) into blocks of at least ``block_bytes`` each.

    Only the last block may be smaller. When the data would need more block ids than
    ``first_block_id .. last_block_id`` holds, the target size doubles until it fits.
    """
    if block_bytes < 1:
        raise ValueError("block_bytes must be positive")
    if not 0 <= first_block_id <= last_block_id <= MAX_BLOCK_ID:
        raise ValueError(
            f"block ids must satisfy 0 <= first ({first_block_id}) <= last ({last_block_id}) "
            f"<= {MAX_BLOCK_ID}"
        )
    capacity = last_block_id - first_block_id + 1
    parts = sum(1 for p in pieces if p.part is not None)
    if parts > capacity:
        raise ValueError(
            f"a callable source of {parts} parts needs {parts} blocks, but only {capacity} "
            f"block ids ({first_block_id}..{last_block_id}) are available"
        )
    target = block_bytes
    groups = _group(pieces, target)
    while len(groups) > capacity:
        target *= 2
        groups = _group(pieces, target)
    return [BlockPlan(first_block_id + i, tuple(g)) for i, g in enumerate(groups)]


def split_work(blocks: Sequence[BlockPlan], max_tasks: int) -> list[list[BlockPlan]]:
    """Deal ``blocks`` out, in order, to at most ``max_tasks`` writers of near-equal counts."""
    if max_tasks < 1:
        raise ValueError("max_tasks must be at least 1")
    if not blocks:
        return []
    tasks = min(max_tasks, len(blocks))
    size, extra = divmod(len(blocks), tasks)
    out: list[list[BlockPlan]] = []
    start = 0
    for i in range(tasks):
        end = start + size + (1 if i < extra else 0)
        out.append(list(blocks[start:end]))
        start = end
    return out


def plan_row_ranges(
    row_count: int, *, rows_per_range: int, max_ranges: int
) -> list[tuple[int, int]]:
    """``(start, count)`` ranges covering ``row_count`` rows: about ``rows_per_range`` rows
    each, and never more than ``max_ranges`` ranges. No rows gives no ranges."""
    if rows_per_range < 1 or max_ranges < 1:
        raise ValueError("rows_per_range and max_ranges must be at least 1")
    if row_count <= 0:
        return []
    ranges = min(max_ranges, -(-row_count // rows_per_range))
    size, extra = divmod(row_count, ranges)
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(ranges):
        count = size + (1 if i < extra else 0)
        out.append((start, count))
        start += count
    return out


def max_map_length() -> int:
    """Airflow's ``[core] max_map_length``: the most instances one mapped task may have."""
    from airflow.sdk import conf

    return conf.getint("core", "max_map_length", fallback=1024)
