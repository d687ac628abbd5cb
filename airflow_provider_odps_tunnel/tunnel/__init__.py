"""A client for the MaxCompute (ODPS) Tunnel service, with the API of ``odps.tunnel``.

This layer imports nothing from Airflow: it is usable on its own and is what the hooks,
operators and the embedded emulator build on.
"""

from .codec.compression import CompressOption
from .codec.partition import PartitionSpec
from .codec.record import Record
from .codec.schema import Column, TableSchema
from .codec.types import parse_type
from .entry import ODPS
from .errors import (
    BlockListMismatch,
    ChecksumError,
    DataStreamError,
    RecordValidationError,
    ServerError,
    StreamTruncatedError,
    TunnelError,
)
from .instance_tunnel import InstanceDownloadSession, InstanceTunnel
from .io.arrow_reader import TunnelArrowReader
from .io.arrow_writer import ArrowWriter, BufferedArrowWriter
from .io.record_reader import TunnelRecordReader
from .io.record_writer import BufferedRecordWriter, RecordWriter
from .options import options
from .parallel import download_to_files, iter_arrow_batches
from .progress import ProgressEvent
from .sessions.stream_upload import TableStreamUploadSession
from .sessions.table_download import BufferedRecordReader, TableDownloadSession
from .sessions.upload import TableUploadSession
from .sessions.upsert import TableUpsertSession, Upsert
from .sql import Instance, SQLTaskError
from .table_tunnel import TableTunnel
from .volume_tunnel import (
    VolumeDownloadSession,
    VolumeFSTunnel,
    VolumeTunnel,
    VolumeUploadSession,
)

__all__ = [
    "ODPS",
    "TableTunnel",
    "InstanceTunnel",
    "VolumeTunnel",
    "VolumeFSTunnel",
    "TableDownloadSession",
    "TableUploadSession",
    "TableStreamUploadSession",
    "TableUpsertSession",
    "InstanceDownloadSession",
    "Instance",
    "SQLTaskError",
    "VolumeUploadSession",
    "VolumeDownloadSession",
    "Upsert",
    "CompressOption",
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
