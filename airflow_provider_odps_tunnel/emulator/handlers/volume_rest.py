"""``/projects/{p}/volumes[/{v}[/{partition}]]``: volumes, partitions and file-system paths.

What pyodps 0.13.2 sends (``odps/models/volumes.py``, ``volume_parted.py``, ``volume_fs.py``,
``tunnel/volumetunnel.py``) and what it parses back:

* ``POST /volumes`` with ``<Meta><Name/><Comment/><Type>OLD|NEW</Type></Meta>`` creates;
  ``GET /volumes?expectmarker`` lists (``<Volumes><Volume>..</Volume><Marker/></Volumes>``);
  ``GET /volumes/{v}?meta`` describes (``<Meta>``); ``DELETE /volumes/{v}`` drops.
* Partitioned volumes: ``GET /volumes/{v}?expectmarker`` lists partitions,
  ``GET /volumes/{v}/{part}`` describes one (``?meta``: its length and file count),
  ``GET /volumes/{v}/{part}?expectmarker&path=`` lists its files, ``DELETE`` drops it.
* File-system volumes: the path is the ``x-odps-volume-fs-path`` header (``/{v}/a/b``).
  ``GET ?meta`` describes it, ``GET ?expectmarker`` lists a directory, a plain ``GET`` with
  ``Range: bytes=a-b`` reads a file (volume framing, §10), ``POST`` with the header writes
  a file into a session answered by ``x-odps-volume-sessionid`` and ``PUT`` with both
  headers commits it; ``POST`` of ``<Item><Type>directory</Type><Path/></Item>`` makes a
  directory (parents too), ``PUT ?meta`` of ``<Item><Path/></Item>`` moves, ``DELETE``
  (``recursive=true`` for a non-empty directory) deletes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import uuid
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from starlette.responses import Response

from .. import volumes as vol
from ..call import Call, Handler, rfc822
from ..call import xml_response as xml
from ..errors import EmulatorError
from ..fsutil import fsync_dir
from ..instances import OWNER
from ..sessions import check_writable
from .volume import framed_response, store_file

__all__ = ["route"]

FS_PATH = "x-odps-volume-fs-path"
FS_SESSION = "x-odps-volume-sessionid"
_BYTES = re.compile(r"bytes=(\d*)-(-?\d*)\Z")
_TRUE = ("true", "1", "")


def route(
    method: str, rest: list[str], params: dict[str, str]
) -> tuple[Handler, str | None] | None:
    """(handler, session kind) of ``/volumes`` + ``rest``; the FS data path is kind ``volume``."""
    if len(rest) == 0:
        return {"GET": (list_volumes, None), "POST": (create_volume, None)}.get(method)
    if len(rest) == 1:
        data = "meta" not in params and "expectmarker" not in params
        return {
            "GET": (volume_get, "volume" if data else None),
            "POST": (volume_post, "volume"),
            "PUT": (volume_put, None if "meta" in params else "volume"),
            "DELETE": (volume_delete, None),
        }.get(method)
    if len(rest) == 2:
        return {"GET": (partition_get, None), "DELETE": (partition_delete, None)}.get(method)
    return None


def _info(call: Call) -> vol.VolumeInfo:
    return vol.volume_info(call.state.catalog, call.args["project"], call.args["volume"])


def _fields(**values: object) -> str:
    """``<Key>value</Key>`` for each value that is not None."""
    return "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in values.items() if v is not None)


def _xml_body(data: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise EmulatorError.invalid_argument(f"malformed XML body: {exc}") from None


# ---------------------------------------------------------------- volumes
def _volume_fields(info: vol.VolumeInfo) -> str:
    root = info.path / ("files" if info.type == vol.OLD else "fs")
    length, count = vol.tree_size(root)
    return _fields(
        Name=info.name,
        Owner=OWNER,
        Comment=info.comment,
        Type=info.type,
        Length=length,
        FileNumber=count,
        CreationTime=rfc822(info.created),
        LastModifiedTime=rfc822(info.modified),
    )


async def list_volumes(call: Call) -> Response:
    """``GET /volumes[?name=prefix&marker=&maxitems=]``: one page of volumes."""
    project = call.args["project"]
    catalog = call.state.catalog
    prefix = call.params.get("name") or ""
    names = [n for n in catalog.list_volumes(project) if n.startswith(prefix)]
    chunk, marker = vol.page(names, call.params.get("marker"), call.params.get("maxitems"))
    items = "".join(
        f"<Volume>{_volume_fields(vol.volume_info(catalog, project, n))}</Volume>" for n in chunk
    )
    return xml(f"<Volumes>{items}<Marker>{escape(marker)}</Marker></Volumes>")


async def create_volume(call: Call) -> Response:
    """``POST /volumes`` with pyodps's ``<Meta>`` body; 409 if the name is taken."""
    root = _xml_body(await call.body())
    name = (root.findtext("Name") or "").strip()
    kind = (root.findtext("Type") or "old").strip().lower()
    if kind == "external":
        raise EmulatorError.invalid_argument("the emulator has no external volumes")
    call.state.catalog.create_volume(
        call.args["project"], name, volume_type=kind, comment=root.findtext("Comment") or ""
    )
    return Response(status_code=201, headers={"Location": f"{call.resource}/{name}"})


