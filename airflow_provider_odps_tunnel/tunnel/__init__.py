"""A client for the MaxCompute (ODPS) Tunnel service, with the API of ``odps.tunnel``.

This layer imports nothing from Airflow: it is usable on its own and is what the hooks and
operators build on. It is layered: :mod:`.codec` (data model and wire codecs, no I/O),
:mod:`.io` (readers and writers of one request), :mod:`.transport` (HTTP, signing,
retries), :mod:`.sessions` (one module per session kind), and at this level the entry
object, the three tunnels, SQL instances, errors, options, progress and parallel helpers.

The public names below are loaded on first use, so ``import ...tunnel.codec`` (what the
embedded emulator does) does not load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BlockListMismatch,
    ChecksumError,
    DataStreamError,
    RecordValidationError,
    ServerError,
    StreamTruncatedError,
    TunnelError,
)
from .options import options

if TYPE_CHECKING:
    from .codec.compression import CompressOption
    from .codec.hasher import RecordHasher
    from .codec.partition import PartitionSpec
    from .codec.record import Record
    from .codec.schema import Column, TableSchema
    from .codec.types import parse_type
    from .entry import ODPS
    from .instance_tunnel import InstanceDownloadSession, InstanceTunnel
    from .io.arrow_reader import TunnelArrowReader
    from .io.arrow_writer import ArrowWriter, BufferedArrowWriter
    from .io.record_reader import TunnelRecordReader
    from .io.record_writer import BufferedRecordWriter, RecordWriter
    from .parallel import download_to_files, iter_arrow_batches
    from .progress import ProgressEvent
    from .sessions.slot import Slot
    from .sessions.stream_upload import TableStreamUploadSession
    from .sessions.table_download import BufferedRecordReader, TableDownloadSession
    from .sessions.upload import TableUploadSession
    from .sessions.upsert import TableUpsertSession, Upsert
    from .sql import Instance, SQLTaskError
    from .table_tunnel import TableTunnel
    from .volume_tunnel import (
        VolumeDownloadSession,
        VolumeFSTunnel,
        VolumeFSWriter,
        VolumeTunnel,
        VolumeUploadSession,
    )

_LAZY = {
    "CompressOption": ".codec.compression",
    "RecordHasher": ".codec.hasher",
    "PartitionSpec": ".codec.partition",
    "Record": ".codec.record",
    "Column": ".codec.schema",
    "TableSchema": ".codec.schema",
    "parse_type": ".codec.types",
    "ODPS": ".entry",
    "InstanceDownloadSession": ".sessions.instance_download",
    "InstanceTunnel": ".instance_tunnel",
    "TunnelArrowReader": ".io.arrow_reader",
    "ArrowWriter": ".io.arrow_writer",
    "BufferedArrowWriter": ".io.arrow_writer",
    "TunnelRecordReader": ".io.record_reader",
    "BufferedRecordWriter": ".io.record_writer",
    "RecordWriter": ".io.record_writer",
    "download_to_files": ".parallel",
    "iter_arrow_batches": ".parallel",
    "ProgressEvent": ".progress",
    "Slot": ".sessions.slot",
    "TableStreamUploadSession": ".sessions.stream_upload",
    "BufferedRecordReader": ".sessions.table_download",
    "TableDownloadSession": ".sessions.table_download",
    "TableUploadSession": ".sessions.upload",
    "TableUpsertSession": ".sessions.upsert",
    "Upsert": ".sessions.upsert",
    "Instance": ".sql",
    "SQLTaskError": ".sql",
    "TableTunnel": ".table_tunnel",
    "VolumeDownloadSession": ".sessions.volume",
    "VolumeFSTunnel": ".volume_tunnel",
    "VolumeFSWriter": ".volume_tunnel",
    "VolumeTunnel": ".volume_tunnel",
    "VolumeUploadSession": ".sessions.volume",
}

# Module-level names of the sessions' status enums, as pyodps's odps.tunnel has them.
_STATUS_ALIASES = {
    "TableDownloadStatus": "TableDownloadSession",
    "TableUploadStatus": "TableUploadSession",
    "InstanceDownloadStatus": "InstanceDownloadSession",
    "VolumeUploadStatus": "VolumeUploadSession",
    "VolumeDownloadStatus": "VolumeDownloadSession",
}

__all__ = [
    "ODPS",
    "TableTunnel",
    "InstanceTunnel",
    "VolumeTunnel",
    "VolumeFSTunnel",
    "TableDownloadSession",
    "TableUploadSession",
    "TableStreamUploadSession",
    "Slot",
    "TableUpsertSession",
    "InstanceDownloadSession",
    "Instance",
    "SQLTaskError",
    "VolumeUploadSession",
    "VolumeDownloadSession",
    "VolumeFSWriter",
    "Upsert",
    "CompressOption",
    "RecordHasher",
    "TableDownloadStatus",
    "TableUploadStatus",
    "InstanceDownloadStatus",
    "VolumeUploadStatus",
    "VolumeDownloadStatus",
    "TunnelRecordReader",
    "TunnelArrowReader",
    "ArrowWriter",
    "BufferedArrowWriter",
    "BufferedRecordReader",
    "RecordWriter",
    "BufferedRecordWriter",
    "ServerError",
    "BlockListMismatch",
    "ProgressEvent",
    "iter_arrow_batches",
    "download_to_files",
    "ChecksumError",
    "Column",
    "DataStreamError",
    "PartitionSpec",
    "Record",
    "RecordValidationError",
    "StreamTruncatedError",
    "TableSchema",
    "TunnelError",
    "options",
    "parse_type",
]


def __getattr__(name: str) -> Any:
    if name in _STATUS_ALIASES:
        value = __getattr__(_STATUS_ALIASES[name]).Status
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
