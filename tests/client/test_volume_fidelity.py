"""Volumes end to end: the unchanged pyodps 0.13.2 drives the emulator's volume REST (create,
list, get, exist, delete; partitions and their files; file-system paths, directories, ranged
reads), and our client does the same scenarios where it has the API, with pyodps's requests
header by header."""

from __future__ import annotations

import io
import itertools
import random
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from odps import ODPS as PyODPS
from odps import errors as py_errors
from odps.models import FSVolumeDir, FSVolumeFile, PartedVolume
from odps.tunnel import CompressOption as PyCompressOption
from odps.tunnel import VolumeFSTunnel as PyVolumeFSTunnel
from odps.tunnel import VolumeTunnel as PyVolumeTunnel
from signed_requests import signed

from airflow_provider_odps_tunnel.emulator.server import Emulator
from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    CompressOption,
    VolumeDownloadSession,
    VolumeFSTunnel,
    VolumeTunnel,
    VolumeUploadSession,
    errors,
)
from airflow_provider_odps_tunnel.tunnel.codec.volume_framing import VolumeFrameDecoder

pytestmark = pytest.mark.filterwarnings("ignore:Call to experimental function")

_names = itertools.count()


def py_entry(emulator: Emulator) -> PyODPS:
    return PyODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        endpoint=emulator.endpoint,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )


@pytest.fixture
def name(request) -> str:
    """A volume name unique to the test."""
    return f"vol_{re.sub(r'[^a-z0-9]', '_', request.node.name.lower())[:40]}_{next(_names)}"


TEXT = b"first line\r\nsecond\rthird\nno end"
TEXT_LINES = ["first line\n", "second\n", "third\n", "no end"]


# ---------------------------------------------------------------- partitioned volumes
def test_pyodps_parted_volume_lifecycle(pyodps, name):
    pyodps.create_parted_volume(name, comment="made by pyodps")
    assert pyodps.exist_volume(name) and not pyodps.exist_volume(name + "_none")
    volume = pyodps.get_volume(name)
    assert isinstance(volume, PartedVolume)
    assert volume.type.value == "OLD" and volume.comment == "made by pyodps"
    assert volume.creation_time is not None and volume.length == 0
    listed = {v.name: v for v in pyodps.list_volumes()}
    assert isinstance(listed[name], PartedVolume)

    with volume.open_writer("p1") as writer:
        writer.write("a.txt", TEXT)
        writer.write("dir/b.bin", bytes(range(256)) * 100)
    with volume.open_writer("p2") as writer:
        writer.write("c.txt", "c")

    assert [p.name for p in volume.partitions] == ["p1", "p2"]
    part = volume.partitions["p1"]
    assert [f.name for f in part.files] == ["a.txt", "dir/b.bin"]
    assert part.length == len(TEXT) + 25600 and part.file_number == 2
    assert volume.exist_partition("p1") and not volume.exist_partition("p9")
    volume.reload()  # pyodps caches volume objects
    assert (volume.length, volume.file_number) == (len(TEXT) + 25601, 3)

    with volume.open_reader("p1", "a.txt") as reader:
        assert reader.read() == TEXT
    with volume.open_reader("p1", "a.txt") as reader:
        assert list(reader) == TEXT_LINES
    with volume.open_reader("p1", "dir/b.bin", start=10, length=20) as reader:
        assert reader.read() == (bytes(range(256)) * 100)[10:30]

    volume.delete_partition("p2")
    assert [p.name for p in volume.partitions] == ["p1"]
    pyodps.delete_volume(name)
    assert not pyodps.exist_volume(name)
    with pytest.raises(py_errors.NoSuchObject):
        pyodps.get_volume(name).reload()


