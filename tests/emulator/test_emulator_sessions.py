"""Stream upload, upsert, preview and volume sessions, driven by pyodps."""

from __future__ import annotations

import datetime as dt

import pytest
from signed_requests import signed

from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column


def _records(tunnel, table, **kw) -> list[list]:
    session = tunnel.create_download_session(table, **kw)
    with session.open_record_reader(0, session.count) as reader:
        return [list(r.values) for r in reader]


def test_stream_upload_slots_and_abort_keeps_data(tunnel, emulator_table, emulator):
    table = emulator_table("a bigint, b string", partitions="pt string")
    session = tunnel.create_stream_upload_session(
        table, partition_spec="pt=s1", create_partition=True, slot_num=3
    )
    assert len(session.slots) == 3
    with session.open_record_writer() as writer:
        for i in range(50):
            writer.write(session.new_record([i, f"v{i}"]))
            if i % 10 == 9:
                writer.flush()  # each flush is one auto-committed PUT
    # Written data is visible without any commit call.
    assert sorted(r[0] for r in _records(tunnel, table, partition_spec="pt=s1")) == list(range(50))
    session.abort()
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 50
    session.reload()
    assert session.status == "closed"


def test_stream_upload_compressed(tunnel, emulator_table):
    table = emulator_table("a bigint, b string")
    session = tunnel.create_stream_upload_session(table, compress_algo="zstd")
    with session.open_record_writer(compress=True) as writer:
        for i in range(20):
            writer.write(session.new_record([i, "x" * i]))
    assert [r[1] for r in _records(tunnel, table)] == ["x" * i for i in range(20)]


def test_upsert_with_deletes_over_buckets(tunnel, emulator_table, emulator):
    table = emulator_table("k bigint, name string, score double", primary_key=["k"], buckets=5)
    session = tunnel.create_upsert_session(table, slot_num=2)
    assert sorted(session.buckets) == [0, 1, 2, 3, 4]
    stream = session.open_upsert_stream()
    for k in range(40):
        stream.upsert(session.new_record([k, f"n{k}", k * 1.0]))
    for k in range(0, 40, 4):
        stream.delete(session.new_record([k, None, None]))
    stream.upsert(session.new_record([1, "renamed", -1.0]))
    stream.close()
    session.commit()

    data = emulator.catalog.read_table(emulator.project, table).to_pylist()
    by_key = {row["k"]: row for row in data}
    assert sorted(by_key) == [k for k in range(40) if k % 4]
    assert by_key[1]["name"] == "renamed" and by_key[1]["score"] == -1.0
    assert by_key[2]["name"] == "n2"

    second = tunnel.create_upsert_session(table)
    stream = second.open_upsert_stream()
    stream.upsert(second.new_record([0, "back", 0.5]))
    stream.delete(second.new_record([3, None, None]))
    stream.close()
    second.commit()
    keys = sorted(r[0] for r in _records(tunnel, table))
    assert keys == sorted([0] + [k for k in range(40) if k % 4 and k != 3])


def test_upsert_abort_discards(tunnel, emulator_table, emulator):
    table = emulator_table("k string, v bigint", primary_key=["k"], buckets=3)
    session = tunnel.create_upsert_session(table)
    stream = session.open_upsert_stream()
    stream.upsert(session.new_record(["a", 1]))
    stream.close()
    session.abort()
    assert emulator.catalog.read_table(emulator.project, table).num_rows == 0


def test_upsert_partitioned_table_with_datetime_key(tunnel, emulator_table, emulator):
    table = emulator_table(
        "k datetime, s string, v bigint", partitions="pt string", primary_key=["k", "s"], buckets=4
    )
    emulator.catalog.create_partition(emulator.project, table, "pt=p1")
    session = tunnel.create_upsert_session(table, partition_spec="pt=p1")
    stream = session.open_upsert_stream()
    base = dt.datetime(2024, 3, 1, 10)
    for i in range(12):
        stream.upsert(session.new_record([base + dt.timedelta(hours=i), f"s{i % 3}", i]))
    stream.upsert(session.new_record([base, "s0", 100]))
    stream.close()
    session.commit()
    rows = emulator.catalog.read_table(emulator.project, table, "pt=p1").to_pylist()
    assert len(rows) == 12
    assert [r["v"] for r in rows if r["k"] == base] == [100]


