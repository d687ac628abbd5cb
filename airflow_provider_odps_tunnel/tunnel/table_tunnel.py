"""``TableTunnel``: the entry point to table sessions and previews, as ``odps.tunnel``."""

from __future__ import annotations

import json
import logging
from typing import Any
from xml.etree import ElementTree

import pyarrow as pa

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .codec.partition import PartitionSpec
from .errors import DataStreamError, TunnelConnectionError, TunnelError, TunnelTimeoutError
from .options import normalize_tags
from .sessions.preview import PreviewArrowReader, PreviewRecordReader
from .sessions.stream_upload import TableStreamUploadSession
from .sessions.table_base import TUNNEL_VERSION
from .sessions.table_download import TableDownloadSession
from .sessions.upload import TableUploadSession
from .sessions.upsert import TableUpsertSession
from .transport.resources import TableRef
from .transport.rest import ResponseStream, open_body
from .transport.retry import NO_WAIT, Attempt, RetryPolicy

log = logging.getLogger(__name__)

__all__ = ["TableTunnel"]

_IPC_CODECS = ("ZSTD", "LZ4_FRAME")
# What a broken or damaged preview body raises while it is parsed.
_BODY_ERRORS = (
    OSError,
    ValueError,
    pa.ArrowException,
    TunnelConnectionError,  # a cut body or a reset connection (ResponseStream.read)
    TunnelTimeoutError,
    DataStreamError,
)


