"""A PEP 249 (DB-API 2.0) interface to MaxCompute SQL, over this package's client.

``connect()`` wraps an :class:`~.entry.ODPS` entry object (or builds one from its
arguments). ``Cursor.execute`` submits the statement as a SQL instance, waits for it, and
when the instance has a query result opens an instance-tunnel download session on it: rows
are then read from the service as they are fetched (a record reader for ``fetchone`` /
``fetchmany`` / ``fetchall``, an Arrow reader for ``fetch_arrow_table`` /
``fetch_arrow_batches``), never loaded whole before the first fetch.

What MaxCompute does not have, this module does not pretend to have:

* **No transactions.** Every statement commits when its instance succeeds; ``commit()``
  does nothing and ``rollback()`` raises :class:`NotSupportedError`. ``autocommit`` is
  always true.
* ``rowcount`` is the number of result rows of a query, and -1 for other statements (the
  service does not report rows affected in a form this client reads).
* ``callproc``, ``nextset`` and ``lastrowid`` are not provided.
* Parameters are rendered into the SQL text as ODPS literals (``paramstyle = "pyformat"``:
  ``%s`` with a sequence, ``%(name)s`` with a mapping, ``%%`` for a literal ``%`` when
  parameters are given); the service has no server-side binding.
* A result the project only lets the instance tunnel read limited to 10,000 rows raises
  :class:`OperationalError` unless the connection was made with
  ``allow_limited_results=True``: a truncated result never passes silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from . import errors as tunnel_errors
from .codec.arrow_types import odps_schema_to_arrow_schema
from .entry import ODPS
from .sql import SQL_TIMEZONE, Instance, SQLTaskError, client_sql_timezone

__all__ = [
    "apilevel",
    "threadsafety",
    "paramstyle",
    "connect",
    "Connection",
    "Cursor",
    "render_literal",
    "render_operation",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "STRING",
    "BINARY",
    "NUMBER",
    "DATETIME",
    "ROWID",
    "Date",
    "Time",
    "Timestamp",
    "Binary",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
]

apilevel = "2.0"
#: Threads may share the module but not connections.
threadsafety = 1
paramstyle = "pyformat"


# -- exceptions (PEP 249 names) ------------------------------------------------------------


class Warning(Exception):  # noqa: A001 - the name PEP 249 requires
    """An important warning (not raised by this module; defined because PEP 249 asks)."""


class Error(Exception):
    """Base of the errors of this module. ``instance_id`` names the SQL instance, if any."""

    def __init__(self, message: str, *, instance_id: str | None = None):
        super().__init__(message)
        self.instance_id = instance_id


class InterfaceError(Error):
    """Misuse of the interface: a closed connection or cursor."""


class DatabaseError(Error):
    """An error reported by MaxCompute or met while talking to it."""


class DataError(DatabaseError):
    """A value the service could not process (conversion, overflow, a corrupt result)."""


class OperationalError(DatabaseError):
    """Authentication, throttling, connection or service failures; not the statement's fault."""


class IntegrityError(DatabaseError):
    """Relational integrity errors (not raised: MaxCompute does not report them as such)."""


class InternalError(DatabaseError):
    """Internal errors of the service (not raised separately: see OperationalError)."""


class ProgrammingError(DatabaseError):
    """A statement the service rejected (syntax, unknown table or column), or parameters
    that do not match the statement."""


class NotSupportedError(DatabaseError):
    """A DB-API feature MaxCompute does not have (``rollback``, turning autocommit off)."""


#: ``ODPS-013xxxx`` codes are compile-time (semantic) errors, ``ODPS-012xxxx`` run-time
#: errors of the data.
_ODPS_CODE = re.compile(r"ODPS-(\d{7})")


