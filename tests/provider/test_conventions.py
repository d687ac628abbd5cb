"""Conventions every operator and sensor keeps: templated connection id and target, every
constructor parameter documented, the provider info naming real modules. (That the layers
below the provider never import Airflow is an import contract: see tests/test_layers.py.)"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from airflow_provider_odps_tunnel.get_provider_info import get_provider_info
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator
from airflow_provider_odps_tunnel.sensors.base import OdpsBaseSensor
from airflow_provider_odps_tunnel.triggers.tunnel import _PollingTrigger

INFO = get_provider_info()
MODULES = [
    m
    for kind in ("hooks", "operators", "sensors", "triggers")
    for entry in INFO[kind]
    for m in entry["python-modules"]
]


def _public_classes(base: type) -> list[type]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, base)
                and obj.__module__ == name
                and not obj.__name__.startswith("_")
            ):
                found.append(obj)
    return found


OPERATORS = _public_classes(OdpsBaseOperator) + _public_classes(OdpsBaseSensor)
ALL_TASKS = [
    *OPERATORS,
    *[c for c in _public_classes(object) if c.__name__.endswith("Operator") and c not in OPERATORS],
]


def _params(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("airflow_provider_odps_tunnel") and "__init__" in vars(
            klass
        ):
            signature = inspect.signature(vars(klass)["__init__"])
            names |= {
                n
                for n, p in signature.parameters.items()
                if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
    return names


def test_every_provider_module_exists_and_holds_a_class():
    assert len(MODULES) >= 9
    assert len(ALL_TASKS) >= 11


@pytest.mark.parametrize("cls", ALL_TASKS, ids=lambda c: c.__name__)
def test_every_parameter_is_documented(cls):
    documented = set(re.findall(r":param (\w+):", cls.__doc__ or ""))
    missing = _params(cls) - documented
    assert not missing, f"{cls.__name__} does not document {sorted(missing)}"


@pytest.mark.parametrize("cls", OPERATORS, ids=lambda c: c.__name__)
def test_connection_and_target_are_templated(cls):
    fields = set(cls.template_fields)
    assert {"odps_tunnel_conn_id", "project"} <= fields
    for target in ("table", "partition", "session", "source", "destination"):
        if target in _params(cls):
            assert target in fields, f"{cls.__name__}.{target} is not templated"


#: The bases whose parameters reach a task through ``**kwargs``, as ``BaseOperator``'s do.
BASES = (OdpsBaseOperator, OdpsBaseSensor)


@pytest.mark.parametrize("cls", ALL_TASKS, ids=lambda c: c.__name__)
def test_the_class_signature_shows_every_parameter(cls):
    """``inspect.signature(cls)``, which ``help()``, IDEs and the API reference show, lists
    every parameter of the task's ``__init__`` chain (options set by mixins included), each
    with a type; only the bases' connection id and project come through ``**kwargs``."""
    shown = inspect.signature(cls).parameters
    through_kwargs = {n for base in BASES if issubclass(cls, base) for n in _params(base)}
    assert _params(cls) - through_kwargs <= set(shown)
    untyped = [n for n, p in shown.items() if p.annotation is p.empty]
    assert not untyped, f"{cls.__name__} does not annotate {untyped}"


@pytest.mark.parametrize("cls", ALL_TASKS, ids=lambda c: c.__name__)
def test_no_base_loses_its_template_fields(cls):
    """Every field a base of the task templates (the connection id and project of
    ``OdpsBaseOperator``, say) the task templates too: no mixin before that base in the MRO
    hides them, and the task's own ``template_fields`` list them."""
    for base in cls.__mro__[1:]:
        declared = vars(base).get("template_fields")
        if declared is not None and base.__module__.startswith("airflow_provider_odps_tunnel"):
            missing = set(declared) - set(cls.template_fields)
            assert not missing, f"{cls.__name__} does not template {base.__name__}'s {missing}"


@pytest.mark.parametrize("cls", _public_classes(_PollingTrigger), ids=lambda c: c.__name__)
def test_trigger_arguments_are_documented(cls):
    documented = set(re.findall(r":param (\w+):", cls.__doc__ or ""))
    assert _params(cls) <= documented
