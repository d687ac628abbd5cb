"""The emulator's HTTP protocol hands request bodies over intact, however they are cut."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading

import pytest
import uvicorn

from airflow_provider_odps_tunnel.emulator.http_protocol import http_protocol


async def _digest_app(scope, receive, send):
    """Answers the MD5 and size of the request body, and the pieces it came in."""
    digest, size, pieces = hashlib.md5(usedforsecurity=False), 0, 0
    more = True
    while more:
        message = await receive()
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        digest.update(body)
        size += len(body)
        pieces += 1
        more = message.get("more_body", False)
    answer = f"{digest.hexdigest()} {size} {pieces}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_digest_app, http=http_protocol(), log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not instance.started:
        thread.join(0.01)
    yield sock.getsockname()[1]
    instance.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("chunk", [7, 65536, 1 << 20])
def test_a_chunked_body_arrives_whole(server, chunk):
    body = os.urandom(3 * 1024 * 1024 + 11)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    pieces = (body[i : i + chunk] for i in range(0, len(body), chunk))
    conn.request("PUT", "/", body=pieces, encode_chunked=True)
    digest, size, received = conn.getresponse().read().decode().split()
    conn.close()
    assert (digest, int(size)) == (hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body))
    if chunk == 7:  # many pieces were joined into each message the application read
        assert int(received) < len(body) // chunk
