"""The transport against a scripted local server: signing, retries, error mapping."""

from __future__ import annotations

import json

import pytest

from airflow_provider_odps_tunnel.tunnel import errors
from airflow_provider_odps_tunnel.tunnel.codec import signing
from airflow_provider_odps_tunnel.tunnel.entry import ODPS
from airflow_provider_odps_tunnel.tunnel.options import options
from airflow_provider_odps_tunnel.tunnel.transport.endpoint import (
    clear_endpoint_cache,
    discover_tunnel_endpoint,
)
from airflow_provider_odps_tunnel.tunnel.transport.rest import Credentials, RestClient

from .fake_server import Answer, FakeServer


@pytest.fixture
def server():
    with FakeServer() as srv:
        yield srv


def client(
    server: FakeServer, sts: str | None = None, prefix: str = "", tunnel: bool = True
) -> RestClient:
    return RestClient(Credentials("AK", "SK", sts), server.endpoint + prefix, "proj", tunnel=tunnel)


def error_body(code: str, message: str = "boom", **extra) -> bytes:
    return json.dumps({"Code": code, "Message": message, "RequestId": "rid-1", **extra}).encode()


def test_request_is_signed_and_carries_the_project(server):
    server.answers.append(Answer(200, b"ok"))
    resp = client(server, sts="token-1", prefix="/api").request(
        "GET", "/projects/proj/tables/t", params={"data": "", "rowrange": "(0,10)"}
    )
    assert resp.content == b"ok"
    seen = server.seen[0]
    assert seen.path == "/api/projects/proj/tables/t"
    assert seen.query == {"data": "", "rowrange": "(0,10)", "curr_project": "proj"}
    assert seen.headers["authorization-sts-token"] == "token-1"
    assert seen.headers.get("accept-encoding", "identity") == "identity"
    headers = {k: v for k, v in seen.headers.items() if k in ("date", "x-odps-user-agent")}
    canonical = signing.canonical_string("GET", "/projects/proj/tables/t", seen.query, headers)
    assert seen.headers["authorization"] == signing.authorization("AK", "SK", canonical)


def test_json_error_maps_to_class_with_context(server):
    server.answers.append(Answer(404, error_body("NoSuchPartition"), {"x-odps-request-id": "r9"}))
    with pytest.raises(errors.NoSuchPartition) as info:
        client(server).request("GET", "/x", context={"table": "p.t", "partition": "pt=1"})
    err = info.value
    assert (err.code, err.status, err.request_id, err.table) == (
        "NoSuchPartition",
        404,
        "r9",
        "p.t",
    )
    assert "partition=pt=1" in str(err) and "request_id=r9" in str(err)


def test_xml_error_and_unknown_code(server):
    xml = b"<Error><Code>Whatever</Code><Message>odd</Message><RequestId>x1</RequestId></Error>"
    server.answers.append(Answer(400, xml))
    with pytest.raises(errors.ServerError) as info:
        client(server).request("GET", "/x")
    assert type(info.value) is errors.ServerError
    assert info.value.code == "Whatever" and info.value.request_id == "x1"


def test_503_is_retried_for_any_tunnel_method(server):
    """pyodps 0.13.2 retries a tunnel 5xx whatever the method (commits are POSTs)."""
    server.answers += [Answer(503), Answer(200, b"ok")]
    assert client(server).request("GET", "/x").content == b"ok"
    server.answers += [Answer(503), Answer(200, b"ok")]
    assert client(server).request("POST", "/x").content == b"ok"
    assert len(server.seen) == 4


def test_503_is_retried_on_the_service_endpoint_for_get_not_for_post(server):
    """The service endpoint keeps pyodps' REST-layer rule: a POST (a SQL submission) is
    not sent twice after a 5xx unless the caller says it is safe."""
    service = client(server, tunnel=False)
    server.answers += [Answer(503), Answer(200, b"ok")]
    assert service.request("GET", "/x").content == b"ok"
    server.answers += [Answer(503), Answer(200, b"ok")]
    with pytest.raises(errors.ServiceUnavailable):
        service.request("POST", "/x")
    server.answers.clear()
    server.answers += [Answer(500, error_body("InternalServerError")), Answer(200, b"ok")]
    assert service.request("POST", "/x", retry_post=True).content == b"ok"


def test_throttle_honours_retry_after(server, virtual_clock):
    server.answers += [
        Answer(429, error_body("FlowExceeded"), {"Retry-After": "0.3"}),
        Answer(200, b"ok"),
    ]
    assert client(server).request("POST", "/x").content == b"ok"
    assert virtual_clock.sleeps == [0.3]
    assert len(server.seen) == 2


def test_slot_exceeded_hold_client_millis(server):
    server.answers += [Answer(429, error_body("SlotExceeded", HoldClientMillis="50")), Answer(200)]
    client(server).request("PUT", "/x", data=b"abc")
    assert [s.body for s in server.seen] == [b"abc", b"abc"]


def test_reset_is_retried_and_reiterable_body_resent(server):
    server.answers += [Answer(reset=True), Answer(200)]

    class Body:
        def __iter__(self):
            yield b"ab"
            yield b"cd"

    client(server).request("PUT", "/x", data=Body())
    assert server.seen[-1].body == b"abcd"
    assert server.seen[-1].headers.get("transfer-encoding") == "chunked"


