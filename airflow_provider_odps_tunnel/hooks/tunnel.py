"""The hook of the MaxCompute Tunnel provider: connection, client, sessions and transfers.

``OdpsTunnelHook`` turns an ``odps_tunnel`` Airflow connection into our tunnel client
(``airflow_provider_odps_tunnel.tunnel``) and owns every call the operators, sensors
and triggers make to the service. Operators never build a client themselves: they hand the
hook a ``SessionRef`` (what XCom carries between tasks) and get live session objects,
block writes and row ranges back.

The connection's fields are described in ``airflow_provider_odps_tunnel.hooks.connection``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_odps_tunnel.hooks.connection import ConnectionSettings, read_settings
from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    CompressOption,
    Instance,
    InstanceTunnel,
    SQLTaskError,
    TableTunnel,
)
from airflow_provider_odps_tunnel.tunnel import errors as tunnel_errors
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import (
    arrow_type_to_odps_type,
    conform_table,
    odps_schema_to_arrow_schema,
)
from airflow_provider_odps_tunnel.tunnel.options import resolve_timezone
from airflow_provider_odps_tunnel.tunnel.transport.resources import TableRef, project_resource

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Connection

    from airflow_provider_odps_tunnel.tunnel.sessions.table_download import TableDownloadSession
    from airflow_provider_odps_tunnel.tunnel.sessions.upload import TableUploadSession

__all__ = ["OdpsTunnelHook", "BlockWrite"]

#: Errors meaning "the session named by this id does not exist (any more)".
_SESSION_GONE = (
    tunnel_errors.NoSuchUpload,
    tunnel_errors.NoSuchDownload,
    tunnel_errors.UpsertSessionNotFound,
    tunnel_errors.StreamSessionNotFound,
)


@dataclass(frozen=True)
class BlockWrite:
    """What one block write sent: rows, body bytes before compression and a content digest.

    ``digest`` is a BLAKE2b digest of the Arrow buffers written, so a retry can tell whether
    it would send the same data again.
    """

    block_id: int
    rows: int
    bytes: int
    digest: str


class OdpsTunnelHook(BaseHook):
    """Talks to MaxCompute Tunnel through an ``odps_tunnel`` connection.

    The constructor only stores its arguments; the connection is read and the client built
    on first use, then kept for the life of the hook (one task try), so every session of a
    task shares one pooled HTTP client.

    :param odps_tunnel_conn_id: the Airflow connection to use.
    :param project: a project overriding the connection's ``project`` extra.
    :param quota_name: a tunnel quota overriding the connection's ``quota_name`` extra.
    """

    conn_name_attr = "odps_tunnel_conn_id"
    default_conn_name = "odps_tunnel_default"
    conn_type = "odps_tunnel"
    hook_name = "MaxCompute Tunnel"

    def __init__(
        self,
        odps_tunnel_conn_id: str = default_conn_name,
        *,
        project: str | None = None,
        quota_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.odps_tunnel_conn_id = odps_tunnel_conn_id
        self._project = project
        self._quota_name = quota_name

    # -- connection and client ---------------------------------------------------------------

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, read on first use."""
        return self.get_connection(self.odps_tunnel_conn_id)

    async def aload_connection(self) -> None:
        """Read the connection without blocking the event loop (for triggers)."""
        if "connection" not in self.__dict__:
            self.__dict__["connection"] = await self.aget_connection(self.odps_tunnel_conn_id)

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's credentials and endpoints (STS tokens are masked in logs)."""
        return read_settings(self.connection, project=self._project, quota_name=self._quota_name)

    @property
    def project(self) -> str:
        """The default project of this hook."""
        return self.settings.project

    @cached_property
    def odps(self) -> ODPS:
        """The tunnel client's entry object, built once per hook."""
        s = self.settings
        return ODPS(
            s.access_id,
            s.secret_access_key,
            s.project,
            endpoint=s.endpoint,
            tunnel_endpoint=s.tunnel_endpoint,
            quota_name=s.quota_name,
            schema=s.schema,
            sts_token=s.sts_token,
        )

    def get_conn(self) -> ODPS:
        """The entry object (Airflow's conventional accessor)."""
        return self.odps

    @cached_property
    def table_tunnel(self) -> TableTunnel:
        """The table tunnel of the default project, built once per hook."""
        return TableTunnel(self.odps)

    @cached_property
    def instance_tunnel(self) -> InstanceTunnel:
        """The instance (SQL result) tunnel of the default project, built once per hook."""
        return InstanceTunnel(self.odps)

    def qualify(self, table: str) -> str:
        """``table`` with its project (and schema) spelled out: ``proj[.schema].table``."""
        return str(TableRef.of(table, self.project, self.settings.schema))

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated call and say whether it worked (never raises).

        With a service endpoint this asks it where the project's tunnel lives; with only a
        tunnel endpoint it reloads a made-up download session, where "no such download"
        proves the signature was accepted. The message says what to fix: a missing field,
        a key pair the service rejects, an unknown project or an endpoint not reached.
        """
        try:
            s = self.settings
        except ValueError as exc:  # a field the connection lacks
            return False, f"{exc}. Fill it in and test again."
        except Exception as exc:  # e.g. no such connection: report, never raise
            return False, f"{type(exc).__name__}: {exc}"
        where = s.endpoint or s.tunnel_endpoint
        try:
            if s.endpoint:
                self.odps.rest.request(
                    "GET", project_resource(s.project) + "/tunnel", params={"service": ""}
                )
            else:
                gone = (tunnel_errors.NoSuchDownload, tunnel_errors.NoSuchTable)
                with contextlib.suppress(*gone):  # "not found" proves we were let in
                    self.table_tunnel.create_download_session(
                        "airflow_connection_test", download_id="airflow-connection-test"
                    )
        except tunnel_errors.SignatureNotMatch:
            return False, (
                f"{where} rejected the signature: the AccessKey secret (password) does not "
                f"belong to the AccessKey ID (login) {s.access_id!r}"
            )
        except tunnel_errors.AuthError as exc:
            return False, f"{where} refused AccessKey ID {s.access_id!r}: {exc}"
        except tunnel_errors.NoSuchProject:
            return False, f"{where} has no project {s.project!r}"
        except Exception as exc:  # test_connection reports; it must not raise
            return False, f"Could not use {where}: {type(exc).__name__}: {exc}"
        return True, f"Connected to project {s.project!r} at {where}"

    # -- SQL instances -----------------------------------------------------------------------

    def run_sql(self, sql: str, hints: dict[str, Any] | None = None) -> Instance:
        """Submit ``sql`` on the service endpoint (the cached entry's ``run_sql``); returns
        the instance at once. Wait with ``instance.wait_for_success()``."""
        return self.odps.run_sql(sql, hints)

    def get_instance(self, instance_id: str) -> Instance:
        """The SQL instance ``instance_id`` of the default project, to poll or read."""
        return Instance(self.odps, instance_id)

    def stop_instance(self, instance_id: str) -> None:
        """Stop the SQL instance ``instance_id``: it ends ``Terminated``, its unfinished
        tasks ``Cancelled`` (nothing changes if it already ended)."""
        self.get_instance(instance_id).stop()

    def get_logview_url(self, instance_id: str) -> str:
        """The LogView address of ``instance_id`` with a read token signed by the service
        (against the emulator: the emulator's own LogView page)."""
        return self.get_instance(instance_id).get_logview_address()

    def instance_outcome(self, instance_id: str) -> dict[str, Any]:
        """Where the SQL instance stands, as plain JSON (for triggers and XCom):
        ``instance_status`` (``Running``, ``Terminated``, ...), ``tasks`` (each task's status),
        ``succeeded`` (None while it runs) and ``message`` (the service's error text of a
        failed or cancelled task, else None)."""
        instance = self.get_instance(instance_id)
        status = instance.status
        outcome: dict[str, Any] = {
            "instance_id": instance_id,
            "instance_status": status,
            "tasks": {},
            "succeeded": None,
            "message": None,
        }
        if status != "Terminated":
            return outcome
        outcome["tasks"] = instance.get_task_statuses()
        try:
            instance.raise_if_failed()
        except SQLTaskError as exc:
            outcome.update(succeeded=False, message=exc.message)
        else:
            outcome["succeeded"] = True
        return outcome

    @staticmethod
    def raise_for_outcome(outcome: dict[str, Any]) -> None:
        """Raise ``SQLTaskError`` for an :meth:`instance_outcome` that did not succeed: the
        service's error text, the instance's status and its tasks' statuses, and the id."""
        if outcome.get("succeeded"):
            return
        tasks = ", ".join(f"{n}: {s}" for n, s in (outcome.get("tasks") or {}).items())
        raise SQLTaskError(
            f"{outcome.get('message') or 'the instance did not succeed'} "
            f"(instance status {outcome.get('instance_status')}; tasks: {tasks or 'none'})",
            instance_id=outcome["instance_id"],
        )

    def fetch_instance_result(self, instance_id: str, handler: Callable[[Any], Any]) -> Any:
        """``handler(cursor)`` on a DB-API cursor (``tunnel.dbapi``) reading the query
        result of the succeeded instance ``instance_id`` through the instance tunnel, as
        common.sql's handlers expect (``fetch_all_handler``, ``fetch_one_handler``)."""
        from airflow_provider_odps_tunnel.tunnel import dbapi

        with contextlib.closing(dbapi.connect(self.odps).cursor()) as cursor:
            cursor.attach(self.get_instance(instance_id))
            return handler(cursor)

    def create_table_if_missing(
        self, table: str, schema: pa.Schema, partition_columns: Iterable[str] = ()
    ) -> None:
        """Create ``table`` with the columns of the Arrow ``schema`` (types mapped as the
        tunnel writes them) and STRING partition columns, unless it exists: one
        ``CREATE TABLE IF NOT EXISTS`` statement, run to completion."""
        partitions = [c for c in partition_columns]
        taken = {c.lower() for c in partitions}
        columns = []
        for f in schema:
            if f.name.lower() in taken:
                continue
            try:
                odps_type = arrow_type_to_odps_type(f.type)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"cannot create table {table}: column {f.name!r} ({f.type}) has no ODPS "
                    f"type ({exc}); a column whose first rows are all NULL has no type to "
                    "take: create the table first"
                ) from exc
            columns.append(f"`{f.name}` {odps_type}")
        if not columns:
            raise ValueError(f"cannot create table {table}: the source has no data columns")
        sql = f"CREATE TABLE IF NOT EXISTS {self.qualify(table)} ({', '.join(columns)})"
        if partitions:
            sql += " PARTITIONED BY (" + ", ".join(f"`{c}` string" for c in partitions) + ")"
        self.log.info("Creating table %s if missing: %s", table, sql)
        self.run_sql(sql).wait_for_success()

    # -- upload sessions ---------------------------------------------------------------------

    def _opened(
        self,
        kind: str,
        session: Any,
        table: str,
        partition: str | None,
        compression: str | None,
        **extra: Any,
    ) -> SessionRef:
        """The reference of a session just opened on ``table`` (logged, with the row count
        of a download)."""
        ref = SessionRef(
            kind,
            session.id,
            table=table,
            partition=partition or None,
            compression=compression,
            **extra,
        )
        rows = f": {session.count} rows" if kind == "download" else ""
        self.log.info("Opened %s session %s on %s%s", kind, session.id, ref.target, rows)
        return ref

    def create_upload_session(
        self,
        table: str,
        partition: str | None = None,
        *,
        overwrite: bool = False,
        create_partition: bool = False,
        compression: str | None = None,
        tags: str | list[str] | None = None,
    ) -> tuple[SessionRef, TableUploadSession]:
        """Open a block upload session; returns its reference and the live session."""
        qualified = self.qualify(table)
        session = self.table_tunnel.create_upload_session(
            qualified,
            partition_spec=partition or None,
            compress_option=_compress_option(compression),
            overwrite=overwrite,
            create_partition=create_partition,
            tags=tags,
        )
        ref = self._opened(
            "upload", session, qualified, partition, compression, overwrite=overwrite
        )
        return ref, session

    def upload_session(self, ref: SessionRef) -> TableUploadSession:
        """Reattach to an upload session (reloads its status and block list)."""
        return self.table_tunnel.create_upload_session(
            ref.table,
            partition_spec=ref.partition,
            upload_id=ref.session_id,
            compress_option=_compress_option(ref.compression),
        )

    @staticmethod
    def arrow_schema(session: Any) -> pa.Schema:
        """The Arrow schema of a session's data columns (what its writers accept). An upsert
        session's ``schema`` also lists the hidden upsert columns; its ``data_schema`` not."""
        return odps_schema_to_arrow_schema(getattr(session, "data_schema", None) or session.schema)

    def write_block(
        self,
        session: TableUploadSession,
        block_id: int,
        batches: Iterable[pa.RecordBatch],
        *,
        compress: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> BlockWrite:
        """Stream ``batches`` into block ``block_id`` of ``session``, replacing any earlier
        write of that id, and describe what was sent.

        ``on_batch(rows, bytes)`` is called after each batch, for progress reports.
        """
        digest = hashlib.blake2b(digest_size=16)
        rows = 0
        with session.open_arrow_writer(block_id, compress=compress) as writer:
            for batch in batches:
                _hash_batch(digest, batch)
                before = writer.n_bytes
                writer.write(batch)
                rows += batch.num_rows
                if on_batch is not None:
                    on_batch(batch.num_rows, writer.n_bytes - before)
            nbytes = writer.n_bytes
        return BlockWrite(block_id, rows, nbytes, digest.hexdigest())

    # -- download sessions -------------------------------------------------------------------

    def create_download_session(
        self, table: str, partition: str | None = None, *, compression: str | None = None
    ) -> tuple[SessionRef, TableDownloadSession]:
        """Open a download session: a snapshot of the table or partition."""
        qualified = self.qualify(table)
        session = self.table_tunnel.create_download_session(
            qualified,
            partition_spec=partition or None,
            compress_option=_compress_option(compression),
        )
        return self._opened("download", session, qualified, partition, compression), session

    def create_instance_download_session(
        self, instance_id: str, *, compression: str | None = None, limit: bool = False
    ) -> tuple[SessionRef, Any]:
        """Open a download session on the result of a SQL instance.

        The whole result, or an error: a project that only allows the service's limited
        mode (at most 10,000 rows) raises ``NoPermission`` rather than handing back a
        silently truncated result. ``limit=True`` asks for the limited mode on purpose.
        """
        session = self.instance_tunnel.create_download_session(
            instance_id, compress_option=_compress_option(compression), limit=limit
        )
        ref = SessionRef(
            "instance_download", session.id, instance_id=instance_id, compression=compression
        )
        self.log.info(
            "Opened download session %s on instance %s: %d rows",
            session.id,
            instance_id,
            session.count,
        )
        return ref, session

    def download_session(self, ref: SessionRef) -> Any:
        """Reattach to a table or instance download session."""
        option = _compress_option(ref.compression)
        if ref.kind == "instance_download":
            return self.instance_tunnel.create_download_session(
                ref.instance_id, download_id=ref.session_id, compress_option=option
            )
        if ref.kind != "download":
            raise ValueError(f"{ref.kind} session {ref.session_id} is not a download session")
        return self.table_tunnel.create_download_session(
            ref.table,
            partition_spec=ref.partition,
            download_id=ref.session_id,
            compress_option=option,
        )

    def read_range(
        self,
        session: Any,
        start: int,
        count: int,
        *,
        columns: list[str] | None = None,
        compress: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """The rows ``start .. start+count-1`` of a download session, as Arrow batches."""
        reader = session.open_arrow_reader(start, count, compress=compress, columns=columns)
        try:
            while (batch := reader.read_next_batch()) is not None:
                yield batch
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    def partition_row_count(self, table: str, partition: str | None = None) -> int | None:
        """Rows in the table or partition, or None when it does not exist (yet).

        Opens a download session (a snapshot) and reads its row count; the session is left
        to expire, which is what the service expects of unused sessions.
        """
        try:
            _, session = self.create_download_session(table, partition)
        except (tunnel_errors.NoSuchPartition, tunnel_errors.NoSuchTable):
            return None
        return int(session.count)

    # -- upsert and stream sessions ----------------------------------------------------------

    def create_upsert_session(
        self,
        table: str,
        partition: str | None = None,
        *,
        slot_num: int = 1,
        commit_timeout: float = 120,
        lifecycle: int | None = None,
        compression: str | None = None,
    ) -> tuple[SessionRef, Any]:
        """Open an upsert session on a primary-key (transactional) table."""
        qualified = self.qualify(table)
        session = self.table_tunnel.create_upsert_session(
            qualified,
            partition_spec=partition or None,
            slot_num=slot_num,
            commit_timeout=commit_timeout,
            compress_option=_compress_option(compression),
            lifecycle=lifecycle,
        )
        return self._opened("upsert", session, qualified, partition, compression), session

    def upsert_batches(
        self,
        stream: Any,
        schema: Any,
        batches: Iterable[pa.RecordBatch],
        *,
        delete_column: str | None = None,
    ) -> tuple[int, int]:
        """Upsert the rows of ``batches`` through an ``Upsert`` stream; rows whose
        ``delete_column`` is true are deleted by primary key instead. Returns the numbers of
        rows upserted and deleted (the stream still needs a ``flush``)."""
        arrow_schema = odps_schema_to_arrow_schema(schema)
        upserted = deleted = 0
        for batch in batches:
            flags: list[Any] = [False] * batch.num_rows
            if delete_column is not None:
                index = batch.schema.get_field_index(delete_column)
                if index < 0:
                    raise ValueError(f"the data has no delete column {delete_column!r}")
                flags = batch.column(index).to_pylist()
                batch = batch.remove_column(index)
            rows = 0
            for conformed in conform_table(batch, arrow_schema, resolve_timezone()):
                columns = [column.to_pylist() for column in conformed.columns]
                deletes = flags[rows : rows + conformed.num_rows]
                for values, delete in zip(zip(*columns, strict=True), deletes, strict=True):
                    if delete:
                        stream.delete(list(values))
                        deleted += 1
                    else:
                        stream.upsert(list(values))
                        upserted += 1
                rows += conformed.num_rows
        return upserted, deleted

    def upsert_session(self, ref: SessionRef, *, commit_timeout: float = 120) -> Any:
        """Reattach to an upsert session."""
        return self.table_tunnel.create_upsert_session(
            ref.table,
            partition_spec=ref.partition,
            upsert_id=ref.session_id,
            commit_timeout=commit_timeout,
            compress_option=_compress_option(ref.compression),
        )

    def create_stream_upload_session(
        self,
        table: str,
        partition: str | None = None,
        *,
        create_partition: bool = False,
        compression: str | None = None,
    ) -> tuple[SessionRef, Any]:
        """Open a stream upload session (every write is committed when it returns)."""
        qualified = self.qualify(table)
        session = self.table_tunnel.create_stream_upload_session(
            qualified,
            partition_spec=partition or None,
            compress_option=_compress_option(compression),
            create_partition=create_partition,
        )
        return self._opened("stream", session, qualified, partition, compression), session

    @staticmethod
    def write_stream(
        session: Any, batches: Iterable[pa.RecordBatch], *, compress: bool = False
    ) -> int:
        """Append ``batches`` through one writer of a stream session; returns the rows.

        The writer sends a batch each ``options.block_buffer_size`` bytes and at the end;
        every batch the service accepted is committed.
        """
        rows = 0
        writer = session.open_record_writer(compress=compress)
        for batch in batches:
            writer.write(batch)
            rows += batch.num_rows
        writer.close()
        return rows

    def stream_upload_session(self, ref: SessionRef) -> Any:
        """Reattach to a stream upload session."""
        return self.table_tunnel.create_stream_upload_session(
            ref.table,
            partition_spec=ref.partition,
            upload_id=ref.session_id,
            compress_option=_compress_option(ref.compression),
        )

    # -- any session -------------------------------------------------------------------------

    def session_status(self, ref: SessionRef) -> str:
        """The session's state in lower case (``normal``, ``closed``, ``committed``,
        ``expired`` ...), or ``missing`` when the service no longer knows the id."""
        try:
            if ref.kind == "upload":
                session = self.upload_session(ref)
            elif ref.kind == "upsert":
                session = self.upsert_session(ref)
            elif ref.kind == "stream":
                session = self.stream_upload_session(ref)
            else:
                session = self.download_session(ref)
        except _SESSION_GONE:
            return "missing"
        except tunnel_errors.SessionStateError:
            return "expired"
        except tunnel_errors.StatusConflict:
            return "expired"
        return _status_name(session.status)


def _compress_option(name: str | None) -> CompressOption | None:
    return CompressOption(name) if name else None


def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status)).lower()


def _hash_batch(digest: Any, batch: pa.RecordBatch) -> None:
    """Feed a batch's row count and Arrow buffers to ``digest`` without copying them."""
    digest.update(batch.num_rows.to_bytes(8, "little"))
    for column in batch.columns:
        for buffer in column.buffers():
            if buffer is not None:
                digest.update(memoryview(buffer))