def test_preview_includes_partition_columns_and_limit(tunnel, emulator_table, odps_entry):
    table = emulator_table("a bigint, b string, c timestamp", partitions="pt string")
    for pt, n in (("x", 5), ("y", 7)):
        session = tunnel.create_upload_session(
            table, partition_spec=f"pt={pt}", create_partition=True
        )
        with session.open_record_writer(0) as writer:
            for i in range(n):
                writer.write(session.new_record([i, f"{pt}{i}", None]))
        session.commit([0])
    table_obj = odps_entry.get_table(table)
    with tunnel.open_preview_reader(table_obj, partition_spec="pt=y") as reader:
        data = reader.read()
    assert data.num_rows == 7 and data.column("pt").to_pylist() == ["y"] * 7
    with tunnel.open_preview_reader(table_obj, limit=6, columns=["b", "a"]) as reader:
        data = reader.read()
    assert data.num_rows == 6 and sorted(data.column_names) == ["a", "b"]
    assert data.column("b").to_pylist() == ["x0", "x1", "x2", "x3", "x4", "y0"]


def test_preview_empty_table(tunnel, emulator_table, odps_entry):
    table = odps_entry.get_table(emulator_table("a bigint"))
    with tunnel.open_preview_reader(table) as reader:
        assert reader.read() is None or reader.read().num_rows == 0


@pytest.mark.parametrize("compress", [False, True])
def test_volume_files_round_trip(odps_entry, emulator, compress):
    from odps.tunnel import VolumeTunnel

    volume = f"vol_{int(compress)}"
    emulator.catalog.create_volume(emulator.project, volume, if_not_exists=True)
    tunnel = VolumeTunnel(odps_entry, endpoint=emulator.tunnel_endpoint)
    payload = bytes(range(256)) * 4000 + b"tail"
    upload = tunnel.create_upload_session(volume, "part1", compress_algo="zlib")
    with upload.open("dir/data.bin", compress=compress) as writer:
        writer.write(payload)
    with upload.open("small.txt", compress=compress) as writer:
        writer.write(b"line one\r\nline two\r\n")
    upload.commit(["dir/data.bin", "small.txt"])

    download = tunnel.create_download_session(volume, "part1", "dir/data.bin", compress_algo="zlib")
    assert download.file_length == len(payload)
    with download.open() as reader:
        assert reader.read() == payload
    with tunnel.create_download_session(volume, "part1", "small.txt").open(
        start=5, length=8
    ) as reader:
        assert reader.read() == payload[:0] + b"one\r\nlin"


# --- create_partition: one reading for upload and stream sessions ------------------------
# pyodps sends ``create_partition=true`` for upload sessions and a bare ``create_partition``
# (empty value) for stream sessions; ``false`` and ``0`` must mean "off" for both kinds.

_CREATE_PATHS = {"upload": ("", {"uploads": "1"}), "stream": ("/streams", {})}


def _create(emulator, table: str, kind: str, extra: dict[str, str]):
    suffix, params = _CREATE_PATHS[kind]
    path = f"/projects/{emulator.project}/tables/{table}{suffix}"
    return path, signed(emulator, "POST", path, {**params, "partition": "pt=new", **extra})


def _partitions(emulator, table: str) -> list[str]:
    return [spec.to_param() for spec in emulator.catalog.list_partitions(emulator.project, table)]


@pytest.mark.parametrize("kind", ["upload", "stream"])
@pytest.mark.parametrize("flag", [None, "false", "FALSE", "0"])
def test_missing_partition_refused_without_create_partition(emulator, emulator_table, kind, flag):
    table = emulator_table("a bigint", partitions="pt string")
    extra = {} if flag is None else {"create_partition": flag}
    _, resp = _create(emulator, table, kind, extra)
    assert resp.status_code == 404, resp.text
    assert resp.json()["Code"] == "NoSuchPartition"
    assert _partitions(emulator, table) == []


