"""pytest fixtures for testing against the emulator.

Register with ``pytest_plugins = ["airflow_provider_odps_tunnel.emulator.pytest_plugin"]`` in
a root ``conftest.py`` (or import the fixtures into a nested one):

* ``emulator`` (session scope): a running in-process :class:`Emulator` with signature
  checks on, serving a temporary data directory.
* ``emulator_table``: a factory creating a table with a unique name in the emulator's
  project, e.g. ``emulator_table("a bigint, b string", partitions="pt string")``; returns
  the name. Tables are dropped when the test ends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

from .server import Emulator

__all__ = ["emulator", "emulator_table"]

_counter = itertools.count()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A running emulator (auth on) for the whole test session."""
    with Emulator(tmp_path_factory.mktemp("odps-emulator")) as emu:
        yield emu


@pytest.fixture
def emulator_table(emulator: Emulator, request: pytest.FixtureRequest) -> Iterator[Callable]:
    """Create tables for one test: ``emulator_table(schema, partitions=None,
    primary_key=None, buckets=None, name=None) -> table name``."""
    created: list[str] = []

    def make(
        schema: str | TableSchema,
        partitions: str | None = None,
        primary_key: list[str] | None = None,
        buckets: int | None = None,
        name: str | None = None,
    ) -> str:
        if isinstance(schema, str):
            schema = TableSchema(parse_columns(schema), parse_columns(partitions or ""))
        base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:80]
        name = name or f"t_{base}_{next(_counter)}"
        emulator.catalog.create_table(
            emulator.project, name, schema, primary_key=primary_key, buckets=buckets
        )
        created.append(name)
        return name

    yield make
    for name in created:
        emulator.catalog.drop_table(emulator.project, name, if_exists=True)