def test_volume_and_file_listings_page_with_markers(pyodps, emulator, name):
    for i in range(3):
        pyodps.create_parted_volume(f"{name}_{i}")
    pyodps.create_fs_volume(f"{name}_fs")
    volumes = pyodps.get_project().volumes
    got = {v.name: type(v).__name__ for v in volumes.iterate(name=name)}
    assert got == {f"{name}_{i}": "PartedVolume" for i in range(3)} | {f"{name}_fs": "FSVolume"}
    with pytest.raises(py_errors.ODPSError, match="already exists"):
        pyodps.create_parted_volume(f"{name}_0")

    # pyodps follows the markers of one-file pages
    volume = pyodps.get_volume(f"{name}_0")
    with volume.open_writer("p") as writer:
        for f in ("f1", "f2", "f3"):
            writer.write(f, f)
    assert [f.name for f in volume.partitions["p"].files.iterate(max_items=1)] == [
        "f1",
        "f2",
        "f3",
    ]
    # a page of two volumes names the last one as the marker of the next page
    path = f"/projects/{emulator.project}/volumes"
    first = signed(emulator, "GET", path, {"expectmarker": "true", "name": name, "maxitems": "2"})
    assert re.findall(r"<Name>([^<]+)</Name>", first.text) == [f"{name}_0", f"{name}_1"]
    marker = re.search(r"<Marker>([^<]*)</Marker>", first.text).group(1)
    rest = signed(emulator, "GET", path, {"expectmarker": "true", "name": name, "marker": marker})
    assert re.findall(r"<Name>([^<]+)</Name>", rest.text) == [f"{name}_2", f"{name}_fs"]
    assert "<Marker></Marker>" in rest.text
    for suffix in ("_0", "_1", "_2", "_fs"):
        pyodps.delete_volume(name + suffix)


def test_fs_requests_pyodps_never_sends(pyodps, emulator, name):
    """Edge cases of the FS data path: suffix and open ranges, bad ranges, directories."""
    pyodps.create_fs_volume(name)
    volume = pyodps.get_volume(name)
    with volume.open_writer("d/f.txt") as writer:
        writer.write(TEXT)
    path = f"/projects/{emulator.project}/volumes/{name}"
    fs = {"x-odps-volume-fs-path": f"/{name}/d/f.txt"}

    def read(range_header: str) -> bytes:
        resp = signed(emulator, "GET", path, headers={**fs, "Range": range_header})
        assert resp.status_code == 200, resp.text
        return VolumeFrameDecoder(io.BytesIO(resp.content)).read()

    assert read("bytes=-3") == TEXT[-3:]
    assert read("bytes=4-") == TEXT[4:]
    assert read("bytes=4-1000") == TEXT[4:]
    assert read("bytes=1000-1001") == b""
    bad = signed(emulator, "GET", path, headers={**fs, "Range": "lines=1-2"})
    assert bad.status_code == 400 and "InvalidArgument" in bad.text
    folder = {"x-odps-volume-fs-path": f"/{name}/d"}
    assert signed(emulator, "GET", path, headers=folder).status_code == 400
    other = {"x-odps-volume-fs-path": "/another_volume/f.txt"}
    assert signed(emulator, "GET", path, params={"meta": ""}, headers=other).status_code == 400
    missing = {"x-odps-volume-fs-path": f"/{name}/none"}
    gone = signed(emulator, "GET", path, params={"meta": ""}, headers=missing)
    assert gone.status_code == 404 and "NoSuchPath" in gone.text
    pyodps.delete_volume(name)


def test_ours_and_pyodps_exchange_parted_files(odps, pyodps, name):
    pyodps.create_parted_volume(name)
    ours = VolumeTunnel(odps)
    session = ours.create_upload_session(name, "p1")
    assert session.status is VolumeUploadSession.Status.NORMAL
    with session.open("ours.txt", compress=True) as writer:
        writer.write(TEXT)
    session.commit("ours.txt")
    assert session.file_list == [VolumeUploadSession.UploadFile("ours.txt", len(TEXT))]
    assert session.status is VolumeUploadSession.Status.CLOSED

    py_volume = pyodps.get_volume(name)
    with py_volume.open_reader("p1", "ours.txt") as reader:
        assert reader.read() == TEXT
    with py_volume.open_writer("p1") as writer:
        writer.write("theirs.txt", TEXT)

    down = ours.create_download_session(name, "p1", "theirs.txt")
    assert down.status is VolumeDownloadSession.Status.NORMAL
    assert (down.file_name, down.file_length, down.volume_name, down.partition_spec) == (
        "theirs.txt",
        len(TEXT),
        name,
        "p1",
    )
    assert down.resource().endswith(f"/projects/{odps.project}/tunnel/downloads")
    reader = down.open()
    assert reader.read() == TEXT and reader.read() is None  # None at the end, as pyodps
    assert down.open().readlines() == TEXT_LINES
    assert down.open(start=6, length=4).read() == TEXT[6:10]
    raw = ours.create_download_session(
        name, "p1", "theirs.txt", compress_option=CompressOption("raw")
    )
    assert raw.open().readline(size=5) == "first"
    pyodps.delete_volume(name)


