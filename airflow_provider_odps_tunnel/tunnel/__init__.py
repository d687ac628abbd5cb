"""A client for the MaxCompute (ODPS) Tunnel service, with the API of ``odps.tunnel``.

This layer imports nothing from Airflow: it is usable on its own and is what the hooks,
operators and the embedded emulator build on.
"""

from .arrow_reader import TunnelArrowReader
from .arrow_writer import ArrowWriter, BufferedArrowWriter
from .compression import CompressOption
from .download_session import BufferedRecordReader, TableDownloadSession
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
from .options import options
from .parallel import download_to_files, iter_arrow_batches
from .partition import PartitionSpec
from .progress import ProgressEvent
from .record import Record
from .record_reader import TunnelRecordReader
from .record_writer import BufferedRecordWriter, RecordWriter
from .schema import Column, TableSchema
from .sql import Instance, SQLTaskError
from .stream_session import TableStreamUploadSession
from .table_tunnel import TableTunnel
from .types import parse_type
from .upload_session import TableUploadSession
from .upsert import TableUpsertSession, Upsert
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
