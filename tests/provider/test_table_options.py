"""The table options are defined once (``operators/table_options.py``) and shared by the
operators that write a table and by the export: the same parameters, defaults, templated
fields and errors everywhere, one rule for which stored session belongs to the task, and
Airflow (``default_args``, ``partial``/``expand``, templates) sees them as it did when each
operator declared them itself. The mixins (ordinary ``BaseOperator`` subclasses, as the
source mixins are) are tested here too: no ``template_fields`` of their own, and no option
an operator could forget to pass on unnoticed."""

from __future__ import annotations

import datetime
import inspect
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.hooks.session_ref import SessionRef
from airflow_provider_odps_tunnel.operators.base import OdpsBaseOperator, OperatorOptions, option
from airflow_provider_odps_tunnel.operators.export import OdpsPlanExportOperator
from airflow_provider_odps_tunnel.operators.sources import (
    FileSourceMixin,
    LoadSource,
    LoadSourceMixin,
)
from airflow_provider_odps_tunnel.operators.stream import OdpsStreamUploadOperator
from airflow_provider_odps_tunnel.operators.table_options import (
    StreamSessionMixin,
    TableMixin,
    TableOptions,
    UploadSessionMixin,
    UpsertSessionMixin,
)
from airflow_provider_odps_tunnel.operators.transfer import ObjectStorageToOdpsOperator
from airflow_provider_odps_tunnel.operators.upload import OdpsCreateUploadSessionOperator
from airflow_provider_odps_tunnel.operators.upsert import OdpsUpsertOperator

from .data import SALES_COLUMNS, create_table

TABLE_OPTIONS = {f.name: f.default for f in fields(TableOptions)}
EMPTY = inspect.Parameter.empty
CONN = ("odps_tunnel_conn_id", "project")
#: The operators that write a table; each requires ``table``.
WRITERS = [
    OdpsCreateUploadSessionOperator,
    ObjectStorageToOdpsOperator,
    OdpsUpsertOperator,
    OdpsStreamUploadOperator,
]

#: The table options each operator takes, and the mixin that gives it its session's options.
TAKES = {
    OdpsCreateUploadSessionOperator: (set(TABLE_OPTIONS), UploadSessionMixin),
    ObjectStorageToOdpsOperator: (set(TABLE_OPTIONS), UploadSessionMixin),
    OdpsStreamUploadOperator: (
        {"table", "partition", "create_partition", "compression"},
        StreamSessionMixin,
    ),
    OdpsUpsertOperator: ({"table", "partition", "compression"}, UpsertSessionMixin),
}

#: The template fields the operators had before the options were shared, in order.
FILES = ("source", "source_conn_id", "source_format")
TEMPLATE_FIELDS = {
    OdpsCreateUploadSessionOperator: (*CONN, "table", "partition", "compression", "tags"),
    ObjectStorageToOdpsOperator: (*CONN, "table", "partition", *FILES, "compression", "tags"),
    OdpsUpsertOperator: (*CONN, "table", "partition", *FILES, "compression"),
    OdpsStreamUploadOperator: (*CONN, "table", "partition", *FILES, "compression"),
    OdpsPlanExportOperator: (
        *CONN,
        "table",
        "partition",
        "instance_id",
        "destination",
        "destination_conn_id",
        "file_prefix",
        "rows_per_file",
        "max_files",
        "sql",  # added with the SQL-result export, after the fields it had
    ),
}