@pytest.mark.parametrize("kind", ["upload", "stream"])
@pytest.mark.parametrize("flag", ["", "true", "True", "1"])
def test_create_partition_creates_missing_partition(emulator, emulator_table, kind, flag):
    table = emulator_table("a bigint", partitions="pt string")
    path, resp = _create(emulator, table, kind, {"create_partition": flag})
    assert resp.status_code == 200, resp.text
    body = encode_rows([Column("a", "bigint")], [[1], [2]])
    if kind == "upload":
        upload_id = resp.json()["UploadID"]
        put = signed(emulator, "PUT", path, {"uploadid": upload_id, "blockid": "0"}, body=body)
        assert put.status_code == 200, put.text
        assert _partitions(emulator, table) == []  # an upload creates it at commit
        commit = signed(emulator, "POST", path, {"uploadid": upload_id})
        assert commit.status_code == 200, commit.text
    else:
        params = {"uploadid": resp.json()["session_name"], "slotid": "0"}
        put = signed(emulator, "PUT", path, params, body=body)
        assert put.status_code == 200, put.text
    assert _partitions(emulator, table) == ["pt=new"]
    rows = emulator.catalog.read_table(emulator.project, table, "pt=new").to_pylist()
    assert [r["a"] for r in rows] == [1, 2]


@pytest.mark.parametrize("kind", ["upload", "stream"])
@pytest.mark.parametrize("create_partition", [False, True])
def test_pyodps_create_partition_flag(tunnel, emulator_table, emulator, kind, create_partition):
    """What pyodps itself sends for each kind is read as it means it."""
    from odps import errors

    table = emulator_table("a bigint", partitions="pt string")
    create = {
        "upload": tunnel.create_upload_session,
        "stream": tunnel.create_stream_upload_session,
    }[kind]
    if not create_partition:
        with pytest.raises(errors.NoSuchPartition):
            create(table, partition_spec="pt=new", create_partition=False)
        assert _partitions(emulator, table) == []
        return
    session = create(table, partition_spec="pt=new", create_partition=True)
    if kind == "upload":
        with session.open_record_writer(0) as writer:
            writer.write(session.new_record([7]))
        session.commit([0])
    else:
        with session.open_record_writer() as writer:
            writer.write(session.new_record([7]))
    assert _partitions(emulator, table) == ["pt=new"]
    assert [r[0] for r in _records(tunnel, table, partition_spec="pt=new")] == [7]


def test_upsert_never_creates_partitions(emulator, emulator_table):
    table = emulator_table("k bigint, v bigint", partitions="pt string", primary_key=["k"])
    path = f"/projects/{emulator.project}/tables/{table}/upserts"
    params = {"slotnum": "1", "partition": "pt=new", "create_partition": "true"}
    resp = signed(emulator, "POST", path, params)
    assert resp.status_code == 404 and resp.json()["Code"] == "NoSuchPartition"


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("false", [1, 2]),
        ("0", [1, 2]),
        ("", [1, 2]),
        ("1", [1, 2]),
        ("yes", [1, 2]),
        ("true", [2]),
        ("TRUE", [2]),
    ],
)
def test_upload_overwrite_flag(emulator, emulator_table, flag, expected):
    """Only ``overwrite=true`` (what pyodps and our client send, protocol §3.2) replaces the
    data: overwriting destroys rows, so no other spelling may do it in CI when production
    might append."""
    table = emulator_table("a bigint")
    path = f"/projects/{emulator.project}/tables/{table}"
    for value in (1, 2):
        params = {"uploads": "1"} if value == 1 else {"uploads": "1", "overwrite": flag}
        upload_id = signed(emulator, "POST", path, params).json()["UploadID"]
        body = encode_rows([Column("a", "bigint")], [[value]])
        put = signed(emulator, "PUT", path, {"uploadid": upload_id, "blockid": "0"}, body=body)
        assert put.status_code == 200, put.text
        assert signed(emulator, "POST", path, {"uploadid": upload_id}).status_code == 200
    rows = emulator.catalog.read_table(emulator.project, table).to_pylist()
    assert sorted(r["a"] for r in rows) == expected