async def volume_delete(call: Call) -> Response:
    """``DELETE /volumes/{v}``: the volume, or with the FS header one path of it."""
    if call.header(FS_PATH) is not None:
        return await fs_delete(call)
    _info(call)
    call.state.catalog.drop_volume(call.args["project"], call.args["volume"])
    return Response(status_code=204)


async def volume_get(call: Call) -> Response:
    info = _info(call)
    if call.header(FS_PATH) is not None:
        if "meta" in call.params:
            return fs_meta(call, info)
        if "expectmarker" in call.params:
            return fs_list(call, info)
        return fs_read(call, info)
    if "expectmarker" in call.params:
        if info.type == vol.NEW:
            return fs_list(call, info)
        return list_partitions(call, info)
    return xml(f"<Meta>{_volume_fields(info)}</Meta>")


async def volume_post(call: Call) -> Response:
    if call.header(FS_PATH) is not None:
        return await fs_write(call)
    return await fs_mkdir(call)


async def volume_put(call: Call) -> Response:
    if "meta" in call.params:
        return await fs_update(call)
    return await fs_commit(call)


# ---------------------------------------------------------------- partitioned volumes
def _partition_fields(info: vol.VolumeInfo, name: str, path: Path) -> str:
    created = rfc822(path.stat().st_mtime)
    return _fields(
        Name=name,
        Owner=OWNER,
        Type=info.type,
        Comment="",
        CreationTime=created,
        LastModifiedTime=created,
    )


def list_partitions(call: Call, info: vol.VolumeInfo) -> Response:
    prefix = call.params.get("name") or ""
    names = [n for n in vol.list_partitions(info) if n.startswith(prefix)]
    chunk, marker = vol.page(names, call.params.get("marker"), call.params.get("maxitems"))
    items = "".join(
        f"<Partition>{_partition_fields(info, n, vol.partition_dir(info, n))}</Partition>"
        for n in chunk
    )
    return xml(
        f"<Volume><Marker>{escape(marker)}</Marker><Partitions>{items}</Partitions></Volume>"
    )


async def partition_get(call: Call) -> Response:
    """A partition's description, its size (``?meta``) or its files (``?expectmarker``)."""
    info = _info(call)
    name = call.args["partition"]
    path = vol.existing_partition(info, name)
    if "expectmarker" in call.params:
        prefix = call.params.get("name") or ""
        files = [f for f in vol.list_files(path) if f.startswith(prefix)]
        chunk, marker = vol.page(files, call.params.get("marker"), call.params.get("maxitems"))
        items = "".join(f"<Item>{_fields(Name=f)}</Item>" for f in chunk)
        return xml(f"<Items>{items}<Marker>{escape(marker)}</Marker></Items>")
    if "meta" in call.params:
        length, count = vol.tree_size(path)
        return xml(f"<Meta>{_fields(Length=length, FileNumber=count)}</Meta>")
    return xml(f"<Meta>{_partition_fields(info, name, path)}</Meta>")


async def partition_delete(call: Call) -> Response:
    path = vol.existing_partition(_info(call), call.args["partition"])
    await call.blocking(shutil.rmtree, path)
    return Response(status_code=204)


# ---------------------------------------------------------------- file-system volumes
def _fs(call: Call, info: vol.VolumeInfo | None = None) -> vol.FsPath:
    return vol.fs_path(info or _info(call), call.header(FS_PATH))


def _item_fields(path: vol.FsPath) -> str:
    disk = path.require_exists() if not path.is_root else path.disk
    stat = disk.stat() if disk.exists() else None
    is_dir = path.is_root or disk.is_dir()
    when = rfc822(stat.st_mtime if stat else path.volume.created)
    return _fields(
        Project=path.volume.project,
        Volume=path.volume.name,
        Path=path.text,
        Isdir="true" if is_dir else "false",
        permission="rwxr-xr-x" if is_dir else "rw-r--r--",
        BlockReplications=0 if is_dir else 3,
        Length=0 if is_dir or stat is None else stat.st_size,
        Quota=-1,
        BlockSize=0 if is_dir else 512 * 1024 * 1024,
        Owner=OWNER,
        Group="",
        CreationTime=when,
        AccessTime=when,
        ModificationTime=when,
    )


def fs_meta(call: Call, info: vol.VolumeInfo) -> Response:
    return xml(f"<Item>{_item_fields(_fs(call, info))}</Item>")