#: Every mixin that sets shared options, and the dataclass that defines them.
MIXINS = {
    FileSourceMixin: LoadSource,
    LoadSourceMixin: LoadSource,
    TableMixin: TableOptions,
    UploadSessionMixin: TableOptions,
    StreamSessionMixin: TableOptions,
    UpsertSessionMixin: TableOptions,
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


class FakeHook:
    """Just what ``TableOptions.matches`` asks of the hook: the qualified table name."""

    def qualify(self, table: str) -> str:
        return table if "." in table else f"proj.{table}"


# -- the operators take the table options from the shared mixins ---------------------------


def test_the_writers_take_their_table_options_through_the_shared_mixins():
    session_mixins = (UploadSessionMixin, StreamSessionMixin, UpsertSessionMixin)
    for cls, (_, session_mixin) in TAKES.items():
        assert issubclass(cls, TableMixin) and issubclass(cls, session_mixin), cls.__name__
        assert [m for m in session_mixins if issubclass(cls, m)] == [session_mixin]
    # The export reads a table, or a SQL result instead; its compression is the download's.
    assert issubclass(OdpsPlanExportOperator, TableMixin)
    assert not issubclass(OdpsPlanExportOperator, session_mixins)


@pytest.mark.parametrize("cls", [*TAKES, OdpsPlanExportOperator], ids=lambda c: c.__name__)
def test_each_operator_keeps_every_table_option_it_is_given(cls):
    """The operator's ``__init__`` passes each option on to the mixin that sets it."""
    takes = TAKES[cls][0] if cls in TAKES else {"table", "partition"}
    given = {name: f"given {name}" for name in takes}
    extra = {"destination": "file:///tmp/x"} if cls is OdpsPlanExportOperator else {}
    op = cls(task_id="t", **given, **extra)
    assert {name: getattr(op, name) for name in takes} == given


@pytest.mark.parametrize("cls", list(TAKES), ids=lambda c: c.__name__)
def test_each_writer_takes_its_table_options_with_the_shared_defaults(cls):
    params = _params(cls)
    takes = TAKES[cls][0]
    assert set(params) & set(TABLE_OPTIONS) == takes
    assert params["table"] is EMPTY  # required by every writer
    assert {n: params[n] for n in takes - {"table"}} == {
        n: TABLE_OPTIONS[n] for n in takes - {"table"}
    }


@pytest.mark.parametrize("cls", [*TAKES, OdpsPlanExportOperator], ids=lambda c: c.__name__)
def test_the_signature_shows_the_table_options_with_their_types(cls):
    """``inspect.signature`` (and so ``help()``, IDEs and the API reference) shows every table
    option the operator takes, typed as in ``TableOptions``; a required table is a ``str``."""
    declared = {f.name: f.type for f in fields(TableOptions)}
    takes = TAKES[cls][0] if cls in TAKES else {"table", "partition"}
    params = inspect.signature(cls).parameters
    shown = {name: params[name].annotation for name in takes}
    assert shown == {
        name: "str" if params[name].default is EMPTY else declared[name] for name in takes
    }


def test_the_export_takes_the_table_and_partition_as_optional():
    params = _params(OdpsPlanExportOperator)
    assert (params["table"], params["partition"], params["compression"]) == (None, None, None)
    plan = OdpsPlanExportOperator(task_id="e", destination="file:///tmp/x", instance_id="i")
    assert TableOptions.of(plan) == TableOptions()


@pytest.mark.parametrize("cls", list(TEMPLATE_FIELDS), ids=lambda c: c.__name__)
def test_template_fields_are_what_they_were(cls):
    assert tuple(cls.template_fields) == TEMPLATE_FIELDS[cls]


def test_every_writer_templates_the_table_options_it_takes_alike():
    templated = set(TableOptions.templated())
    assert TableOptions.templated() == ("table", "partition", "compression", "tags")
    for cls, (takes, _) in TAKES.items():
        assert set(cls.template_fields) & set(TABLE_OPTIONS) == takes & templated
        # The table first, after the connection; the session's options after the source.
        assert tuple(cls.template_fields[2:4]) == TableMixin.templated_options
    assert UploadSessionMixin.templated_options == ("compression", "tags")
    assert StreamSessionMixin.templated_options == UpsertSessionMixin.templated_options
    assert UpsertSessionMixin.templated_options == ("compression",)


def test_the_writers_fail_alike_without_a_table():
    messages = []
    for cls in WRITERS:
        with pytest.raises(TypeError) as err:
            cls(task_id="w")
        messages.append(str(err.value))
    assert messages == ["missing keyword argument 'table'"] * len(WRITERS)


def test_the_export_without_a_table_or_an_instance_fails_when_it_runs(state_store):
    plan = OdpsPlanExportOperator(task_id="e", destination="file:///tmp/x")
    with pytest.raises(AirflowFailException, match="give either a table or an instance_id"):
        plan.execute(context(state_store))


def test_default_args_partial_and_expand_reach_the_shared_parameters():
    with DAG(
        "table_options",
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1),
        default_args={"partition": "ds={{ ds }}", "compression": "zstd", "overwrite": True},
    ):
        create = OdpsCreateUploadSessionOperator(task_id="c", table="t", tags="{{ ds }}")
        stream = OdpsStreamUploadOperator(task_id="s", table="t", source="s3://b/")
        upsert = OdpsUpsertOperator.partial(task_id="u", source="s3://b/")
        upsert.expand(table=["a", "b"])
        # An XComArg table still makes a dependency.
        named = OdpsCreateUploadSessionOperator(task_id="c3", table=stream.output)
        assert named.upstream_task_ids == {"s"}
        with pytest.raises(TypeError, match="overwrite"):
            OdpsUpsertOperator.partial(task_id="u2", table="t", overwrite=True)
        with pytest.raises(TypeError, match="tags"):
            OdpsStreamUploadOperator.partial(task_id="s2", table="t", tags="x")
    # default_args fill the options an operator takes, and only those.
    assert (create.overwrite, stream.compression) == (True, "zstd")
    assert not hasattr(stream, "overwrite")
    create.render_template_fields({"ds": "2024-01-02"})
    assert TableOptions.of(create) == TableOptions(
        table="t", partition="ds=2024-01-02", overwrite=True, compression="zstd", tags="2024-01-02"
    )


# -- one rule for which stored session belongs to the task ---------------------------------