def test_tunnel_sessions_refuse_file_system_volumes(odps, pyodps, name):
    pyodps.create_fs_volume(name)
    with pytest.raises(errors.InvalidArgument, match="not a partitioned volume"):
        VolumeTunnel(odps).create_upload_session(name, "p1")
    with pytest.raises(py_errors.ODPSError, match="not a partitioned volume"):
        PyVolumeTunnel(pyodps).create_upload_session(name, "p1")
    pyodps.delete_volume(name)


# ---------------------------------------------------------------- file-system volumes
def test_pyodps_fs_volume_paths_and_directories(pyodps, name):
    volume = pyodps.create_fs_volume(name, comment="fs")
    assert volume.type.value == "NEW" and pyodps.exist_volume(name)
    assert list(volume) == []
    made = volume.create_dir("a/b")
    assert isinstance(made, FSVolumeDir) and made.path == f"/{name}/a/b"
    with volume.open_writer("a/b/x.txt") as writer:
        writer.write(TEXT)
    with volume.open_writer("zipped.bin", compress_option=PyCompressOption()) as writer:
        writer.write(bytes(range(256)) * 1000)
    with volume.open_writer("empty.txt"):
        pass

    assert sorted((o.path, type(o)) for o in volume) == [
        (f"/{name}/a", FSVolumeDir),
        (f"/{name}/empty.txt", FSVolumeFile),
        (f"/{name}/zipped.bin", FSVolumeFile),
    ]
    assert [(o.path, o.length) for o in volume["a/b"]] == [(f"/{name}/a/b/x.txt", len(TEXT))]
    assert "a/b/x.txt" in volume and "a/none" not in volume
    assert volume["zipped.bin"].length == 256_000

    with volume.open_reader("a/b/x.txt") as reader:
        assert reader.read() == TEXT
    with volume.open_reader("a/b/x.txt", start=3, length=7) as reader:
        assert reader.read() == TEXT[3:10]
    with volume.open_reader("zipped.bin", compress_option=PyCompressOption()) as reader:
        assert reader.read() == bytes(range(256)) * 1000
    with volume.open_reader("empty.txt") as reader:
        assert reader.read() is None  # pyodps asks bytes=0--1 of an empty file
    with volume["a"].open_reader("b/x.txt") as reader:
        assert list(reader) == TEXT_LINES

    volume["a/b/x.txt"].move(f"/{name}/moved.txt")
    assert "moved.txt" in volume and "a/b/x.txt" not in volume
    with pytest.raises(py_errors.InvalidArgument, match="not empty"):
        volume["a"].delete()  # holds b
    volume["a"].delete(recursive=True)
    volume.delete("moved.txt")
    assert sorted(o.path for o in volume) == [f"/{name}/empty.txt", f"/{name}/zipped.bin"]
    pyodps.delete_volume(name)
    assert not pyodps.exist_volume(name)


def test_fs_volume_refuses_paths_through_files(pyodps, name):
    volume = pyodps.create_fs_volume(name)
    with volume.open_writer("d/f.txt") as writer:
        writer.write(TEXT)
    with pytest.raises(py_errors.InvalidArgument, match="in the way"):
        volume.create_dir("d/f.txt/sub")
    writer = volume.open_writer("d/f.txt/g.txt")
    writer.write(TEXT)
    with pytest.raises(py_errors.ODPSError, match="in the way"):
        writer.close()
    with pytest.raises(py_errors.InvalidArgument, match="into itself"):
        volume["d"].move(f"/{name}/d/inner")
    with pytest.raises(py_errors.ODPSError, match="already exists"):
        volume.create_dir("e").move(f"/{name}/d")
    writer = volume.open_writer("d")
    writer.write(TEXT)
    with pytest.raises(py_errors.ODPSError, match="is a directory"):
        writer.close()
    assert [o.path for o in volume["d"]] == [f"/{name}/d/f.txt"]
    pyodps.delete_volume(name)


