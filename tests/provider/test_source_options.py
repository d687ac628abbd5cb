"""The source options are defined once (``operators/sources.py``) and shared by the operators
that load data: the same parameters, defaults, templated fields and errors everywhere, and
Airflow (``default_args``, ``partial``/``expand``, templates) sees them as it did when each
operator declared them itself."""

from __future__ import annotations

import datetime
import inspect
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.operators.sources import (
    DEFAULT_BATCH_ROWS,
    SOURCE_CHOICE_ERROR,
    FileSourceMixin,
    LoadSource,
    LoadSourceMixin,
)
from airflow_provider_odps_tunnel.operators.stream import OdpsStreamUploadOperator
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.operators.upload import (
    OdpsPlanUploadOperator,
    OdpsWriteBlocksOperator,
)
from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator

from .data import SALES_COLUMNS, create_table

SOURCE_OPTIONS = {f.name: f.default for f in fields(LoadSource)}
FILES = ("source", "source_conn_id", "source_format")
LOADERS = [ObjectStorageToOdpsOperator, OdpsUpsertOperator, OdpsStreamUploadOperator]
#: The four operators that take a source's files: the upload plan and the three loaders.
SOURCE_TAKERS = [OdpsPlanUploadOperator, *LOADERS]

#: The source options each operator takes (the writers take the reading half of the plan's).
TAKES = {
    OdpsPlanUploadOperator: {*FILES, "source_compression", "source_parts"},
    OdpsWriteBlocksOperator: {
        "source_callable",
        "csv_options",
        "column_mapping",
        "ignore_extra_columns",
        "batch_rows",
    },
    ObjectStorageToOdpsOperator: set(SOURCE_OPTIONS),
    OdpsUpsertOperator: set(SOURCE_OPTIONS),
    OdpsStreamUploadOperator: set(SOURCE_OPTIONS),
}

#: The template fields the operators had before the options were shared, in order.
TEMPLATE_FIELDS = {
    OdpsPlanUploadOperator: (*FILES, "source_parts", "block_size", "max_writers"),
    ObjectStorageToOdpsOperator: (
        *("odps_tunnel_conn_id", "project", "table", "partition"),
        *FILES,
        *("compression", "tags"),
    ),
    OdpsUpsertOperator: (
        "odps_tunnel_conn_id",
        "project",
        "table",
        "partition",
        *FILES,
        "compression",
    ),
    OdpsStreamUploadOperator: (
        *("odps_tunnel_conn_id", "project", "table", "partition"),
        *FILES,
        "compression",
    ),
    OdpsWriteBlocksOperator: ("odps_tunnel_conn_id", "project", "session", "blocks"),
}


def _params(cls: type) -> dict[str, Any]:
    """The keyword parameters of the operator as ``inspect.signature`` shows them (what
    ``help()``, IDEs and the API reference show), with their defaults."""
    return {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }


def context(store: Any) -> dict[str, Any]:
    return {"task_state_store": store, "ti": SimpleNamespace(try_number=1, stats_tags={})}


def test_the_loaders_take_their_source_through_the_shared_mixins():
    assert all(issubclass(cls, LoadSourceMixin) for cls in LOADERS)
    # The plan takes only the files; the writers hold the callable, without a mixin.
    assert issubclass(OdpsPlanUploadOperator, FileSourceMixin)
    assert not issubclass(OdpsPlanUploadOperator, LoadSourceMixin)
    assert not issubclass(OdpsWriteBlocksOperator, FileSourceMixin)


@pytest.mark.parametrize("cls", list(TAKES), ids=lambda c: c.__name__)
def test_each_operator_keeps_every_source_option_it_is_given(cls):
    """The operator's ``__init__`` passes each option on to the mixin that sets it."""
    given = {name: f"given {name}" for name in TAKES[cls]}
    required = {"session": {}, "blocks": []} if cls is OdpsWriteBlocksOperator else {}
    required |= {"table": "t"} if cls in LOADERS else {}
    op = cls(task_id="t", **required, **given)
    assert {name: getattr(op, name) for name in given} == given


