"""The pipe between the event loop receiving a body and the worker decoding it."""

from __future__ import annotations

import asyncio
import threading

from airflow_provider_odps_tunnel.emulator.errors import EmulatorError
from airflow_provider_odps_tunnel.emulator.ingest import BodyPipe, abort_pipes


def _pipe_holding(*chunks: bytes) -> BodyPipe:
    async def fill() -> BodyPipe:
        pipe = BodyPipe(asyncio.get_running_loop())
        for chunk in chunks:
            await pipe.put(chunk)
        return pipe

    return asyncio.run(fill())


def test_aborting_open_pipes_releases_a_waiting_reader():
    pipe = _pipe_holding(b"partial body")
    outcome: list[BaseException | bytes] = []

    def worker() -> None:
        try:
            while pipe.read(4):
                pass
        except EmulatorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    thread.join(timeout=0.2)
    assert thread.is_alive()  # waiting for bytes that will never come
    abort_pipes({pipe})
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and outcome[0].code == "IncompleteBody"


def test_a_finished_body_reads_to_the_end():
    pipe = _pipe_holding(b"abc", b"defg")
    pipe.finish(ok=True)
    assert pipe.read(2) == b"ab" and pipe.read(4) == b"cdef"
    assert pipe.read() == b"g" and pipe.read() == b""


def test_a_full_pipe_holds_the_sender_until_the_reader_catches_up():
    async def send(pipe: BodyPipe, chunks: list[bytes], sent: list[int]) -> None:
        for chunk in chunks:
            await pipe.put(chunk)
            sent.append(len(chunk))
        pipe.finish(ok=True)

    async def main() -> None:
        pipe = BodyPipe(asyncio.get_running_loop(), limit=8)
        sent: list[int] = []
        sender = asyncio.create_task(send(pipe, [b"x" * 4] * 4, sent))
        await asyncio.sleep(0.05)
        assert sent == [4]  # the second put filled the pipe and waits for room
        received = await asyncio.to_thread(lambda: b"".join(iter(pipe.read, b"")))
        await sender
        assert received == b"x" * 16 and sum(sent) == 16

    asyncio.run(main())


def test_what_arrives_after_the_reader_closed_is_dropped():
    async def main() -> None:
        pipe = BodyPipe(asyncio.get_running_loop(), limit=8)
        pipe.close()
        for _ in range(4):
            await pipe.put(b"x" * 8)  # never waits: nobody will read it
        pipe.finish(ok=True)
        assert pipe.read() == b""

    asyncio.run(main())
