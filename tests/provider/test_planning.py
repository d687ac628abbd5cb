"""Block and range planning: service limits, Airflow's mapping limit, determinism."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.operators.planning import (
    MAX_BLOCK_ID,
    BlockPlan,
    plan_blocks,
    plan_row_ranges,
    split_work,
)
from airflow_provider_odps_tunnel.operators.sources import SourcePiece, callable_pieces

MB = 1024 * 1024


def files(*sizes: int) -> list[SourcePiece]:
    return [
        SourcePiece(uri=f"file:///data/f{i:05d}.parquet", format="parquet", nbytes=size)
        for i, size in enumerate(sizes)
    ]


def test_small_files_are_grouped_into_blocks_of_at_least_the_target():
    blocks = plan_blocks(files(*[10 * MB] * 20), block_bytes=64 * MB)
    assert [len(b.pieces) for b in blocks] == [7, 7, 6]
    assert [b.block_id for b in blocks] == [0, 1, 2]
    assert all(b.nbytes >= 64 * MB for b in blocks[:-1])


def test_large_files_get_a_block_each_and_ids_start_where_asked():
    blocks = plan_blocks(files(100 * MB, 200 * MB, 1), block_bytes=64 * MB, first_block_id=10)
    assert [(b.block_id, len(b.pieces)) for b in blocks] == [(10, 1), (11, 1), (12, 1)]


def test_more_pieces_than_block_ids_doubles_the_block_size():
    blocks = plan_blocks(files(*[1] * 25_000), block_bytes=1)
    assert len(blocks) <= MAX_BLOCK_ID + 1
    assert blocks[-1].block_id <= MAX_BLOCK_ID
    assert sum(len(b.pieces) for b in blocks) == 25_000


def test_callable_parts_are_one_block_each_and_limited_by_the_ids():
    blocks = plan_blocks(callable_pieces(4), block_bytes=64 * MB)
    assert [(b.block_id, b.pieces[0].part, b.pieces[0].parts) for b in blocks] == [
        (0, 0, 4),
        (1, 1, 4),
        (2, 2, 4),
        (3, 3, 4),
    ]
    with pytest.raises(ValueError, match="block ids"):
        plan_blocks(callable_pieces(11), first_block_id=19_990)


@pytest.mark.parametrize(
    "kwargs",
    [{"block_bytes": 0}, {"first_block_id": -1}, {"first_block_id": 5, "last_block_id": 4}],
)
def test_invalid_plans_are_refused(kwargs):
    with pytest.raises(ValueError):
        plan_blocks(files(1), **kwargs)


def test_block_fingerprint_depends_on_id_and_pieces():
    a = BlockPlan(0, tuple(files(5)))
    assert BlockPlan.of(a.to_dict()) == a
    assert BlockPlan.of(a.to_dict()).fingerprint() == a.fingerprint()
    assert BlockPlan(1, a.pieces).fingerprint() != a.fingerprint()
    assert BlockPlan(0, tuple(files(6))).fingerprint() != a.fingerprint()
    assert a.rows is None
    assert BlockPlan(0, (SourcePiece(uri="x", format="csv", rows=3),)).rows == 3


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=200 * MB), max_size=300),
    block_bytes=st.integers(min_value=1, max_value=256 * MB),
    first=st.integers(min_value=0, max_value=MAX_BLOCK_ID),
    max_tasks=st.integers(min_value=1, max_value=1024),
)
def test_plans_cover_every_piece_once_in_order_within_the_limits(
    sizes, block_bytes, first, max_tasks
):
    pieces = files(*sizes)
    blocks = plan_blocks(pieces, block_bytes=block_bytes, first_block_id=first)
    assert [p for b in blocks for p in b.pieces] == pieces
    assert [b.block_id for b in blocks] == list(range(first, first + len(blocks)))
    assert all(b.block_id <= MAX_BLOCK_ID for b in blocks)
    assert all(b.pieces for b in blocks)
    work = split_work(blocks, max_tasks)
    assert len(work) == min(max_tasks, len(blocks))
    assert [b for w in work for b in w] == blocks
    if work:
        counts = [len(w) for w in work]
        assert max(counts) - min(counts) <= 1
    assert plan_blocks(pieces, block_bytes=block_bytes, first_block_id=first) == blocks


@given(
    rows=st.integers(min_value=0, max_value=10**9),
    per=st.integers(min_value=1, max_value=10**7),
    most=st.integers(min_value=1, max_value=1024),
)
def test_row_ranges_cover_the_rows_exactly(rows, per, most):
    ranges = plan_row_ranges(rows, rows_per_range=per, max_ranges=most)
    assert len(ranges) <= most
    assert sum(c for _, c in ranges) == rows
    position = 0
    for start, count in ranges:
        assert start == position and count > 0
        position += count
    if rows and len(ranges) < most:
        assert all(c <= per for _, c in ranges)


def test_split_work_edge_cases():
    assert split_work([], 5) == []
    with pytest.raises(ValueError):
        split_work([], 0)
    with pytest.raises(ValueError):
        plan_row_ranges(10, rows_per_range=0, max_ranges=1)
