"""A local, durable, wire-compatible MaxCompute (ODPS) tunnel emulator.

Besides the tunnel it serves the slice of the ODPS REST API pyodps uses around it (tables,
partitions, SQL instances run by an embedded DuckDB, the instance tunnel), with fault
injection, the service's limits, a controllable clock and a JSON-lines request log.
Start one with :class:`Emulator` (a context manager), the ``odps-tunnel-emulator`` command,
or the pytest fixtures of ``pytest_plugin``, which all go through :func:`serve` (blocking);
prepare tables through :class:`Catalog` or SQL.
Point pyodps at ``emulator.endpoint`` (service) and ``emulator.tunnel_endpoint`` (tunnel).
This package may use the tunnel codecs (and errors) but never the tunnel client, the HTTP
client library or Airflow (see ``.importlinter``).
"""

from .catalog import Catalog
from .errors import EmulatorError
from .server import Emulator, serve

__all__ = ["Emulator", "Catalog", "EmulatorError", "serve"]
