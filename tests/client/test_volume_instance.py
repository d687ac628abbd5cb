"""Volume files (emulator; FS volumes on a scripted server) and instance results.

Instance results here come from a scripted local server speaking the instance tunnel's wire
format, which lets the tests shape replies the emulator never sends (NoPermission, retries);
results of real SQL through the emulator are in test_sql_instances.py.
"""

from __future__ import annotations

import io
import json

import pytest

from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    InstanceTunnel,
    TableSchema,
    VolumeFSTunnel,
    VolumeTunnel,
    errors,
)
from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    ArrowFrameEncoder,
    serialize_batch,
)
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import odps_schema_to_arrow_schema
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.volume_framing import (
    VolumeFrameDecoder,
    VolumeFrameEncoder,
)

from .fake_server import Answer, FakeServer


@pytest.fixture
def volume(emulator):
    emulator.catalog.create_volume(emulator.project, "vol_client", if_not_exists=True)
    return "vol_client"


def test_volume_files_round_trip(odps, volume):
    tunnel = VolumeTunnel(odps)
    session = tunnel.create_upload_session(volume, "part1")
    text = b"line one\r\nline two\nlast" * 1000
    with session.open("dir//a.txt") as writer:
        writer.write(text)
    with session.open("b.bin", compress=True) as writer:
        writer.write(bytes(range(256)) * 5000)
    again = tunnel.create_upload_session(volume, "part1", upload_id=session.id)
    assert sorted(name for name, _ in again.file_list) == ["b.bin", "dir/a.txt"]
    with pytest.raises(errors.TunnelError, match="extra on the server"):
        again.commit(["b.bin"])
    again.commit(["b.bin", "dir/a.txt"])

    down = tunnel.create_download_session(volume, "part1", "dir/a.txt")
    assert down.file_length == len(text)
    assert down.open().read() == text
    # lines come as text with every ending as "\n" (pyodps's VolumeReader.readline)
    lines = list(down.open())
    assert lines[0] == "line one\n" and "".join(lines) == text.decode().replace("\r\n", "\n")
    assert down.open(start=5, length=10).read() == text[5:15]
    binary = tunnel.create_download_session(volume, "part1", "b.bin")
    reattached = tunnel.create_download_session(volume, "part1", "b.bin", download_id=binary.id)
    assert reattached.file_length == 256 * 5000
    assert reattached.open().read() == bytes(range(256)) * 5000
    with pytest.raises(errors.NoSuchObject):
        tunnel.create_download_session(volume, "part1", "missing.txt")


def test_volume_download_resumes_after_reset(odps, volume, faults):
    tunnel = VolumeTunnel(odps)
    session = tunnel.create_upload_session(volume, "part2")
    data = bytes(range(256)) * 8000
    with session.open("f.bin") as writer:
        writer.write(data)
    session.commit("f.bin")
    down = tunnel.create_download_session(volume, "part2", "f.bin")
    faults.add(method="GET", session_kind="volume", kind="reset_after_bytes", bytes=700_000)
    assert down.open().read() == data
    assert faults.injected


def test_fs_volume_reader_and_writer():
    data = b"hello fs volume\n" * 100
    framed = VolumeFrameEncoder(64)
    body = framed.feed(data) + framed.finish()
    with FakeServer() as srv:
        srv.answers += [
            Answer(200, b"", {"x-odps-volume-sessionid": "vs1"}),
            Answer(200),
            Answer(200, f"<Item><Length>{len(data)}</Length></Item>".encode()),
            Answer(200, body),
        ]
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        fs = VolumeFSTunnel(odps)
        with fs.open_writer("fsvol", "/dir/x.txt", replication=2) as writer:
            writer.write(data)
        assert fs.open_reader("fsvol", "dir/x.txt").read() == data
    post, commit, meta, get = srv.seen
    assert post.method == "POST" and post.path == "/projects/proj/volumes/fsvol"
    assert post.headers["x-odps-volume-fs-path"] == "/fsvol/dir/x.txt"
    assert post.query["replication"] == "2"
    assert VolumeFrameDecoder(io.BytesIO(post.body)).read() == data
    assert commit.method == "PUT" and commit.headers["x-odps-volume-sessionid"] == "vs1"
    assert "meta" in meta.query and meta.headers["x-odps-volume-fs-path"] == "/fsvol/dir/x.txt"
    assert get.headers["range"] == f"bytes=0-{len(data) - 1}"


INSTANCE_SCHEMA = TableSchema.from_lists(["a", "b"], ["bigint", "string"])


def instance_answers(seen) -> Answer:
    session = {
        "DownloadID": "d1",
        "Status": "normal",
        "RecordCount": 6,
        "Schema": INSTANCE_SCHEMA.to_json(),
    }
    if "data" not in seen.query:
        return Answer(200, json.dumps(session).encode())
    start, count = map(int, seen.query["rowrange"].strip("()").split(","))
    rows = [[i, f"r{i}"] for i in range(start, start + count)]
    if "arrow" in seen.query:
        import pyarrow as pa

        schema = odps_schema_to_arrow_schema(INSTANCE_SCHEMA)
        batch = pa.RecordBatch.from_pylist([{"a": a, "b": b} for a, b in rows], schema=schema)
        enc = ArrowFrameEncoder(64)
        return Answer(
            200, b"".join(bytes(p) for p in enc.feed(serialize_batch(batch))) + enc.finish()
        )
    return Answer(200, encode_rows(INSTANCE_SCHEMA.simple_columns, rows))


def test_instance_download_records_and_arrow():
    with FakeServer() as srv:
        srv.answers += [instance_answers] * 10
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        session = InstanceTunnel(odps).create_download_session("inst1")
        assert session.id == "d1" and session.count == 6
        assert [r.values for r in session.open_record_reader(0, 6)] == [
            [i, f"r{i}"] for i in range(6)
        ]
        assert session.open_arrow_reader(2, 3).read().column("a").to_pylist() == [2, 3, 4]
        again = InstanceTunnel(odps).create_download_session("inst1", download_id="d1")
        assert again.count == 6
    create = srv.seen[0]
    assert create.method == "POST" and create.path == "/projects/proj/instances/inst1"
    assert "downloads" in create.query and create.headers["x-odps-tunnel-version"] == "6"
    assert srv.seen[1].query["rowrange"] == "(0,6)" and "data" in srv.seen[1].query


def test_instance_limited_retry_on_no_permission():
    denied = json.dumps({"Code": "NoPermission", "Message": "protected"}).encode()
    with FakeServer() as srv:
        srv.answers += [Answer(403, denied), instance_answers]
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        session = InstanceTunnel(odps).create_download_session("inst1")
        assert session.count == 6
    assert "instance_tunnel_limit_enabled" in srv.seen[1].query


def test_instance_on_the_emulator_is_an_error(odps):
    with pytest.raises(errors.ServerError) as info:
        InstanceTunnel(odps).create_download_session("no_such_instance")
    assert info.value.status >= 400 and info.value.request_id
