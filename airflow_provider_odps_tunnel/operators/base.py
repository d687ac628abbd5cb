"""The base of every operator of this provider: the connection id and the hook; and how an
option several operators take is defined once.

Such options come in groups, each a frozen dataclass of ``OperatorOptions`` (its fields
are the options, with their defaults, documentation and whether they are templated), and
reach an operator's ``__init__`` through ``OptionsMixin`` subclasses built from the
dataclass: the source options (``sources.LoadSource``) and the table options
(``table_options.TableOptions``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import field, fields
from functools import cached_property
from typing import Any, Self

from airflow.sdk import BaseOperator
from airflow.sdk.bases.operator import BaseOperatorMeta

from airflow_provider_odps_tunnel.hooks.tunnel import OdpsTunnelHook

__all__ = ["OdpsBaseOperator", "OperatorOptions", "OptionsMixin", "option"]


class OdpsBaseOperator(BaseOperator):
    """An operator that talks to MaxCompute through ``OdpsTunnelHook``.

    The hook is built on first use inside ``execute`` (after templates are rendered), never
    when the DAG file is parsed.

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


class OptionsMixin:
    """Gives an operator some options of an ``OperatorOptions`` dataclass as parameters.

    A subclass names them in its class statement, e.g. ``class TableMixin(OptionsMixin,
    options=TableOptions, take=("table", "partition"), required=("table",))``, and gets:

    * an ``__init__`` taking exactly those keyword parameters, with the dataclass's defaults
      (the ``required`` ones without a default), that sets each as an attribute of the same
      name once the next ``__init__`` in the MRO has run. It is wrapped as Airflow wraps an
      operator's own ``__init__`` (the mixin is no ``BaseOperator``), so ``default_args``,
      ``partial()`` and ``expand()`` know the parameters, and a missing required one fails
      as Airflow reports it;
    * ``template_fields``: its parent mixin's, then those it takes that the dataclass marks
      templated, in ``take`` order. An operator lists them in its own ``template_fields``
      (``*TableMixin.template_fields``), where it wants them in its order.
    """

    template_fields: Sequence[str] = ()

    def __init_subclass__(
        cls,
        *,
        options: type[OperatorOptions] | None = None,
        take: Sequence[str] = (),
        required: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if options is None:  # an operator using the mixin, or a mixin of no options of its own
            if take or required:
                raise TypeError(f"{cls.__name__} takes options but names no options class")
            return
        declared = {f.name: f for f in fields(options)}
        unknown = [n for n in (*take, *required) if n not in declared or n not in take]
        if unknown or not take:
            raise TypeError(f"{cls.__name__} takes no options {unknown} of {options.__name__}")
        cls.template_fields = (
            *super(cls, cls).template_fields,
            *(n for n in take if declared[n].metadata.get("templated")),
        )
        cls.__init__ = _options_init(cls, [declared[n] for n in take], set(required))


def _options_init(mixin: type, options: Sequence[Any], required: set[str]) -> Any:
    """The ``__init__`` of an ``OptionsMixin`` subclass taking ``options`` (dataclass fields)."""
    empty = inspect.Parameter.empty
    defaults = {f.name: empty if f.name in required else f.default for f in options}

    def __init__(self: Any, **kwargs: Any) -> None:
        values = {name: kwargs.pop(name, default) for name, default in defaults.items()}
        super(mixin, self).__init__(**kwargs)
        for name, value in values.items():
            setattr(self, name, value)

    keyword = inspect.Parameter.KEYWORD_ONLY
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *(
                inspect.Parameter(f.name, keyword, default=defaults[f.name], annotation=f.type)
                for f in options
            ),
            inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD, annotation="Any"),
        ],
        return_annotation="None",
    )
    __init__.__qualname__ = f"{mixin.__qualname__}.__init__"
    __init__.__module__ = mixin.__module__
    return BaseOperatorMeta._apply_defaults(__init__)