def test_one_shot_body_is_not_resent(server):
    server.answers += [Answer(reset=True), Answer(200)]
    with pytest.raises(errors.TunnelConnectionError):
        client(server).request("PUT", "/x", data=iter([b"ab", b"cd"]))
    assert len(server.seen) == 1


def test_retries_run_out(server, monkeypatch):
    monkeypatch.setattr(options, "server_error_retry_times", 2)
    server.answers += [Answer(502)] * 5
    with pytest.raises(errors.ServiceUnavailable):
        client(server).request("GET", "/x")
    assert len(server.seen) == 3


def test_service_retries_run_out_after_retry_times(server, monkeypatch):
    monkeypatch.setattr(options, "retry_times", 2)
    server.answers += [Answer(502)] * 5
    with pytest.raises(errors.ServiceUnavailable):
        client(server, tunnel=False).request("GET", "/x")
    assert len(server.seen) == 3


def test_connection_refused_is_a_connection_error(monkeypatch):
    monkeypatch.setattr(options, "retry_times", 1)
    with FakeServer() as srv:
        endpoint = srv.endpoint
    rest = RestClient(Credentials("AK", "SK"), endpoint, "proj")
    with pytest.raises(errors.TunnelConnectionError):
        rest.request("POST", "/x")


def test_endpoint_discovery_is_cached(server):
    clear_endpoint_cache()
    server.answers.append(Answer(200, b"127.0.0.1:9999"))
    entry = ODPS("AK", "SK", "proj", endpoint=server.endpoint + "/api")
    assert entry.tunnel_client().endpoint == "http://127.0.0.1:9999"
    assert entry.tunnel_client().endpoint == "http://127.0.0.1:9999"
    assert discover_tunnel_endpoint(entry.rest, "proj") == "http://127.0.0.1:9999"
    assert len(server.seen) == 1
    assert server.seen[0].path == "/api/projects/proj/tunnel"
    assert "service" in server.seen[0].query
    clear_endpoint_cache()


def test_every_documented_code_has_a_class():
    codes = [
        "NoSuchProject",
        "NoSuchTable",
        "NoSuchPartition",
        "NoSuchVolume",
        "NoSuchPath",
        "NoSuchObject",
        "NoSuchSchema",
        "NoSuchDownload",
        "NoSuchUpload",
        "StatusConflict",
        "StreamSessionNotFound",
        "UpsertSessionNotFound",
        "InvalidBlockID",
        "InvalidRowRange",
        "InConsistentBlockList",
        "MalformedDataStream",
        "CorruptedDataStream",
        "IncompleteBody",
        "InvalidArgument",
        "InvalidParameter",
        "SchemaModified",
        "DataVersionConflict",
        "TableModified",
        "OverwriteModeNotAllowed",
        "MetaTransactionFailed",
        "InstanceNotTerminate",
        "TaskFailed",
        "NoPermission",
        "AccessDenied",
        "Unauthorized",
        "SignatureNotMatch",
        "AuthorizationRequired",
        "AuthenticationRequestExpired",
        "RequestTimeTooSkewed",
        "FlowExceeded",
        "QPSExceeded",
        "SlotExceeded",
        "InternalServerError",
        "DataStoreError",
        "InvalidPartitionSpec",
        "MissingPartitionSpec",
        "InvalidColumnSpec",
        "MethodNotAllowed",
        "InstanceTypeNotSupported",
    ]
    for code in codes:
        cls = errors.error_class_for(code, 400)
        assert cls.code == code, code
        assert issubclass(cls, errors.ServerError)
    assert errors.error_class_for("ODPS-0410051: bad", 400) is errors.InvalidParameter
    assert errors.error_class_for(None, 404) is errors.NoSuchObject
    assert errors.error_class_for(None, 429) is errors.Throttled
    assert errors.error_class_for("Nope", 502) is errors.ServiceUnavailable
    assert errors.error_class_for("SomethingElse", 308) is errors.SlotReassigned
    assert issubclass(errors.MalformedDataStream, errors.DataStreamError)


def test_proxies_from_the_environment_are_used(server, monkeypatch):
    """HTTP_PROXY is honoured (read when the client is made), NO_PROXY too."""
    monkeypatch.setenv("HTTP_PROXY", server.endpoint)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.answers.append(Answer(200, b"via proxy"))
    proxied = RestClient(Credentials("AK", "SK"), "http://tunnel.invalid", "proj")
    assert proxied.request("GET", "/x").content == b"via proxy"
    assert server.seen[0].headers["host"] == "tunnel.invalid"

    # NO_PROXY names the server: the request goes to it directly, not to the (dead) proxy
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server.answers.append(Answer(200, b"direct"))
    direct = client(server)
    assert direct.request("GET", "/y").content == b"direct"
    assert server.seen[1].headers["host"] == server.endpoint.removeprefix("http://")


def test_a_netrc_entry_does_not_replace_the_signature(server, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.answers.append(Answer(200, b"ok"))
    client(server).request("GET", "/x")
    assert server.seen[0].headers["authorization"].startswith("ODPS AK:")
