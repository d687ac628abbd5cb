"""Partitioned-volume tunnel sessions (protocol §3.7).

Upload: a session collects files (each body is volume framing, §10, optionally deflated),
staged durably under ``staging/volumes/<session>``; commit moves them into
``volumes/<volume>/files/<partition>/`` with one rename each. Download: a session names one
committed file and serves byte ranges of it, framed the same way. The sessions work on
partitioned ("old") volumes only; the REST side of volumes is ``volume_rest.py``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from starlette.responses import Response, StreamingResponse

from airflow_provider_odps_tunnel.tunnel.codec.compression import decompressing_stream
from airflow_provider_odps_tunnel.tunnel.codec.volume_framing import (
    VolumeFrameDecoder,
    VolumeFrameEncoder,
)
from airflow_provider_odps_tunnel.tunnel.errors import TunnelError

from ..call import Call, Handler, json_response
from ..egress import compressed
from ..errors import EmulatorError
from ..fsutil import fsync_dir
from ..ingest import data_error
from ..sessions import check_writable
from ..volumes import check_name, partition_dir, volume_info

__all__ = ["route", "store_file", "framed_range", "framed_response"]

_RANGE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\Z")
_COPY = 1024 * 1024


def route(method: str, collection: str, has_id: bool, params: dict[str, str]) -> Handler | None:
    """The handler of ``/projects/{p}/tunnel/{uploads|downloads}[/{id}]``."""
    if collection == "uploads":
        if not has_id:
            return upload_create if method == "POST" else None
        return {"GET": upload_reload, "POST": upload_file, "PUT": upload_commit}.get(method)
    if not has_id:
        return download_create if method == "POST" else None
    if method == "GET":
        return download_read if "data" in params else download_reload
    return None


def _target(call: Call) -> tuple[str, str, list[str]]:
    """(volume, partition, rest) of ``target=project/volume/partition/...``."""
    if call.params.get("type", "volumefile") != "volumefile":
        raise EmulatorError.invalid_argument(f"unsupported type {call.params.get('type')!r}")
    parts = [p for p in call.params.get("target", "").split("/") if p]
    if len(parts) < 3 or parts[0] != call.args["project"]:
        raise EmulatorError.invalid_argument(
            f"target {call.params.get('target')!r} is not project/volume/partition[/file]"
        )
    return parts[1], parts[2], parts[3:]


def _safe_name(name: str) -> str:
    if name.startswith("/"):
        raise EmulatorError.invalid_argument(f"invalid volume file name {name!r}")
    return check_name(name)


def _partition_dir(call: Call, volume: str, partition: str) -> Path:
    """The partition's directory; the volume must exist and be partitioned."""
    return partition_dir(volume_info(call.state.catalog, call.args["project"], volume), partition)


def upload_json(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "UploadID": session["id"],
        "Status": session["status"],
        "FileList": [
            {"FileName": name, "FileLength": f["length"]} for name, f in session["files"].items()
        ],
        "QuotaName": session.get("quota", ""),
    }


async def upload_create(call: Call) -> Response:
    volume, partition, _ = _target(call)
    _partition_dir(call, volume, partition)
    session = call.new_session(
        "volume_upload",
        call.session_params(),
        {"project": call.args["project"], "volume": volume, "partition": partition, "files": {}},
    )
    return json_response(upload_json(session))


def _upload(call: Call) -> dict[str, Any]:
    return call.state.sessions.get("volume_upload", call.args["session"])


async def upload_reload(call: Call) -> Response:
    return json_response(upload_json(_upload(call)))


def store_file(raw: BinaryIO, encoding: str | None, out: Path) -> int:
    """Unframe (and inflate) a volume body into ``out``; returns the file length."""
    length = 0
    try:
        stream = VolumeFrameDecoder(decompressing_stream(raw, encoding))
        with open(out, "wb") as fh:
            while data := stream.read(_COPY):
                fh.write(data)
                length += len(data)
            fh.flush()
            os.fsync(fh.fileno())
    except TunnelError as exc:
        out.unlink(missing_ok=True)
        raise data_error(exc) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return length