def _translate(exc: BaseException) -> Error:
    """The PEP 249 error for an error of the client."""
    instance_id = getattr(exc, "instance_id", None)
    if isinstance(exc, SQLTaskError):
        match = _ODPS_CODE.search(exc.message)
        code = match.group(1) if match else ""
        cls: type[Error] = (
            ProgrammingError
            if code.startswith("013")
            else DataError
            if code.startswith("012")
            else DatabaseError
        )
    elif isinstance(exc, tunnel_errors.DataStreamError | tunnel_errors.RecordValidationError):
        cls = DataError
    elif isinstance(exc, tunnel_errors.NoSuchObject | tunnel_errors.InvalidRequest):
        cls = ProgrammingError
    elif isinstance(
        exc,
        tunnel_errors.AuthError
        | tunnel_errors.Throttled
        | tunnel_errors.InternalServerError
        | tunnel_errors.TunnelConnectionError
        | tunnel_errors.SlotReassigned,
    ):
        cls = OperationalError
    elif isinstance(exc, tunnel_errors.TunnelError):
        cls = DatabaseError
    else:
        cls = ProgrammingError  # ValueError/TypeError of our own argument checks
    return cls(str(exc), instance_id=instance_id)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise the client's errors (and argument errors) as PEP 249 errors, chained."""
    try:
        yield
    except Error:
        raise
    except (tunnel_errors.TunnelError, ValueError, TypeError) as exc:
        raise _translate(exc) from exc


# -- type objects and constructors ----------------------------------------------------------


class _TypeObject:
    """Equal to the ODPS type names (``description[i][1]``) of one PEP 249 type group."""

    def __init__(self, *names: str):
        self.names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        return re.split(r"[(<]", other, maxsplit=1)[0].strip().lower() in self.names

    def __hash__(self) -> int:
        return hash(self.names)


STRING = _TypeObject("string", "varchar", "char", "json")
BINARY = _TypeObject("binary")
NUMBER = _TypeObject(
    "tinyint", "smallint", "int", "bigint", "float", "double", "decimal", "boolean"
)
DATETIME = _TypeObject("datetime", "date", "timestamp", "timestamp_ntz")
ROWID = _TypeObject()

Date = dt.date
Time = dt.time
Timestamp = dt.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> dt.date:  # noqa: N802 - PEP 249 name
    return dt.date.fromtimestamp(ticks)


def TimeFromTicks(ticks: float) -> dt.time:  # noqa: N802 - PEP 249 name
    return dt.datetime.fromtimestamp(ticks).time()


def TimestampFromTicks(ticks: float) -> dt.datetime:  # noqa: N802 - PEP 249 name
    return dt.datetime.fromtimestamp(ticks)


# -- parameters as ODPS literals --------------------------------------------------------------

_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
_STRING_SPECIAL = re.compile(r"[\\'\n\r\t\0]")


def _quote(text: str) -> str:
    return "'" + _STRING_SPECIAL.sub(lambda m: _STRING_ESCAPES[m.group()], text) + "'"


