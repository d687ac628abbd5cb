"""A client for the MaxCompute (ODPS) Tunnel service, with the API of ``odps.tunnel``.

This layer imports nothing from Airflow: it is usable on its own and is what the hooks,
operators and the embedded emulator build on.
"""

from .errors import (
    ChecksumError,
    DataStreamError,
    RecordValidationError,
    StreamTruncatedError,
    TunnelError,
)
from .options import options
from .partition import PartitionSpec
from .record import Record
from .schema import Column, TableSchema
from .types import parse_type

__all__ = [
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
