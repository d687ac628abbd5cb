"""Session factories take pyodps's arguments and refuse unknown ones with a TypeError.

A misspelled keyword (``partiton_spec``) used to vanish silently; like pyodps, every
factory now raises a ``TypeError`` naming the method and the argument, before any request
is sent. Every parameter pyodps 0.13.2 accepts is accepted too (compared with pyodps's own
signatures, plus the names pyodps reads from ``**kw``).
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import pytest
from odps.tunnel import instancetunnel as py_instancetunnel
from odps.tunnel import tabletunnel as py_tabletunnel
from odps.tunnel import volumetunnel as py_volumetunnel

from airflow_provider_odps_tunnel.tunnel import (
    ODPS,
    InstanceDownloadSession,
    InstanceTunnel,
    TableSchema,
    TableTunnel,
    VolumeFSTunnel,
    VolumeTunnel,
)
from airflow_provider_odps_tunnel.tunnel.sql import Instance

from .fake_server import Answer, FakeServer

# Nothing listens here: a factory that sent a request would fail with a connection error,
# not with the TypeError these tests expect.
NOWHERE = "http://127.0.0.1:9"


def entry() -> ODPS:
    return ODPS("AK", "SK", "proj", tunnel_endpoint=NOWHERE)


# Every factory that refuses unknown keywords, as pyodps's own signatures do, as (a maker
# of the bound method, its positional arguments). The instance tunnel is not one: pyodps
# passes its **kw on and ignores what it does not read (tests below).
FACTORIES = {
    "TableTunnel.create_download_session": (
        lambda: TableTunnel(entry()).create_download_session,
        ("t",),
    ),
    "TableTunnel.create_upload_session": (
        lambda: TableTunnel(entry()).create_upload_session,
        ("t",),
    ),
    "TableTunnel.create_stream_upload_session": (
        lambda: TableTunnel(entry()).create_stream_upload_session,
        ("t",),
    ),
    "TableTunnel.create_upsert_session": (
        lambda: TableTunnel(entry()).create_upsert_session,
        ("t",),
    ),
    "TableTunnel.open_preview_reader": (lambda: TableTunnel(entry()).open_preview_reader, ("t",)),
    "VolumeTunnel.create_download_session": (
        lambda: VolumeTunnel(entry()).create_download_session,
        ("vol", "p=1", "f.txt"),
    ),
    "VolumeTunnel.create_upload_session": (
        lambda: VolumeTunnel(entry()).create_upload_session,
        ("vol", "p=1"),
    ),
    "VolumeFSTunnel.open_reader": (lambda: VolumeFSTunnel(entry()).open_reader, ("vol", "a/b")),
    "VolumeFSTunnel.open_writer": (lambda: VolumeFSTunnel(entry()).open_writer, ("vol", "a/b")),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_an_unknown_keyword_is_a_type_error_naming_method_and_argument(name):
    factory, args = FACTORIES[name]
    method = factory()
    with pytest.raises(TypeError) as info:
        method(*args, partiton_spec="ds=1")
    message = str(info.value)
    assert f"{method.__name__}() got an unexpected keyword argument 'partiton_spec'" in message


def test_the_example_of_a_misspelled_partition_spec():
    with pytest.raises(
        TypeError,
        match=r"create_upload_session\(\) got an unexpected keyword argument 'partiton_spec'",
    ):
        TableTunnel(entry()).create_upload_session("t", partiton_spec="ds=1")


def _named_parameters(func: Any) -> set[str]:
    return {
        name
        for name, p in inspect.signature(func).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


# (ours, pyodps's, the names pyodps reads from its ``**kw``)
PYODPS_SIGNATURES = [
    (
        TableTunnel.create_download_session,
        py_tabletunnel.TableTunnel.create_download_session,
        {"async_"},
    ),
    (TableTunnel.create_upload_session, py_tabletunnel.TableTunnel.create_upload_session, set()),
    (
        TableTunnel.create_stream_upload_session,
        py_tabletunnel.TableTunnel.create_stream_upload_session,
        set(),
    ),
    (TableTunnel.create_upsert_session, py_tabletunnel.TableTunnel.create_upsert_session, set()),
    (TableTunnel.open_preview_reader, py_tabletunnel.TableTunnel.open_preview_reader, set()),
    (
        InstanceTunnel.create_download_session,
        py_instancetunnel.InstanceTunnel.create_download_session,
        {"limit_enabled", "sessional", "session_task_name", "session_subquery_id"},
    ),
    (
        VolumeTunnel.create_download_session,
        py_volumetunnel.VolumeTunnel.create_download_session,
        set(),
    ),
    (VolumeTunnel.create_upload_session, py_volumetunnel.VolumeTunnel.create_upload_session, set()),
    (VolumeFSTunnel.open_reader, py_volumetunnel.VolumeFSTunnel.open_reader, set()),
    (VolumeFSTunnel.open_writer, py_volumetunnel.VolumeFSTunnel.open_writer, set()),
]


@pytest.mark.parametrize(
    ("ours", "theirs", "from_kw"), PYODPS_SIGNATURES, ids=lambda x: getattr(x, "__qualname__", "")
)
def test_every_parameter_pyodps_accepts_is_accepted(ours, theirs, from_kw):
    missing = (_named_parameters(theirs) | from_kw) - _named_parameters(ours)
    assert not missing, f"{ours.__qualname__} lacks pyodps's {sorted(missing)}"
    # Positional order is pyodps's too, as far as pyodps's positional parameters go.
    theirs_positional = [
        n
        for n, p in inspect.signature(theirs).parameters.items()
        if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    ours_positional = [
        n
        for n, p in inspect.signature(ours).parameters.items()
        if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    assert ours_positional[: len(theirs_positional)] == theirs_positional


class Reached(Exception):
    """The call got as far as creating the download session."""


# The keywords pyodps's ``Instance.open_reader(**kwargs)`` documents or reads, with a value.
PYODPS_OPEN_READER_KEYWORDS = {
    "tunnel": True,
    "use_tunnel": True,
    "limit": True,
    "limit_enabled": True,
    "reopen": True,
    "endpoint": NOWHERE,
    "quota_name": "q",
    "arrow": True,
    "columns": ["k"],
    "on_exception": None,
    "buffered": True,
    "timeout": 10,
    "compress_option": None,
    "compress_algo": "zlib",
    "compress_level": 1,
    "compress_strategy": 0,
}


@pytest.mark.parametrize("name", PYODPS_OPEN_READER_KEYWORDS)
def test_instance_open_reader_takes_pyodps_keywords(name, monkeypatch):
    def create_download_session(self, instance, **kw):
        raise Reached(kw)

    monkeypatch.setattr(InstanceTunnel, "create_download_session", create_download_session)
    with pytest.raises(Reached):
        Instance(entry(), "inst1").open_reader(**{name: PYODPS_OPEN_READER_KEYWORDS[name]})


@pytest.mark.parametrize(
    "call",
    [
        lambda odps, kw: InstanceTunnel(odps).create_download_session("inst1", **kw),
        lambda odps, kw: Instance(odps, "inst1").open_download_session(**kw),
        lambda odps, kw: Instance(odps, "inst1").open_reader(**kw),
    ],
    ids=["InstanceTunnel.create_download_session", "open_download_session", "open_reader"],
)
def test_instance_downloads_ignore_unknown_keywords_with_a_warning(call, caplog):
    """pyodps's instance tunnel passes its **kw on and ignores what it does not read, so
    code written for it must keep working: the names are logged, the session created."""
    with FakeServer() as srv:
        srv.answers += [Answer(200, download_json())]
        with caplog.at_level(logging.WARNING):
            call(served(srv), {"partiton_spec": "ds=1", "use_cache": True})
    assert len(srv.seen) == 1
    assert "ignores the keyword arguments partiton_spec, use_cache" in caplog.text


def served(srv: FakeServer) -> ODPS:
    return ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)


def test_an_instance_session_takes_limit_enabled_too():
    with FakeServer() as srv:
        srv.answers += [Answer(200, download_json())]
        InstanceDownloadSession(served(srv).tunnel_client(), "inst1", limit_enabled=True)
    assert "instance_tunnel_limit_enabled" in srv.seen[0].query


SCHEMA = TableSchema.from_lists(["k", "v"], ["bigint", "string"])


def download_json(status: str = "normal") -> bytes:
    return json.dumps(
        {"DownloadID": "d1", "Status": status, "RecordCount": 0, "Schema": SCHEMA.to_json()}
    ).encode()


@pytest.mark.parametrize(("async_", "flag"), [(False, None), (True, "true")])
def test_async_underscore_is_async_mode(async_, flag):
    with FakeServer() as srv:
        srv.answers += [Answer(200, download_json())]
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        TableTunnel(odps).create_download_session("t", async_mode=not async_, async_=async_)
    assert srv.seen[0].query.get("asyncmode") == flag


def test_limit_enabled_is_the_older_name_of_limit():
    with FakeServer() as srv:
        srv.answers += [Answer(200, download_json())]
        odps = ODPS("AK", "SK", "proj", tunnel_endpoint=srv.endpoint)
        InstanceTunnel(odps).create_download_session("inst1", limit_enabled=True)
    assert "instance_tunnel_limit_enabled" in srv.seen[0].query


def test_session_instance_tunnels_are_refused_clearly():
    with pytest.raises(NotImplementedError, match="sessional"):
        InstanceTunnel(entry()).create_download_session(
            "inst1", sessional=True, session_task_name="t", session_subquery_id=1
        )


def test_instance_results_are_read_only_through_the_tunnel():
    with pytest.raises(NotImplementedError, match="tunnel=False"):
        Instance(entry(), "inst1").open_reader(tunnel=False)