@pytest.mark.parametrize("cls", list(TAKES), ids=lambda c: c.__name__)
def test_the_signature_shows_the_source_options_with_their_types(cls):
    """``inspect.signature`` (and so ``help()``, IDEs and the API reference) shows every
    source option the operator takes, typed as in ``LoadSource``."""
    declared = {f.name: f.type for f in fields(LoadSource)}
    params = inspect.signature(cls).parameters
    assert {n: params[n].annotation for n in TAKES[cls]} == {n: declared[n] for n in TAKES[cls]}


@pytest.mark.parametrize("cls", list(TAKES), ids=lambda c: c.__name__)
def test_each_operator_takes_its_source_options_with_the_shared_defaults(cls):
    params = _params(cls)
    assert set(params) & set(SOURCE_OPTIONS) == TAKES[cls]
    assert {n: params[n] for n in TAKES[cls]} == {n: SOURCE_OPTIONS[n] for n in TAKES[cls]}
    assert SOURCE_OPTIONS["batch_rows"] == DEFAULT_BATCH_ROWS


@pytest.mark.parametrize("cls", list(TEMPLATE_FIELDS), ids=lambda c: c.__name__)
def test_template_fields_are_what_they_were(cls):
    assert tuple(cls.template_fields) == TEMPLATE_FIELDS[cls]


def test_the_four_template_the_same_source_fields():
    templated = {
        cls: tuple(f for f in cls.template_fields if f in SOURCE_OPTIONS) for cls in SOURCE_TAKERS
    }
    assert FileSourceMixin.templated_options == LoadSourceMixin.templated_options == FILES
    assert {cls: t[:3] for cls, t in templated.items()} == dict.fromkeys(SOURCE_TAKERS, FILES)
    # The plan also templates its source_parts (it has no callable); the loaders do not.
    assert templated[OdpsPlanUploadOperator][3:] == ("source_parts",)
    assert all(len(templated[cls]) == 3 for cls in LOADERS)


@pytest.mark.parametrize(
    "case",
    [
        "neither files nor a callable",
        "both files and a callable",
    ],
)
def test_the_four_reject_the_same_bad_source_with_the_same_message(
    case, odps_conn, state_store, tmp_path
):
    table = create_table(odps_conn, "source_choice", SALES_COLUMNS)
    both = case.startswith("both")
    files = {"source": str(tmp_path)} if both else {}
    callable_source = {"source_callable": lambda part, parts: []} if both else {}
    ops = [
        OdpsPlanUploadOperator(task_id="p", **files, **({"source_parts": 2} if both else {})),
        *(
            cls(task_id=f"t{i}", table=table, **files, **callable_source)
            for i, cls in enumerate(LOADERS)
        ),
    ]
    messages = []
    for op in ops:
        with pytest.raises(AirflowFailException) as err:
            op.execute(context(state_store))
        messages.append(str(err.value))
    assert messages == [SOURCE_CHOICE_ERROR] * 4


def test_default_args_partial_and_expand_reach_the_shared_parameters():
    with DAG(
        "source_options",
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1),
        default_args={"source_conn_id": "from_default_args", "batch_rows": 7},
    ):
        stream = OdpsStreamUploadOperator(task_id="s", table="t", source="s3://b/{{ ds }}/")
        assert (stream.source_conn_id, stream.batch_rows) == ("from_default_args", 7)
        plan = OdpsPlanUploadOperator(task_id="p", source="s3://b/")
        assert plan.source_conn_id == "from_default_args"
        OdpsUpsertOperator.partial(task_id="u", table="t").expand(source=["a", "b"])
        OdpsWriteBlocksOperator.partial(
            task_id="w", session={}, source_callable=lambda part, parts: []
        ).expand_kwargs(plan.output)
        with pytest.raises(TypeError, match="ignore_extra_columns"):  # the plan only lists
            OdpsPlanUploadOperator.partial(task_id="p2", ignore_extra_columns=True)
        transfer = ObjectStorageToOdpsOperator(task_id="x", table="t", source=plan.output)
        assert transfer.upstream_task_ids == {"p"}  # an XComArg source still makes a dependency
    stream.render_template_fields({"ds": "2024-01-02"})
    assert stream.source == "s3://b/2024-01-02/"
    assert LoadSource.of(stream) == LoadSource(
        source="s3://b/2024-01-02/", source_conn_id="from_default_args", batch_rows=7
    )
