"""The re-send spool of streamed bodies: chunks kept by reference within one shared budget."""

from __future__ import annotations

import pytest

from airflow_provider_odps_tunnel.tunnel.io.resend import SpooledBody


def test_first_pass_then_the_whole_body_again():
    chunks = [b"abc", memoryview(b"defg"), b"", b"hi"]
    body = SpooledBody(iter(chunks), max_memory=5)
    assert list(body.first_pass()) == chunks
    assert body.complete
    assert b"".join(body) == b"abcdefghi" == b"".join(body)  # again, as often as needed
    body.close()


def test_chunks_within_the_budget_are_kept_without_a_copy():
    chunk = b"x" * 100
    body = SpooledBody(iter([chunk]), max_memory=1000)
    assert body.drain()
    assert next(iter(body)) is chunk
    body.close()


def test_bodies_share_one_budget_and_spill_the_rest_to_a_file():
    kept, spilled = b"a" * 4, b"b" * 4
    first = SpooledBody(iter([kept]), max_memory=5)
    second = SpooledBody(iter([spilled]), max_memory=5)
    assert first.drain() and second.drain()
    assert next(iter(first)) is kept  # held by reference, within the budget
    again = b"".join(second)
    assert again == spilled and again is not spilled  # read back from the file
    first.close()
    second.close()
    third = SpooledBody(iter([b"c" * 4]), max_memory=5)  # the budget is free again
    assert third.drain()
    assert next(iter(third)) == b"cccc"
    third.close()


def test_an_aborted_producer_leaves_an_incomplete_body():
    def producer():
        yield b"part"
        raise RuntimeError("writer gave up")

    body = SpooledBody(producer())
    with pytest.raises(RuntimeError):
        list(body.first_pass())
    assert body.aborted and not body.drain()
    body.close()