async def upload_file(call: Call) -> Response:
    """``POST .../uploads/{id}?blockid=<file name>``: one file per request."""
    state = call.state
    session = _upload(call)
    check_writable(session, "volume upload")
    name = _safe_name(call.params.get("blockid", ""))
    staged = state.staging_dir / "volumes" / session["id"]
    staged.mkdir(parents=True, exist_ok=True)
    out = staged / uuid.uuid4().hex
    work = functools.partial(store_file, encoding=call.header("content-encoding"), out=out)
    length = await call.receive(work)
    with state.sessions.locked(session["id"]):
        old = session["files"].get(name)
        session["files"][name] = {"staged": out.name, "length": length}
        state.sessions.save(session)
    if old:
        (staged / old["staged"]).unlink(missing_ok=True)
    return json_response(upload_json(session))


def _commit(call: Call, session: dict[str, Any]) -> None:
    target = _partition_dir(call, session["volume"], session["partition"])
    staged = call.state.staging_dir / "volumes" / session["id"]
    for name, f in session["files"].items():
        source = staged / f["staged"]
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.exists():
            os.replace(source, dest)
            fsync_dir(dest.parent)
    session["status"] = "closed"
    call.state.sessions.save(session)
    shutil.rmtree(staged, ignore_errors=True)


async def upload_commit(call: Call) -> Response:
    """``PUT .../uploads/{id}``: move every file into the volume partition."""
    session = _upload(call)
    if session["status"] != "closed":
        check_writable(session, "volume upload")
        with call.state.sessions.locked(session["id"]):
            await call.blocking(_commit, call, session)
    return json_response(upload_json(session))


def download_json(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "DownloadID": session["id"],
        "Status": "expired" if session["status"] == "expired" else "normal",
        "File": {"FileName": session["file"], "FileLength": session["length"]},
        "Partition": {"Volume": session["volume"], "Partition": session["partition"]},
        "QuotaName": session.get("quota", ""),
    }


async def download_create(call: Call) -> Response:
    volume, partition, rest = _target(call)
    name = _safe_name("/".join(rest))
    path = _partition_dir(call, volume, partition) / name
    if not path.is_file():
        raise EmulatorError(
            "NoSuchPath", f"volume file {volume}/{partition}/{name} does not exist", 404
        )
    session = call.new_session(
        "volume_download",
        call.session_params(),
        {
            "project": call.args["project"],
            "volume": volume,
            "partition": partition,
            "file": name,
            "length": path.stat().st_size,
        },
    )
    return json_response(download_json(session))


def _download(call: Call) -> dict[str, Any]:
    return call.state.sessions.get("volume_download", call.args["session"])


async def download_reload(call: Call) -> Response:
    return json_response(download_json(_download(call)))


def framed_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``start`` in volume framing (§10)."""
    encoder = VolumeFrameEncoder()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            data = fh.read(min(_COPY, left))
            if not data:
                break
            left -= len(data)
            piece = encoder.feed(data)
            if piece:
                yield piece
    yield encoder.finish()


async def download_read(call: Call) -> Response:
    """``GET .../downloads/{id}?data&range=(start,length)``."""
    session = _download(call)
    if session["status"] == "expired":
        raise EmulatorError.status_conflict("The download session is expired")
    match = _RANGE.match(call.params.get("range", f"(0,{session['length']})").strip())
    if not match:
        raise EmulatorError.invalid_argument(f"invalid range {call.params.get('range')!r}")
    start, length = int(match.group(1)), int(match.group(2))
    if start > session["length"]:
        raise EmulatorError.invalid_argument(f"range start {start} is past the file end")
    path = _partition_dir(call, session["volume"], session["partition"]) / session["file"]
    return framed_response(call, path, start, min(length, session["length"] - start))


def framed_response(call: Call, path: Path, start: int, length: int) -> StreamingResponse:
    """A framed byte range of ``path``, deflated when the request accepts ``deflate``."""
    accept = (call.header("accept-encoding") or "").lower()
    encoding = "deflate" if "deflate" in accept else None
    headers = {"Content-Encoding": encoding} if encoding else {}
    body = framed_range(path, start, length)
    return StreamingResponse(compressed(body, encoding), headers=headers)
