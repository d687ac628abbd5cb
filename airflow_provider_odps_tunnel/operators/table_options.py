"""The table an operator works on and how its session is opened: options defined once.

``TableOptions`` holds them (their defaults and documentation). ``TableMixin`` sets the
table and partition on an operator (required by the operators that write, optional for the
export, where a SQL result may stand instead), and one mixin per kind of write session the
options that open it: ``UploadSessionMixin`` (a block upload), ``StreamSessionMixin`` (a
stream upload) and ``UpsertSessionMixin`` (an upsert). As with the source mixins (see
``operators.base``), the operator's ``__init__`` lists the options and passes them on, and
its ``template_fields`` list the mixins' ``templated_options``: the table first, then the
source, then the session options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.base import OperatorOptions, option

__all__ = [
    "TableOptions",
    "TableMixin",
    "UploadSessionMixin",
    "StreamSessionMixin",
    "UpsertSessionMixin",
]


@dataclass(frozen=True)
class TableOptions(OperatorOptions):
    """The table of an operator and how its write session is opened: the table options of
    the operators that write a table (and of the export, which reads one), defined once.

    ``OdpsCreateUploadSessionOperator`` and ``ObjectStorageToOdpsOperator`` take them all;
    ``OdpsStreamUploadOperator`` all but ``overwrite`` and ``tags``; ``OdpsUpsertOperator``
    the table, the partition and ``compression``; ``OdpsPlanExportOperator`` the table and
    the partition (its ``compression`` is the download's, and its own). The operators that
    write require ``table``. Each operator builds one from its rendered attributes
    (``TableOptions.of(self)``) when it runs. "(templated)" marks the options that every
    operator taking them templates.

    :param table: the table, ``table``, ``project.table`` or ``project.schema.table``
        (templated).
    :param partition: the partition, e.g. ``"ds=2024-01-01"`` (templated).
    :param overwrite: replace the table's or partition's data at commit (``INSERT
        OVERWRITE``) instead of appending.
    :param create_partition: create the partition if it does not exist.
    :param compression: compress what is sent: ``"zlib"``, ``"zstd"``, ``"lz4"``,
        ``"snappy"`` or None (templated).
    :param tags: tags of the session, for the service's audit logs (templated).
    """

    table: str | None = option(None, templated=True)
    partition: str | None = option(None, templated=True)
    overwrite: bool = False
    create_partition: bool = False
    compression: str | None = option(None, templated=True)
    tags: str | list[str] | None = option(None, templated=True)

    def matches(
        self,
        hook: OdpsTunnelHook,
        session: SessionRef | Mapping[str, Any],
        *,
        upload: bool = False,
    ) -> bool:
        """Whether ``session`` (a reference, or a record stored with its ``table`` and
        ``partition``) is on this table and partition, so a retry may go on with it. An
        upload session must also have been opened with this ``overwrite`` (its commit
        overwrites or appends) and ``compression`` (its writers compress as it was opened).
        """
        opened = session.to_dict() if isinstance(session, SessionRef) else session
        wanted = {"table": hook.qualify(self.table), "partition": self.partition or None}
        if upload:
            wanted.update(overwrite=self.overwrite, compression=self.compression)
        return all(opened.get(k) == v for k, v in wanted.items())


class TableMixin(BaseOperator):
    """Sets an operator's table: ``table`` and ``partition`` (documented in
    ``TableOptions``). The operator's ``__init__`` lists them (``table`` required by the
    operators that write, None by default for the export) and passes each on. The mixin
    declares no ``template_fields``: the operator lists ``templated_options`` in its own."""

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("table", "partition")

    def __init__(self, *, table: str | None, partition: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.partition = partition


class UploadSessionMixin(BaseOperator):
    """Sets the options that open a block upload session on an operator: ``overwrite``,
    ``create_partition``, ``compression`` and ``tags`` (documented in ``TableOptions``),
    listed and passed on by the operator's ``__init__`` as for ``TableMixin``."""

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("compression", "tags")

    def __init__(
        self,
        *,
        overwrite: bool,
        create_partition: bool,
        compression: str | None,
        tags: str | list[str] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.overwrite = overwrite
        self.create_partition = create_partition
        self.compression = compression
        self.tags = tags


class StreamSessionMixin(BaseOperator):
    """Sets the options that open a stream upload session on an operator:
    ``create_partition`` and ``compression`` (documented in ``TableOptions``), listed and
    passed on by the operator's ``__init__`` as for ``TableMixin``."""

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("compression",)

    def __init__(self, *, create_partition: bool, compression: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.create_partition = create_partition
        self.compression = compression


class UpsertSessionMixin(BaseOperator):
    """Sets the table option that opens an upsert session on an operator, ``compression``
    (documented in ``TableOptions``), listed and passed on by the operator's ``__init__``
    as for ``TableMixin``; the upsert's slots, lifetime and commit timeout are its own."""

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("compression",)

    def __init__(self, *, compression: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.compression = compression