class TableTunnel(BaseTunnel):
    """Creates (or reattaches to) download, upload, stream-upload and upsert sessions.

    ``TableTunnel(ODPS(...))`` or ``TableTunnel(pyodps_odps_object)``; ``endpoint``
    overrides the tunnel endpoint and ``quota_name`` selects a tunnel quota. Every method
    takes a table name (``t``, ``project.t``, ``project.schema.t``) or table object, a
    partition spec as text or :class:`PartitionSpec`, and ``schema`` for the table's
    schema (namespace) when it is not the entry object's default.
    """

    def _table(self, table: Any, schema: str | None) -> TableRef:
        return TableRef.of(table, self._project, schema or self._schema)

    def create_download_session(
        self,
        table: Any,
        async_mode: bool = True,
        partition_spec: str | PartitionSpec | None = None,
        download_id: str | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        schema: str | None = None,
        timeout: float | None = None,
        tags: str | list[str] | None = None,
        *,
        async_: bool | None = None,
        **kw: Any,
    ) -> TableDownloadSession:
        """A download session of the table (partition); ``download_id`` reattaches.
        ``async_`` is pyodps's other name of ``async_mode``. ``**kw`` is in the signature
        because pyodps's has it; any keyword in it is a ``TypeError``, as in pyodps."""
        if kw:
            raise TypeError(
                f"create_download_session() got an unexpected keyword argument {next(iter(kw))!r}"
            )
        if async_ is not None:
            async_mode = async_
        return TableDownloadSession(
            self.tunnel_rest,
            self._table(table, schema),
            partition_spec,
            download_id=download_id,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            async_mode=async_mode,
            timeout=timeout,
            quota_name=self._quota_name,
            tags=tags,
        )

    def create_upload_session(
        self,
        table: Any,
        partition_spec: str | PartitionSpec | None = None,
        upload_id: str | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        schema: str | None = None,
        overwrite: bool = False,
        create_partition: bool = False,
        tags: str | list[str] | None = None,
    ) -> TableUploadSession:
        """A block upload session; ``upload_id`` reattaches (e.g. from another process)."""
        return TableUploadSession(
            self.tunnel_rest,
            self._table(table, schema),
            partition_spec,
            upload_id=upload_id,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            create_partition=create_partition,
            overwrite=overwrite,
            quota_name=self._quota_name,
            tags=tags,
        )

    def create_stream_upload_session(
        self,
        table: Any,
        partition_spec: str | PartitionSpec | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        schema: str | None = None,
        schema_version: str | None = None,
        zorder_columns: str | list[str] | None = None,
        upload_id: str | None = None,
        tags: str | list[str] | None = None,
        allow_schema_mismatch: bool = True,
        create_partition: bool = False,
        slot_num: int = 0,
        dynamic_partition: bool = False,
    ) -> TableStreamUploadSession:
        """A stream upload session (each flushed batch is committed on arrival). With
        ``allow_schema_mismatch=False`` and no ``schema_version`` the session is created at
        the table's current schema version, read from its metadata as pyodps does."""
        ref = self._table(table, schema)
        return TableStreamUploadSession(
            self.tunnel_rest,
            ref,
            partition_spec,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            quota_name=self._quota_name,
            create_partition=create_partition,
            zorder_columns=zorder_columns,
            schema_version=schema_version,
            allow_schema_mismatch=allow_schema_mismatch,
            upload_id=upload_id,
            tags=tags,
            schema_version_reloader=self._schema_version_reloader(ref),
            slot_num=slot_num,
            dynamic_partition=dynamic_partition,
        )

    def _schema_version_reloader(self, ref: TableRef) -> Any:
        """A callable returning the table's current schema version (``Reserved`` of its
        metadata on the service endpoint): the first call reads the table, later ones its
        extended metadata, as pyodps's reloader reloads the table's extended info."""
        calls = 0

        def reload_version() -> str | None:
            nonlocal calls
            if self._entry is None or self._entry.endpoint is None:
                raise TunnelError(
                    f"no service endpoint to read the schema version of {ref} from",
                    table=str(ref),
                )
            flags = [("extended", "")] if calls else None
            calls += 1
            resp = self._entry.rest.request(
                "GET", ref.resource(), params=flags, context={"table": str(ref)}
            )
            try:
                text = ElementTree.fromstring(resp.content).findtext("Schema") or "{}"
                reserved = json.loads(json.loads(text).get("Reserved") or "{}")
            except (ElementTree.ParseError, ValueError, AttributeError) as exc:
                raise TunnelError(
                    f"the metadata of {ref} could not be read: {exc}", table=str(ref)
                ) from None
            version = reserved.get("schema_version")
            return None if version in (None, "") else str(version)

        return reload_version

    def create_upsert_session(
        self,
        table: Any,
        partition_spec: str | PartitionSpec | None = None,
        slot_num: int = 1,
        commit_timeout: float = 120,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        schema: str | None = None,
        upsert_id: str | None = None,
        tags: str | list[str] | None = None,
        lifecycle: int | None = None,
    ) -> TableUpsertSession:
        """An upsert session of a primary-key table; ``upsert_id`` reattaches."""
        return TableUpsertSession(
            self.tunnel_rest,
            self._table(table, schema),
            partition_spec,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            slot_num=slot_num,
            commit_timeout=commit_timeout,
            lifecycle=lifecycle,
            quota_name=self._quota_name,
            upsert_id=upsert_id,
            tags=tags,
        )

    def open_preview_reader(
        self,
        table: Any,
        partition_spec: str | PartitionSpec | None = None,
        columns: list[str] | None = None,
        limit: int | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        arrow: bool = True,
        timeout: float | None = None,
        make_compat: bool = True,
        read_all: bool = False,
        tags: str | list[str] | None = None,
        *,
        schema: str | None = None,
    ) -> Any:
        """The first ``limit`` rows (service default when None) without a session.

        Returns an Arrow reader (``read()`` gives one ``pyarrow.Table``), or a record
        reader when ``arrow`` is False. With ``read_all`` an Arrow reader's rows are
        returned as one ``pyarrow.Table`` (an extension: pyodps ignores ``read_all`` for
        Arrow readers); a record reader always reads the body whole, as pyodps's does
        with ``read_all``.
        ``columns`` come back in the order given; they are requested in table order, as
        pyodps does (the order is the table object's schema, else the table's metadata
        from the service endpoint). ``make_compat`` turns struct-encoded timestamps into
        Arrow timestamps. ``timeout`` is accepted for compatibility (the client's read
        timeout applies). Like pyodps, no ``quotaName`` is sent: a preview is not a
        session.
        """
        ref = self._table(table, schema)
        option = build_compress_option(
            compress_option, compress_algo, compress_level, compress_strategy
        )
        headers: dict[str, Any] = {
            "x-odps-tunnel-version": TUNNEL_VERSION,
            "odps-tunnel-date-transform": "v1",
            "odps-tunnel-sdk-support-schema-evolution": "true",
            "Content-Length": "0",
        }
        if option is not None:
            headers["Accept-Encoding"] = option.algorithm.get_encoding(legacy=False)
        tag_list = normalize_tags(tags)
        if tag_list:
            headers["odps-tunnel-tags"] = ",".join(tag_list)
        spec = PartitionSpec(partition_spec) if partition_spec else None
        params = {
            "limit": str(limit) if limit else "-1",
            "columns": ",".join(self._table_order(table, ref, columns)) if columns else None,
            "partition": spec.to_param() if spec else None,
        }
        context = {"table": str(ref), "partition": spec.to_param() if spec else None}
        reader = self._read_preview(ref, params, headers, columns, make_compat, context)
        if not arrow:
            return PreviewRecordReader(reader)
        return reader.read() if read_all else reader

    def _table_order(self, table: Any, ref: TableRef, columns: list[str]) -> list[str]:
        """``columns`` in the table's column order (names the table lacks last, as given,
        so the service names them in its error)."""
        names = _schema_names(table)
        if names is None:
            names = self._fetch_column_names(ref)
        if names is None:
            log.warning(
                "preview of %s: no service endpoint to read the column order from; the "
                "columns are requested in the order given",
                ref,
            )
            return list(columns)
        wanted = {c.lower() for c in columns}
        known = {n.lower() for n in names}
        ordered = [n for n in names if n.lower() in wanted]
        return ordered + [c for c in columns if c.lower() not in known]

    def _fetch_column_names(self, ref: TableRef) -> list[str] | None:
        """The table's column names (partition columns last) from its metadata on the
        service endpoint, as pyodps's table object loads them; None without an endpoint."""
        if self._entry is None or self._entry.endpoint is None:
            return None
        resp = self._entry.rest.request("GET", ref.resource(), context={"table": str(ref)})
        try:
            text = ElementTree.fromstring(resp.content).findtext("Schema") or "{}"
            schema = json.loads(text)
        except (ElementTree.ParseError, ValueError) as exc:
            raise TunnelError(
                f"the metadata of {ref} could not be read: {exc}", table=str(ref)
            ) from None
        columns = (schema.get("columns") or []) + (schema.get("partitionKeys") or [])
        return [c["name"] for c in columns]

    def _read_preview(
        self,
        ref: TableRef,
        params: dict[str, Any],
        headers: dict[str, Any],
        columns: list[str] | None,
        make_compat: bool,
        context: dict[str, Any],
    ) -> PreviewArrowReader:
        """GET and parse the preview, again from the start when the body breaks.

        A preview is one small body read whole, so a broken or unparsable body is simply
        requested again at once (``options.retry_times`` times). Preview bodies carry no
        checksum: corruption is caught only when it breaks the Arrow stream.
        """

        def fetch(attempt: Attempt) -> PreviewArrowReader:
            resp = self.tunnel_rest.request(
                "GET",
                ref.preview_resource(),
                params=params,
                headers=headers,
                stream=True,
                context=context,
            )
            # ZSTD / LZ4_FRAME (upper case) are Arrow IPC buffer codecs that pyarrow reads
            # itself; lower-case tokens are HTTP body compression.
            encoding = resp.headers.get("Content-Encoding")
            body = ResponseStream(resp) if encoding in _IPC_CODECS else open_body(resp)
            try:
                return PreviewArrowReader(body, columns=columns, make_compat=make_compat)
            except _BODY_ERRORS as exc:
                raise _BrokenPreview(attempt.number, exc) from exc

        policy = RetryPolicy.single(
            "broken body",
            lambda exc: isinstance(exc, _BrokenPreview),
            backoff=NO_WAIT,
            retry_after=False,
        )
        try:
            return policy.call(fetch, what=f"preview of {ref}")
        except _BrokenPreview as broken:
            raise DataStreamError(
                f"the preview body could not be read after {broken.attempts} attempts: "
                f"{broken.cause!r}",
                **context,
            ) from broken.cause


def _schema_names(table: Any) -> list[str] | None:
    """Column names of a table object that carries its schema (pyodps ``Table``:
    ``table_schema``), partition columns included; None for a name."""
    schema = getattr(table, "table_schema", None)
    if schema is None or isinstance(table, str | TableRef):
        return None
    return [c.name for c in schema]  # iterating yields the partition columns too


class _BrokenPreview(Exception):
    """A preview body that could not be read (``attempts`` requests so far)."""

    def __init__(self, attempts: int, cause: BaseException):
        super().__init__(f"broken preview body: {cause!r}")
        self.attempts = attempts
        self.cause = cause
