"""``TableTunnel``: the entry point to table sessions and previews, as ``odps.tunnel``."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import requests
import urllib3

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .codec.partition import PartitionSpec
from .errors import DataStreamError
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
    requests.RequestException,
    urllib3.exceptions.HTTPError,
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
    ) -> TableDownloadSession:
        """A download session of the table (partition); ``download_id`` reattaches.
        ``async_`` is pyodps's other name of ``async_mode``."""
        return TableDownloadSession(
            self.tunnel_rest,
            self._table(table, schema),
            partition_spec,
            download_id=download_id,
            compress_option=build_compress_option(
                compress_option, compress_algo, compress_level, compress_strategy
            ),
            async_mode=async_mode if async_ is None else async_,
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
        """A stream upload session (each flushed batch is committed on arrival)."""
        return TableStreamUploadSession(
            self.tunnel_rest,
            self._table(table, schema),
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
            slot_num=slot_num,
            dynamic_partition=dynamic_partition,
        )

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
        schema: str | None = None,
    ) -> Any:
        """The first ``limit`` rows (service default when None) without a session.

        Returns an Arrow reader, or a record reader when ``arrow`` is False; with
        ``read_all`` an Arrow reader's rows are returned as one ``pyarrow.Table``.
        ``columns`` are sent in the order given; ask for them in table order, as the
        service requires. ``make_compat`` turns struct-encoded timestamps into Arrow
        timestamps. ``timeout`` is accepted for compatibility (the client's read timeout
        applies).
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
            "columns": ",".join(columns) if columns else None,
            "partition": spec.to_param() if spec else None,
            "quotaName": self._quota_name,
        }
        context = {"table": str(ref), "partition": spec.to_param() if spec else None}
        reader = self._read_preview(ref, params, headers, columns, make_compat, context)
        if not arrow:
            return PreviewRecordReader(reader)
        return reader.read() if read_all else reader

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


class _BrokenPreview(Exception):
    """A preview body that could not be read (``attempts`` requests so far)."""

    def __init__(self, attempts: int, cause: BaseException):
        super().__init__(f"broken preview body: {cause!r}")
        self.attempts = attempts
        self.cause = cause
