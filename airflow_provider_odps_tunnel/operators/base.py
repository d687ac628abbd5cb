"""The base of every operator of this provider: the connection id and the hook; and how an
option several operators take is defined once.

Such options come in groups, each a frozen dataclass of ``OperatorOptions`` whose fields
are the options, with their defaults, documentation and whether they are templated: the
source options (``sources.LoadSource``) and the table options
(``table_options.TableOptions``). An operator takes them through mixins, ordinary
``BaseOperator`` subclasses with an explicit ``__init__`` each (``sources.LoadSourceMixin``,
``table_options.TableMixin``, ...), and builds the dataclass from its attributes when it
runs (``LoadSource.of(self)``).

An operator that takes such options lists every one of them in its own ``__init__``, with
its type and default, so that ``inspect.signature``, ``help()``, IDEs and the API reference
show them, and passes them on to the mixins' ``__init__``, which set the attributes. Its
``template_fields`` are its own too: the mixins declare no ``template_fields`` (one before
``OdpsBaseOperator`` in the MRO would hide the connection's), but name the options every
operator templates in ``templated_options``, which the operator lists where it wants them.
Tests (``tests/provider/test_source_options.py``, ``test_table_options.py``) check that
every operator's defaults are the dataclass's and that it templates the options the
dataclass marks templated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, fields
from functools import cached_property
from typing import Any, Self

from airflow.sdk import BaseOperator

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook
from airflow_provider_odps_tunnel.operators.lineage import OdpsLineageMixin

__all__ = ["OdpsBaseOperator", "OperatorOptions", "option"]


class OdpsBaseOperator(OdpsLineageMixin, BaseOperator):
    """An operator that talks to MaxCompute through ``OdpsTunnelHook``.

    The hook is built on first use inside ``execute`` (after templates are rendered), never
    when the DAG file is parsed. OpenLineage facets come from ``OdpsLineageMixin``
    (``operators.lineage``).

    :param odps_tunnel_conn_id: the ``odps_tunnel`` connection to use (templated).
    :param project: a project overriding the connection's (templated).
    """

    template_fields: Sequence[str] = ("odps_tunnel_conn_id", "project")

    def __init__(
        self,
        *,
        odps_tunnel_conn_id: str = OdpsTunnelHook.default_conn_name,
        project: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.odps_tunnel_conn_id = odps_tunnel_conn_id
        self.project = project

    @cached_property
    def hook(self) -> OdpsTunnelHook:
        """The hook of this task try (it caches the tunnel client)."""
        return OdpsTunnelHook(self.odps_tunnel_conn_id, project=self.project)


# -- options shared by several operators -----------------------------------------------------


def option(default: Any, *, templated: bool = False) -> Any:
    """A field of an ``OperatorOptions`` dataclass: the option's default, and whether every
    operator that takes it templates it."""
    return field(default=default, metadata={"templated": templated})


class OperatorOptions:
    """The base of a frozen dataclass that holds a group of options several operators take:
    each field an option, its default that of every operator taking it (declared with
    ``option``). An operator builds one from its rendered attributes when it runs."""

    @classmethod
    def of(cls, operator: Any) -> Self:
        """The options an operator holds (rendered); those it lacks keep their defaults."""
        return cls(**{f.name: getattr(operator, f.name, f.default) for f in fields(cls)})

    @classmethod
    def templated(cls) -> tuple[str, ...]:
        """The options that every operator taking them templates, in field order."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("templated"))