def test_a_session_matches_the_qualified_table_and_partition():
    hook = FakeHook()
    target = TableOptions(table="sales", partition="")
    ref = SessionRef("stream", "s1", table="proj.sales")
    assert target.matches(hook, ref)
    assert target.matches(hook, {"table": "proj.sales", "partition": None, "done": {}})
    assert not target.matches(hook, SessionRef("stream", "s1", table="other.sales"))
    assert not TableOptions(table="sales", partition="ds=1").matches(hook, ref)


def test_an_upload_session_must_also_overwrite_and_compress_alike():
    hook = FakeHook()
    ref = SessionRef("upload", "u1", table="proj.sales", compression="zstd", overwrite=True)
    same = TableOptions(table="proj.sales", overwrite=True, compression="zstd", tags="other")
    assert same.matches(hook, ref, upload=True) and same.matches(hook, ref.to_dict(), upload=True)
    for other in (TableOptions(table="sales", compression="zstd"), TableOptions(table="sales")):
        assert other.matches(hook, ref) and not other.matches(hook, ref, upload=True)


def test_the_chain_and_the_transfer_open_and_recognise_upload_sessions_alike(
    odps_conn, state_store
):
    table = create_table(odps_conn, "table_options", SALES_COLUMNS, "ds string")
    options = {
        "table": table,
        "partition": "ds=1",
        "overwrite": True,
        "create_partition": True,
        "compression": "zstd",
        "tags": "nightly",
    }
    created = OdpsCreateUploadSessionOperator(task_id="c", **options).execute(context(state_store))
    transfer = ObjectStorageToOdpsOperator(task_id="t", source="s3://b/", **options)
    submitted = transfer.submit_job(context(state_store))
    assert {**submitted, "session_id": None} == {**created, "session_id": None}
    assert transfer.get_job_status(created, context(state_store)) == "normal"
    appending = ObjectStorageToOdpsOperator(
        task_id="t2", source="s3://b/", **{**options, "overwrite": False}
    )
    assert appending.get_job_status(created, context(state_store)) == "other_target"


# -- the mixins, and the options dataclasses ------------------------------------------------


def _mixin_options(mixin: type) -> list[str]:
    """The options a mixin's own ``__init__`` takes, in order."""
    init = vars(mixin)["__init__"]
    return [n for n in inspect.signature(init).parameters if n not in ("self", "kwargs")]


@pytest.mark.parametrize("mixin", list(MIXINS), ids=lambda c: c.__name__)
def test_a_mixin_declares_no_template_fields_and_names_its_templated_options(mixin):
    """Placed before ``OdpsBaseOperator`` in an operator's bases, a mixin declaring
    ``template_fields`` would hide the connection's from an operator declaring none; its
    ``templated_options`` are those of its options (its base mixin's first) that the
    dataclass marks templated."""
    assert "template_fields" not in vars(mixin)
    takes = [n for k in reversed(mixin.__mro__) if k in MIXINS for n in _mixin_options(k)]
    templated = MIXINS[mixin].templated()
    assert mixin.templated_options == tuple(n for n in takes if n in templated)


@pytest.mark.parametrize("mixin", list(MIXINS), ids=lambda c: c.__name__)
def test_a_mixin_takes_options_of_its_dataclass_and_requires_each(mixin):
    """Each option typed as in the dataclass and without a default: an operator lists it
    with its default and passes it on, and one that forgets to pass it on fails when it is
    built instead of silently keeping a default."""
    declared = {f.name: f for f in fields(MIXINS[mixin])}
    params = inspect.signature(vars(mixin)["__init__"]).parameters
    assert _mixin_options(mixin)
    for name in _mixin_options(mixin):
        assert params[name].kind is params[name].KEYWORD_ONLY
        assert params[name].default is EMPTY, (mixin.__name__, name)
        assert params[name].annotation == declared[name].type, (mixin.__name__, name)


def test_an_operator_forgetting_to_pass_an_option_on_fails_when_built():
    class Forgetful(TableMixin, OdpsBaseOperator):
        def __init__(self, *, table: str, partition: str | None = None, **kwargs: Any) -> None:
            super().__init__(table=table, **kwargs)

    with pytest.raises(TypeError, match="missing keyword argument 'partition'"):
        Forgetful(task_id="f", table="t", partition="ds=1")


def test_an_operator_declaring_no_template_fields_keeps_the_connections():
    class Quiet(TableMixin, UploadSessionMixin, LoadSourceMixin, OdpsBaseOperator):
        pass

    assert Quiet.template_fields == OdpsBaseOperator.template_fields


@dataclass(frozen=True)
class _Options(OperatorOptions):
    name: str | None = option(None, templated=True)
    size: int = 3
    label: str = option("x", templated=True)


def test_options_of_an_operator_and_the_templated_ones():
    assert _Options.of(object()) == _Options()
    assert _Options.of(SimpleNamespace(size=5, other=1)) == _Options(size=5)
    assert _Options.templated() == ("name", "label")
    assert LoadSource.templated() == FileSourceMixin.templated_options == FILES
