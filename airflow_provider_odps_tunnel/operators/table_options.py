"""The table an operator works on and how its session is opened: options defined once.

``TableOptions`` holds them (their defaults and documentation). ``TableMixin`` gives an
operator the table and partition it writes, ``OptionalTableMixin`` those an export reads
(where a SQL result may stand instead of a table), and one mixin per kind of write session
the options that open it: ``UploadSessionMixin`` (a block upload), ``StreamSessionMixin``
(a stream upload) and ``UpsertSessionMixin`` (an upsert). They are built from the dataclass
as the source mixins are (``OptionsMixin`` in ``operators.base``); the operators list their
``template_fields`` in their own, table first, then the source, then the session options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.base import OperatorOptions, OptionsMixin, option

__all__ = [
    "TableOptions",
    "TableMixin",
    "OptionalTableMixin",
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


class TableMixin(
    OptionsMixin, options=TableOptions, take=("table", "partition"), required=("table",)
):
    """Gives an operator the table it writes: ``table`` (required) and ``partition``
    (documented in ``TableOptions``). The operator lists them in its own
    ``template_fields`` as ``*TableMixin.template_fields``."""


class OptionalTableMixin(OptionsMixin, options=TableOptions, take=("table", "partition")):
    """Gives an operator the table it reads, ``table`` and ``partition`` (documented in
    ``TableOptions``), where something else may stand instead: the table is optional."""


class UploadSessionMixin(
    OptionsMixin,
    options=TableOptions,
    take=("overwrite", "create_partition", "compression", "tags"),
):
    """Gives an operator the options that open a block upload session: ``overwrite``,
    ``create_partition``, ``compression`` and ``tags`` (documented in ``TableOptions``)."""


class StreamSessionMixin(
    OptionsMixin, options=TableOptions, take=("create_partition", "compression")
):
    """Gives an operator the options that open a stream upload session:
    ``create_partition`` and ``compression`` (documented in ``TableOptions``)."""


class UpsertSessionMixin(OptionsMixin, options=TableOptions, take=("compression",)):
    """Gives an operator the table option that opens an upsert session, ``compression``
    (documented in ``TableOptions``); the upsert's slots, lifetime and commit timeout are
    its own."""