def test_hostile_fs_paths_and_ranges_never_fail_the_server(pyodps, emulator, name):
    """Odd paths, ranges and bodies are answered 2xx or 4xx, never 5xx, and escape nothing."""
    pyodps.create_fs_volume(name)
    with pyodps.get_volume(name).open_writer("f.txt") as writer:
        writer.write(TEXT)
    path = f"/projects/{emulator.project}/volumes/{name}"
    segments = ["..", ".", "", "a", "f.txt", "é" * 200, "x" * 300, "%2e%2e", "a b", "~"]
    rng = random.Random(12)
    statuses = []
    for _ in range(60):
        fs_path = "/".join([name, *rng.choices(segments, k=rng.randint(0, 4))])
        headers = {
            "x-odps-volume-fs-path": rng.choice(["/", ""]) + fs_path,
            "Range": rng.choice(["bytes=0-3", "bytes=-", "bytes=9-2", "bytes=a-b", "x"]),
        }
        method, params, body = rng.choice(
            [
                ("GET", {}, b""),
                ("GET", {"meta": ""}, b""),
                ("GET", {"expectmarker": "true"}, b""),
                ("DELETE", {"recursive": "False"}, b""),
                ("PUT", {"meta": ""}, f"<Item><Path>/{fs_path}/z</Path></Item>".encode()),
                ("POST", {}, b"<Item><Type>directory</Type><Path>/../x</Path></Item>"),
                ("PUT", {}, b""),
            ]
        )
        if method == "POST" and rng.random() < 0.5:
            headers.pop("x-odps-volume-fs-path")
        resp = signed(emulator, method, path, params, body=body, headers=headers)
        statuses.append(resp.status_code)
        assert resp.status_code < 500, (method, params, headers, resp.text)
    assert any(s >= 400 for s in statuses) and any(s < 300 for s in statuses)
    volumes_dir = emulator.data_dir / "projects" / emulator.project / "volumes"
    assert sorted(p.name for p in volumes_dir.iterdir()) == sorted(
        pyodps_volume.name for pyodps_volume in pyodps.list_volumes()
    )
    pyodps.delete_volume(name)


def test_ours_and_pyodps_exchange_fs_files(odps, pyodps, name):
    pyodps.create_fs_volume(name)
    ours = VolumeFSTunnel(odps)
    data = bytes(range(256)) * 4000
    with ours.open_writer(name, "/dir/ours.bin", replication=2, compress_algo="zlib") as writer:
        writer.write(data)
    theirs = PyVolumeFSTunnel(pyodps)
    assert (
        theirs.open_reader(name, "dir/ours.bin", start=1000, length=5000).read()
        == (data[1000:6000])
    )
    with pyodps.get_volume(name).open_writer("dir/theirs.txt") as writer:
        writer.write(TEXT)
    assert ours.open_reader(name, "dir/theirs.txt").read() == TEXT
    assert ours.open_reader(name, "dir/theirs.txt", start=2, length=4).read() == TEXT[2:6]
    assert ours.open_reader(name, "dir/theirs.txt").readlines() == TEXT_LINES
    assert ours.open_reader(name, "dir/ours.bin", compress_algo="zlib").read() == data
    with ours.open_writer(name, "empty.txt"):
        pass
    assert ours.open_reader(name, "empty.txt").read() is None
    with pytest.raises(errors.NoSuchObject):
        ours.open_reader(name, "missing.txt")
    pyodps.delete_volume(name)


def test_fs_read_resumes_with_closed_ranges(odps, pyodps, name, faults):
    pyodps.create_fs_volume(name)
    data = bytes(range(256)) * 16000
    with pyodps.get_volume(name).open_writer("big.bin") as writer:
        writer.write(data)
    with recording() as seen:
        faults.add(method="GET", session_kind="volume", kind="reset_after_bytes", bytes=1_500_000)
        reader = VolumeFSTunnel(odps).open_reader(name, "big.bin", start=5, length=len(data) - 5)
        got = b"".join(iter(lambda: reader.read(100_000) or b"", b""))
    assert got == data[5:] and faults.injected
    ranges = [s.headers["Range"] for s in seen if "Range" in s.headers]
    last = len(data) - 1
    assert len(ranges) == 2 and ranges[0] == f"bytes=5-{last}"
    resumed_at = int(ranges[1].split("=")[1].split("-")[0])
    assert 5 < resumed_at < len(data) and ranges[1] == f"bytes={resumed_at}-{last}"
    # without a length, the end is start + the file's length - 1, as pyodps computes it
    with recording() as seen:
        assert VolumeFSTunnel(odps).open_reader(name, "big.bin", start=5).read() == data[5:]
    assert [s.headers["Range"] for s in seen if "Range" in s.headers] == [
        f"bytes=5-{len(data) + 4}"
    ]
    pyodps.delete_volume(name)


def test_volumes_survive_a_restart(tmp_path):
    with Emulator(tmp_path) as emulator:
        pyodps = py_entry(emulator)
        pyodps.create_parted_volume("kept_parted", comment="kept")
        with pyodps.get_volume("kept_parted").open_writer("p") as writer:
            writer.write("f.txt", TEXT)
        pyodps.create_fs_volume("kept_fs")
        with pyodps.get_volume("kept_fs").open_writer("d/f.txt") as writer:
            writer.write(TEXT)
        emulator.restart()
        pyodps = py_entry(emulator)
        assert pyodps.get_volume("kept_parted").comment == "kept"
        with pyodps.get_volume("kept_parted").open_reader("p", "f.txt") as reader:
            assert reader.read() == TEXT
        with pyodps.get_volume("kept_fs").open_reader("d/f.txt") as reader:
            assert reader.read() == TEXT


