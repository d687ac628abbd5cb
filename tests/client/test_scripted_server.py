"""Behaviour the emulator does not provoke, on a scripted server: upsert slot
reassignment (HTTP 308), asynchronous upsert commits and download sessions that are
prepared asynchronously, with their timeouts."""

from __future__ import annotations

import json

import pytest

from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    TableSchema,
    TableTunnel,
    errors,
)

from .fake_server import Answer, FakeServer

SCHEMA = TableSchema.from_lists(["k", "v"], ["bigint", "string"])


def session_json(status: str = "normal", server: str = "127.0.0.1:1") -> bytes:
    return json.dumps(
        {
            "id": "u1",
            "status": status,
            "schema": SCHEMA.to_json(),
            "hash_key": ["k"],
            "hasher": "default",
            "slots": [{"slot_id": "0", "buckets": [0, 1], "worker_addr": server}],
        }
    ).encode()


def gone() -> Answer:
    return Answer(404, json.dumps({"Code": "UpsertSessionNotFound", "Message": "gone"}).encode())


@pytest.fixture
def server():
    with FakeServer() as srv:
        yield srv


def tunnel_for(srv: FakeServer) -> TableTunnel:
    return TableTunnel(ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint))


def test_slot_reassignment_follows_the_routed_server(server):
    server.answers += [
        Answer(200, session_json()),
        Answer(308, b"", {"odps-tunnel-routed-server": "127.0.0.1:2"}),
        Answer(200),
    ]
    session = tunnel_for(server).create_upsert_session("t")
    with session.open_upsert_stream() as stream:
        stream.upsert([1, "a"])
    first, second = server.seen[1], server.seen[2]
    assert first.method == second.method == "PUT"
    assert first.headers["odps-tunnel-routed-server"] == "127.0.0.1:1"
    assert second.headers["odps-tunnel-routed-server"] == "127.0.0.1:2"
    assert second.query["record_count"] == "1" and second.body == first.body
    assert (session.buckets[0].slot, session.buckets[0].server) == ("0", "127.0.0.1:2")


def test_commit_polls_until_the_session_is_gone(server):
    server.answers += [
        Answer(200, session_json()),
        Answer(200, session_json("committing")),  # commit
        Answer(200, session_json("committing")),  # reload
        gone(),  # commit again: the session has committed and is gone
    ]
    session = tunnel_for(server).create_upsert_session("t")
    session.commit()
    assert session.status == session.Status.Committed
    assert [s.method for s in server.seen] == ["POST", "POST", "GET", "POST"]
    assert server.seen[1].headers["odps-tunnel-routed-server"] == "127.0.0.1:1"


def test_commit_timeout(server, virtual_clock):
    server.answers += [Answer(200, session_json())]
    server.answers += [Answer(200, session_json("committing"))] * 4
    session = tunnel_for(server).create_upsert_session("t", commit_timeout=0.5)
    with pytest.raises(errors.CommitTimeout) as info:
        session.commit()
    assert info.value.session_id == "u1"
    # The 1 s pause is cut to the 0.5 s left; the commit is looked at once more then.
    assert virtual_clock.sleeps == [0.5]
    assert [s.method for s in server.seen] == ["POST", "POST", "GET", "POST", "GET"]


def test_commit_is_polled_with_doubling_pauses(server, virtual_clock):
    server.answers += [Answer(200, session_json())]
    server.answers += [Answer(200, session_json("committing"))] * 10
    server.answers += [Answer(200), Answer(200, session_json("committed"))]
    session = tunnel_for(server).create_upsert_session("t", commit_timeout=120)
    session.commit()
    assert session.status == session.Status.Committed
    assert virtual_clock.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_async_commit_returns_at_once(server):
    server.answers += [
        Answer(200, session_json()),
        Answer(200, session_json("committing")),
        Answer(200, session_json("committing")),
    ]
    session = tunnel_for(server).create_upsert_session("t")
    session.commit(async_=True)
    assert session.status == session.Status.Committing


def download_json(status: str) -> bytes:
    return json.dumps(
        {"DownloadID": "d1", "Status": status, "RecordCount": 3, "Schema": SCHEMA.to_json()}
    ).encode()


def test_async_download_session_is_polled_until_ready(server):
    server.answers += [
        Answer(200, download_json("initiating")),
        Answer(200, download_json("normal")),
    ]
    session = tunnel_for(server).create_download_session("t")
    assert session.status == session.Status.Normal and session.count == 3
    create, reload = server.seen
    assert create.query["asyncmode"] == "true" and "downloads" in create.query
    assert reload.method == "GET" and reload.query["downloadid"] == "d1"


def test_async_download_session_timeout(server, virtual_clock):
    server.answers += [Answer(200, download_json("initiating"))] * 2
    with pytest.raises(errors.TunnelTimeoutError, match="still initiating") as info:
        tunnel_for(server).create_download_session("t", timeout=0.05)
    assert info.value.session_id == "d1"
    assert virtual_clock.sleeps == [0.05]  # the first 0.1 s pause, cut to the time left


def test_async_download_session_is_polled_with_doubling_pauses(server, virtual_clock):
    server.answers += [Answer(200, download_json("initiating"))] * 5
    with pytest.raises(errors.TunnelTimeoutError):
        tunnel_for(server).create_download_session("t", timeout=1.0)
    assert virtual_clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.3])
    assert [s.method for s in server.seen] == ["POST"] + ["GET"] * 4


def test_async_download_poll_pauses_are_capped(server, virtual_clock):
    server.answers += [Answer(200, download_json("initiating"))] * 8
    server.answers += [Answer(200, download_json("normal"))]
    session = tunnel_for(server).create_download_session("t")
    assert session.status == session.Status.Normal
    assert virtual_clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