def render_literal(value: Any, timezone: dt.tzinfo | None = None) -> str:
    """``value`` as an ODPS SQL literal.

    ``None`` is ``NULL``; ``bool``, ``int``, ``float`` (``NaN``/``inf`` through a cast),
    ``Decimal`` (a ``BD`` literal, exact); ``str`` quoted with backslash escapes; ``bytes``
    as ``unhex('…')``; ``date`` as ``DATE '…'``; ``datetime`` as ``DATETIME '…'``, or
    ``TIMESTAMP '…'`` when it has microseconds; a ``tuple`` as ``(a, b)`` (for ``IN``) and
    a ``list`` as ``ARRAY(a, b)``. An aware ``datetime`` is converted to ``timezone`` (the
    statement's ``odps.sql.timezone``), which must then be known. Other types raise
    :class:`ProgrammingError`.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return f"CAST('{'nan' if math.isnan(value) else 'inf' if value > 0 else '-inf'}' AS DOUBLE)"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ProgrammingError(f"the decimal {value} has no ODPS literal")
        return f"{value:f}BD"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"unhex('{bytes(value).hex()}')"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            if timezone is None:
                raise ProgrammingError(
                    f"the aware datetime {value.isoformat()} needs the statement's time zone: "
                    "pass a naive datetime, or connect with hints={'odps.sql.timezone': ...}"
                )
            value = value.astimezone(timezone).replace(tzinfo=None)
        if value.microsecond:
            return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
        return f"DATETIME '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, tuple | list):
        if not value:
            raise ProgrammingError(f"an empty {type(value).__name__} has no ODPS literal")
        items = ", ".join(render_literal(v, timezone) for v in value)
        return f"({items})" if isinstance(value, tuple) else f"ARRAY({items})"
    raise ProgrammingError(f"a {type(value).__name__} value has no ODPS SQL literal: {value!r}")


def render_operation(
    operation: str,
    parameters: Sequence[Any] | Mapping[str, Any] | None,
    timezone: dt.tzinfo | None = None,
) -> str:
    """``operation`` with its ``pyformat`` placeholders replaced by the parameters'
    literals (see :func:`render_literal`). Without parameters the text is left as is, so
    a ``%`` needs doubling only in statements that take parameters."""
    if parameters is None:
        return operation
    if isinstance(parameters, str | bytes):
        raise ProgrammingError("parameters must be a sequence or a mapping, not a string")
    if isinstance(parameters, Mapping):
        values: Any = {key: render_literal(v, timezone) for key, v in parameters.items()}
    else:
        values = tuple(render_literal(v, timezone) for v in parameters)
    try:
        return operation % values
    except (TypeError, KeyError, ValueError) as exc:
        raise ProgrammingError(
            f"the parameters do not match the placeholders of the statement "
            f"({type(exc).__name__}: {exc}); paramstyle is pyformat: %s or %(name)s"
        ) from None


# -- connection and cursor ----------------------------------------------------------------


def connect(
    odps: ODPS | None = None,
    *,
    hints: Mapping[str, Any] | None = None,
    allow_limited_results: bool = False,
    **kwargs: Any,
) -> Connection:
    """A DB-API connection on ``odps`` (our entry object), or on an entry object built from
    ``kwargs`` (the arguments of :class:`~.entry.ODPS`: ``access_id``,
    ``secret_access_key``, ``project``, ``endpoint``, ...), which the connection then
    closes with itself.

    ``hints`` are the SQL settings sent with every statement. Their ``odps.sql.timezone``
    defaults to the zone the client reads datetimes in (``options.local_timezone``, else
    the process's zone), so naive datetime parameters and results mean the same wall
    clock; aware datetime parameters are converted to it. ``allow_limited_results=True`` accepts a result
    the project only lets the instance tunnel read limited to 10,000 rows (with a warning
    in the log); by default that raises :class:`OperationalError`.
    """
    if odps is None:
        with _translated():
            return Connection(ODPS(**kwargs), hints, allow_limited_results, owns_odps=True)
    if kwargs:
        raise InterfaceError(f"connect() takes an ODPS object or its arguments, not both: {kwargs}")
    return Connection(odps, hints, allow_limited_results)


class Connection:
    """A DB-API connection: a MaxCompute project as seen by one entry object.

    Statements commit on their own (there are no transactions): ``commit`` does nothing,
    ``rollback`` raises :class:`NotSupportedError`.
    """

    def __init__(
        self,
        odps: ODPS,
        hints: Mapping[str, Any] | None = None,
        allow_limited_results: bool = False,
        *,
        owns_odps: bool = False,
    ):
        self.odps = odps
        self.hints = dict(hints or {})
        self.allow_limited_results = allow_limited_results
        self._owns_odps = owns_odps
        self._closed = False
        # Statements run in the zone this client reads datetimes in, so a naive datetime
        # parameter and the value read back are the same wall clock (the project's own zone,
        # Asia/Shanghai by default on the service, would shift them).
        zone = self.hints.setdefault(SQL_TIMEZONE, client_sql_timezone())
        self.timezone: dt.tzinfo = ZoneInfo(str(zone))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def autocommit(self) -> bool:
        """Always true: each statement commits when its instance succeeds."""
        return True

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if not value:
            raise NotSupportedError("MaxCompute has no transactions: autocommit cannot be off")

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def commit(self) -> None:
        """Nothing to do: every statement was committed when its instance succeeded."""
        self._check_open()

    def rollback(self) -> None:
        raise NotSupportedError("MaxCompute has no transactions: nothing can be rolled back")

    def close(self) -> None:
        """Close the connection (and the entry object's HTTP pool if ``connect`` built it)."""
        if not self._closed and self._owns_odps:
            self.odps.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the connection is closed")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Cursor:
    """Runs statements and reads their results through the instance tunnel.

    After ``execute``, ``instance`` is the SQL instance that ran (its ``id`` names it in
    the service's logs), ``description`` lists the result columns with their ODPS type
    names (``bigint``, ``decimal(10,2)``, ...) or is None for a statement without a result,
    and ``rowcount`` is the number of result rows (-1 without a result).
    """

    def __init__(self, connection: Connection):
        self.connection = connection
        self.arraysize = 1
        self.instance: Instance | None = None
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._closed = False
        self._session: Any = None
        self._position = 0
        self._reader: Any = None

    # -- running --------------------------------------------------------------------------

    def execute(
        self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> Cursor:
        """Run one statement (or a script of several, separated by ``;``) and wait for it;
        a query's result is then ready to fetch. Returns the cursor."""
        self._check_open()
        self._reset()
        sql = render_operation(operation, parameters, self.connection.timezone)
        with _translated():
            instance = self.connection.odps.execute_sql(sql, self.connection.hints)
        return self.attach(instance)

    def attach(self, instance: Instance) -> Cursor:
        """Read the result of ``instance``, a SQL instance that already succeeded (one the
        caller submitted and waited for, e.g. ``OdpsSqlOperator``'s): ``description``,
        ``rowcount`` and the fetch methods then work as after :meth:`execute`. Returns the
        cursor."""
        self._check_open()
        self._reset()
        self.instance = instance
        with _translated():
            self._session = self._open_result(instance)
        if self._session is not None:
            schema = self._session.schema
            self.description = [
                (
                    column.name,
                    column.type.name,
                    None,
                    None,
                    getattr(column.type, "precision", None),
                    getattr(column.type, "scale", None),
                    column.nullable,
                )
                for column in schema.columns
            ]
            self.rowcount = int(self._session.count)
        return self

    def executemany(
        self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]
    ) -> Cursor:
        """Run ``operation`` once per parameter set, one instance each. To load many rows,
        a tunnel upload (``OdpsSqlHook.insert_rows``) is far cheaper."""
        counts = []
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
            counts.append(self.rowcount)
        self.rowcount = sum(counts) if counts and min(counts) >= 0 else -1
        return self

    def _open_result(self, instance: Instance) -> Any:
        """The download session of the instance's query result, or None without one."""
        limit = None if self.connection.allow_limited_results else False
        try:
            return instance.open_download_session(limit=limit)
        except tunnel_errors.InstanceTypeNotSupported:
            return None  # DDL, INSERT, SET...: the instance has no query result

    # -- fetching -------------------------------------------------------------------------

    def _result(self) -> Any:
        self._check_open()
        if self._session is None:
            raise ProgrammingError(
                "no result set: nothing was executed, or the last statement returned no rows",
                instance_id=self.instance.id if self.instance else None,
            )
        return self._session

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next result row as a tuple, or None when all were read."""
        session = self._result()
        if self._position >= session.count:
            return None
        with _translated():
            if self._reader is None:
                self._reader = session.open_record_reader(
                    self._position, session.count - self._position
                )
            record = self._reader.read()
        if record is None:
            return None
        self._position += 1
        return tuple(record.values)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` (default ``arraysize``) next rows."""
        rows = []
        for _ in range(self.arraysize if size is None else size):
            row = self.fetchone()
            if row is None:
                break
            rows.append(row)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        """All remaining rows."""
        return list(iter(self.fetchone, None))

    def fetch_arrow_batches(self) -> Iterator[pa.RecordBatch]:
        """The remaining rows as Arrow record batches, read through the tunnel's Arrow
        format (no conversion to Python objects). Raises at once without a result set."""
        session = self._result()
        self._close_reader()
        return self._arrow_batches(session)

    def _arrow_batches(self, session: Any) -> Iterator[pa.RecordBatch]:
        if self._position >= session.count:
            return
        with _translated():
            reader = session.open_arrow_reader(self._position, session.count - self._position)
            try:
                while (batch := reader.read_next_batch()) is not None:
                    self._position += batch.num_rows
                    yield batch
            finally:
                reader.close()

    def fetch_arrow_table(self) -> pa.Table:
        """The remaining rows as one Arrow table (columns typed from the result's schema)."""
        batches = list(self.fetch_arrow_batches())
        if batches:
            return pa.Table.from_batches(batches)
        return odps_schema_to_arrow_schema(self._result().schema).empty_table()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchone, None)

    # -- housekeeping ---------------------------------------------------------------------

    def setinputsizes(self, sizes: Any) -> None:
        """Does nothing (allowed by PEP 249)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Does nothing (allowed by PEP 249)."""

    def close(self) -> None:
        self._reset()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check_open()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _reset(self) -> None:
        self._close_reader()
        self._session = None
        self._position = 0
        self.instance = None
        self.description = None
        self.rowcount = -1

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
