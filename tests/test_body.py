"""StreamingBody: the body pulled by the request's thread, or pushed by the writer's."""

from __future__ import annotations

import threading

import pytest
from polling import wait_until

from airflow_provider_odps_tunnel.tunnel.io.body import StreamingBody
from airflow_provider_odps_tunnel.tunnel.io.resend import SpooledBody


def test_pulled_body_is_every_piece_in_order_with_marks():
    got: list = []
    body = StreamingBody(lambda chunks: got.extend(chunks) or "done", chunk_size=4)
    body.write_pieces([b"ab", b"cd"])
    body.write(b"efgh")
    assert body.close() == "done"
    assert [bytes(c) for c in got] == [b"ab", b"cd", b"", b"efgh", b""]


def test_a_pushed_body_is_sent_by_the_writers_thread_after_what_was_queued():
    started = threading.Event()
    sent: list[tuple[str, list[bytes]]] = []

    def request(chunks):
        started.wait(10)  # the writer queues before the request is ready to send
        chunks.push_into(
            lambda group: sent.append((threading.current_thread().name, [bytes(c) for c in group]))
        )
        return "answered"

    body = StreamingBody(request, chunk_size=2)
    body.write_pieces([b"q1"])
    started.set()
    wait_until(lambda: body._sender is not None, timeout=10, message="the hand-over")
    body.write_pieces([b"p1", b"p2"])
    body.write_pieces([b"p3"])
    assert body.close() == "answered"
    assert sent == [
        ("tunnel-body", [b"q1"]),
        ("MainThread", [b"p1", b"p2"]),
        ("MainThread", [b"p3"]),
    ]


def test_a_failed_push_fails_the_request_and_the_rest_is_queued_for_a_resend():
    """The writer does not see the send's error; the spool gets the whole body."""
    outcome: dict = {}

    def request(chunks):
        spool = SpooledBody(chunks, max_memory=1 << 20)
        calls = []

        def send(group):
            calls.append(group)
            if len(calls) > 1:
                raise ConnectionResetError("peer went away")

        try:
            spool.first_pass().push_into(send)
        except ConnectionResetError as exc:
            outcome["raised"] = exc
        outcome["whole"] = spool.drain()
        outcome["aborted"] = spool.aborted
        outcome["body"] = b"".join(bytes(c) for c in spool)
        spool.close()
        return len(calls)

    body = StreamingBody(request, chunk_size=2)
    body.write_pieces([b"aa"])  # starts the request, which sends it
    wait_until(lambda: body._sender is not None, timeout=10, message="the hand-over")
    body.write_pieces([b"bb"])  # pushed: the send fails in this thread, silently
    body.write_pieces([b"cc"])  # queued again
    body.write_pieces([b"dd"])
    assert body.close() == 2
    assert isinstance(outcome["raised"], ConnectionResetError)
    assert outcome["whole"] is True and outcome["aborted"] is False
    assert outcome["body"] == b"aabbccdd"


def test_an_abort_while_pushing_ends_the_request_with_the_reason():
    outcome: dict = {}

    def request(chunks):
        spool = SpooledBody(chunks, max_memory=1 << 20)
        try:
            spool.first_pass().push_into(lambda group: None)
        except ValueError as exc:
            outcome["raised"] = exc
        outcome["whole"] = spool.drain()
        outcome["aborted"] = spool.aborted
        spool.close()

    body = StreamingBody(request, chunk_size=2)
    body.write_pieces([b"aa"])
    wait_until(lambda: body._sender is not None, timeout=10, message="the hand-over")
    body.write_pieces([b"bb"])
    body.abort(ValueError("the caller failed"))
    assert str(outcome["raised"]) == "the caller failed"
    assert outcome["whole"] is False and outcome["aborted"] is True


def test_the_requests_error_reaches_the_writer():
    def request(chunks):
        chunks.push_into(lambda group: None)
        raise RuntimeError("answered 500")

    body = StreamingBody(request, chunk_size=2)
    body.write_pieces([b"aa"])
    wait_until(lambda: body._sender is not None, timeout=10, message="the hand-over")
    body.write_pieces([b"bb"])
    with pytest.raises(RuntimeError, match="answered 500"):
        body.close()