def fs_list(call: Call, info: vol.VolumeInfo) -> Response:
    """The children of a directory (a file lists itself), one page at a time."""
    header = call.header(FS_PATH)
    path = (
        vol.fs_path(info, header) if header is not None else vol.FsPath(info.require(vol.NEW), ())
    )
    disk = path.require_exists()
    if path.is_root or disk.is_dir():  # the root's directory appears with its first file
        children = [path.child(n) for n in sorted(os.listdir(disk))] if disk.is_dir() else []
    else:
        children = [path]
    keys = [c.text for c in children]
    chunk, marker = vol.page(keys, call.params.get("marker"), call.params.get("maxitems"))
    wanted = set(chunk)
    items = "".join(f"<Item>{_item_fields(c)}</Item>" for c in children if c.text in wanted)
    return xml(f"<Items>{items}<Marker>{escape(marker)}</Marker></Items>")


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """(start, length) of ``Range: bytes=a-b`` (``b`` inclusive; ``bytes=a-`` to the end).

    An end before the start is an empty range: pyodps asks ``bytes=0--1`` of an empty file.
    """
    if not header:
        return 0, size
    match = _BYTES.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise EmulatorError.invalid_argument(f"invalid Range header {header!r}")
    if not match.group(1):  # suffix form: the last n bytes
        n = int(match.group(2))
        return max(0, size - n), min(n, size)
    start = min(int(match.group(1)), size)
    end = int(match.group(2)) if match.group(2) else size - 1
    return start, max(0, min(end, size - 1) - start + 1)


def fs_read(call: Call, info: vol.VolumeInfo) -> Response:
    path = _fs(call, info)
    disk = path.require_exists()
    if disk.is_dir():
        raise EmulatorError.invalid_argument(f"{path.text} is a directory")
    start, length = _byte_range(call.header("range"), disk.stat().st_size)
    return framed_response(call, disk, start, length)


async def fs_write(call: Call) -> Response:
    """Stage a file's framed body; the answer's ``x-odps-volume-sessionid`` commits it."""
    state = call.state
    path = _fs(call)
    if path.is_root:
        raise EmulatorError.invalid_argument("cannot write the root of a volume")
    staged_dir = state.staging_dir / "volumes"
    staged_dir.mkdir(parents=True, exist_ok=True)
    out = staged_dir / uuid.uuid4().hex
    work = functools.partial(store_file, encoding=call.header("content-encoding"), out=out)
    length = await call.receive(work)
    session = call.new_session(
        "volume_fs_write",
        call.session_params(),
        {
            "project": call.args["project"],
            "volume": path.volume.name,
            "path": list(path.parts),
            "staged": out.name,
            "length": length,
        },
    )
    return Response(status_code=200, headers={FS_SESSION: session["id"]})


async def fs_commit(call: Call) -> Response:
    """``PUT`` with the session id: move the staged file to its path (parents created)."""
    path = _fs(call)
    session_id = call.header(FS_SESSION) or ""
    session = call.state.sessions.get("volume_fs_write", session_id)
    if tuple(session["path"]) != path.parts or session["volume"] != path.volume.name:
        raise EmulatorError.invalid_argument(f"session {session_id} wrote another path")
    if session["status"] != "closed":
        check_writable(session, "file-system volume write")
        with call.state.sessions.locked(session["id"]):
            await call.blocking(_commit_fs, call, session, path)
    return Response(status_code=200)


def _commit_fs(call: Call, session: dict, path: vol.FsPath) -> None:
    source = call.state.staging_dir / "volumes" / session["staged"]
    if path.disk.is_dir():
        raise EmulatorError.invalid_argument(f"{path.text} is a directory")
    vol.make_parents(path)
    if source.exists():
        os.replace(source, path.disk)
        fsync_dir(path.disk.parent)
    session["status"] = "closed"
    call.state.sessions.save(session)


async def fs_mkdir(call: Call) -> Response:
    """``POST`` of ``<Item><Type>directory</Type><Path>/v/a/b</Path></Item>``."""
    info = _info(call)
    root = _xml_body(await call.body())
    if (root.findtext("Type") or "").strip().lower() != "directory":
        raise EmulatorError.invalid_argument("only directories are created by XML")
    path = vol.fs_path(info, root.findtext("Path"))
    await call.blocking(vol.make_dirs, path)
    return Response(status_code=201)


async def fs_update(call: Call) -> Response:
    """``PUT ?meta`` of ``<Item><Path>new</Path><Replication>n</Replication></Item>``.

    A new path moves the file or directory; the replication is accepted and not kept
    (the emulator stores one copy and reports 3)."""
    info = _info(call)
    source = _fs(call, info)
    source.require_exists()
    target_text = (_xml_body(await call.body()).findtext("Path") or "").strip()
    if target_text:
        await call.blocking(vol.move, source, vol.fs_path(info, target_text))
    return Response(status_code=200)


async def fs_delete(call: Call) -> Response:
    recursive = call.params.get("recursive", "false").strip().lower() in _TRUE
    await call.blocking(vol.remove, _fs(call), recursive)
    return Response(status_code=204)