# ---------------------------------------------------------------- requests, header by header
@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class recording:  # noqa: N801 - used as a context manager like a function
    """Records every request sent through ``requests`` while active."""

    def __enter__(self) -> list[Sent]:
        self._seen: list[Sent] = []
        self._orig = requests.Session.send
        seen, orig = self._seen, self._orig

        def send(session, request, **kw):
            url = urlsplit(request.url)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            seen.append(Sent(request.method, url.path, params, dict(request.headers)))
            return orig(session, request, **kw)

        requests.Session.send = send
        return self._seen

    def __exit__(self, *exc) -> None:
        requests.Session.send = self._orig


# Headers that belong to the HTTP stack or the retry machinery, not to the volume API:
# signatures and dates differ per request, requests' defaults differ per session, and the
# retry trace headers are compared in the retry tests.
_TRANSPORT = {
    "authorization",
    "date",
    "user-agent",
    "x-odps-user-agent",
    "accept",
    "connection",
    "odps-tunnel-retry-trace-id",
    "odps-tunnel-retry-index",
}
_ID = re.compile(r"\d{14}[0-9a-f]{18}")


def comparable(seen: list[Sent]) -> list[tuple]:
    """Requests without transport headers, ids and ``curr_project``; pyodps's look-ups of
    the volume itself (``GET /api/.../volumes/{v}?meta`` without a path) and of the
    tenant are left out: our tunnels take the volume by name and ask nothing first."""
    out = []
    for sent in seen:
        if sent.path.endswith("/tenants"):
            continue
        if sent.path.startswith("/api/") and "x-odps-volume-fs-path" not in sent.headers:
            continue
        params = {k: _ID.sub("ID", v) for k, v in sent.params.items() if k != "curr_project"}
        headers = {
            k.lower(): _ID.sub("ID", v)
            for k, v in sent.headers.items()
            if k.lower() not in _TRANSPORT
        }
        out.append((sent.method, _ID.sub("ID", sent.path), params, headers))
    return out


def scenario(parted: object, fs: object, zlib: object, volume: str, fs_volume: str) -> None:
    """The same volume work through either client's tunnels (``zlib``: its CompressOption)."""
    session = parted.create_upload_session(volume, "p1")
    writer = session.open("a.txt", compress=True)
    writer.write(TEXT)
    writer.close()
    plain = session.open("b.txt")
    plain.write(TEXT)
    plain.close()
    session.commit(["a.txt", "b.txt"])
    down = parted.create_download_session(volume, "p1", "a.txt")
    assert down.open().read() == TEXT
    assert down.open(start=2, length=3).read() == TEXT[2:5]
    with fs.open_writer(fs_volume, "x/y.txt", replication=2) as fs_writer:
        fs_writer.write(TEXT)
    with fs.open_writer(fs_volume, "x/z.txt", compress_option=zlib) as fs_writer:
        fs_writer.write(TEXT)
    assert fs.open_reader(fs_volume, "x/y.txt", start=2, length=3).read() == TEXT[2:5]
    assert fs.open_reader(fs_volume, "/x/y.txt").read() == TEXT


def test_volume_requests_match_pyodps_header_by_header(emulator, pyodps, name):
    odps = ODPS(
        emulator.access_id,
        emulator.secret_access_key,
        emulator.project,
        endpoint=emulator.endpoint,
        tunnel_endpoint=emulator.tunnel_endpoint,
    )
    pyodps.create_parted_volume(name)
    pyodps.create_fs_volume(name + "_fs")
    with recording() as theirs:
        scenario(
            PyVolumeTunnel(pyodps),
            PyVolumeFSTunnel(pyodps),
            PyCompressOption(),
            name,
            name + "_fs",
        )
    with recording() as ours:
        scenario(VolumeTunnel(odps), VolumeFSTunnel(odps), CompressOption(), name, name + "_fs")
    assert comparable(ours) == comparable(theirs)
    # the reads' closed ranges, as pyodps sends them
    ranges = [s.headers.get("Range") for s in ours if "Range" in s.headers]
    assert ranges == ["bytes=2-4", f"bytes=0-{len(TEXT) - 1}"]
    pyodps.delete_volume(name)
    pyodps.delete_volume(name + "_fs")
