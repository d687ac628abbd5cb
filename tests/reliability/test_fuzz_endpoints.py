"""Fuzzing the emulator's other endpoints: session creation, upsert and stream writes,
preview, instance tunnel, volumes, the REST (service) resources and hostile headers.

``test_hostile_input`` covers record/Arrow block bodies, row ranges, block ids, table names
and partition specs. Here every route of ``emulator/routing.py`` gets malformed parameters
(invalid UTF-8 via ``%FF``, NULs, traversal, huge numbers, wrong types, unknown columns),
bodies (wrong tags, huge lengths, deep nesting) or headers. Every answer is a success (where
the input happens to be valid) or a 4xx with the ODPS error body; never a 5xx, never a hang
(each request has a timeout, and bodies are read to the end), and no table changes.
"""

from __future__ import annotations

import datetime as _dt
import socket
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.emulator.handlers.upsert import upsert_wire_columns
from airflow_provider_odps_tunnel.tunnel import sql as tunnel_sql
from airflow_provider_odps_tunnel.tunnel.codec.hasher import RowHasher
from airflow_provider_odps_tunnel.tunnel.codec.record_codec import encode_rows
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema
from airflow_provider_odps_tunnel.tunnel.codec.signing import (
    authorization,
    canonical_string,
    http_date,
)

from .helpers import (
    FUZZ_CASES,
    TIMEOUT,
    assert_odps_error,
    expect_odps_answer,
    fuzz_report,
    fuzz_settings,
    mutations,
    project_fingerprint,
    signed_raw,
)

MODULE = "endpoint fuzz"
FUZZ = fuzz_settings()
COLUMNS = [Column("a", "bigint"), Column("s", "string")]
SEED_ROWS = [[i, f"seed-{i}"] for i in range(3)]
NBUCKETS = 4


def count(test: str) -> None:
    FUZZ_CASES[f"{MODULE}: {test}"] += 1


print_cases = fuzz_report(MODULE)


# ---------------------------------------------------------------------------- strategies
HOSTILE = [
    "",
    "..",
    "../../etc/passwd",
    "%2E%2E%2F%2E%2E",
    "a%00b",
    "%00",
    "%FF%FE",
    "%C0%AF",
    "%ED%A0%80",  # a UTF-16 surrogate in UTF-8
    "9" * 5000,
    "-1",
    "1e400",
    "0x10",
    "NaN",
    "true",
    "[]",
    "{}",
    "%5B" * 2000,  # "[[[[..."
    "%3Ca%3E" * 500,  # "<a><a>..."
    "x" * 20000,
]


def _pct(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


# A query parameter value, already percent-encoded as it goes on the wire.
VALUE = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40).map(lambda t: quote(t, safe="")),
    st.binary(max_size=24).map(_pct),  # mostly invalid UTF-8
    st.integers(-(2**80), 2**80).map(str),
    st.floats(allow_nan=True).map(lambda f: quote(repr(f), safe="")),
)
HEADER_VALUE = st.one_of(
    st.sampled_from(["", "0", "-1", "9" * 400, "gzip", "deflate", "x-lz4-frame", "zstd", "ZSTD"]),
    st.sampled_from(["identity, deflate", "deflate;q=0", "snappy", "x-snappy-framed", "a b"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)


# Bodies nobody asked for: deep JSON and XML, wrong types, invalid UTF-8.
JUNK_DOCUMENTS = st.one_of(
    st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 50_000).map(lambda n: b"<a>" * n + b"</a>" * n),
    st.sampled_from([b'{"UploadID": 1}', b"null", b'"\xff\xfe"', b"\xff\xfe\x00", b"{" * 100]),
)


def _query(params: dict[str, str | None]) -> str:
    return "&".join(k if v is None else f"{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def world(emulator):
    """Tables with rows, an open session of every kind, a volume file and a query result."""
    from airflow_provider_odps_tunnel.tunnel import ODPS, TableTunnel

    catalog, project = emulator.catalog, emulator.project
    plain, keyed, volume = "fz_plain", "fz_keyed", "fz_vol"
    for name in (plain, keyed):
        catalog.drop_table(project, name, if_exists=True)
    catalog.create_table(project, plain, TableSchema(COLUMNS, [Column("pt", "string")]))
    catalog.create_table(
        project,
        keyed,
        TableSchema([Column("id", "bigint", nullable=False), Column("s", "string")], []),
        primary_key=["id"],
        buckets=NBUCKETS,
    )
    catalog.create_volume(project, volume, if_not_exists=True)
    files = catalog.volume_dir(project, volume) / "files" / "p1"
    files.mkdir(parents=True, exist_ok=True)
    (files / "hello.txt").write_bytes(b"hello volume\n" * 100)

    odps = ODPS(emulator.access_id, emulator.secret_access_key, project, endpoint=emulator.endpoint)
    tunnel = TableTunnel(odps)
    seed = tunnel.create_upload_session(plain, partition_spec="pt=x", create_partition=True)
    with seed.open_record_writer(0) as writer:
        for row in SEED_ROWS:
            writer.write(row)
    seed.commit([0])
    upsert = tunnel.create_upsert_session(keyed, slot_num=2)
    with upsert.open_upsert_stream() as stream:
        for i in range(8):
            stream.upsert([i, f"k-{i}"])
    upsert.commit()
    instance = tunnel_sql.run_sql(odps, f"SELECT a, s FROM {plain} WHERE pt = 'x'")
    instance.wait_for_success(interval=0.01)

    def create(path: str, query: str, headers=None) -> dict:
        resp = signed_raw(emulator, "POST", path, query, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    base = f"/projects/{project}"
    sessions = {
        "upload": create(f"{base}/tables/{plain}", "uploads&partition=pt%3Dx")["UploadID"],
        "download": create(f"{base}/tables/{plain}", "downloads&partition=pt%3Dx")["DownloadID"],
        "stream": create(
            f"{base}/tables/{plain}/streams", "partition=pt%3Dx", {"odps-tunnel-slot-num": "2"}
        )["session_name"],
        "upsert": create(f"{base}/tables/{keyed}/upserts", "slotnum=2")["id"],
        "instance": create(f"{base}/instances/{instance.id}", "downloads")["DownloadID"],
        "volume_upload": create(
            f"{base}/tunnel/uploads", f"type=volumefile&target={project}/{volume}/p1/"
        )["UploadID"],
        "volume_download": create(
            f"{base}/tunnel/downloads", f"type=volumefile&target={project}/{volume}/p1/hello.txt"
        )["DownloadID"],
    }
    upsert_slots = signed_raw(
        emulator, "GET", f"{base}/tables/{keyed}/upserts", f"upsertid={sessions['upsert']}"
    ).json()["slots"]
    info = {
        "project": project,
        "base": base,
        "plain": plain,
        "keyed": keyed,
        "volume": volume,
        "instance": instance.id,
        "sessions": sessions,
        "slot_of_bucket": {b: int(s["slot_id"]) for s in upsert_slots for b in s["buckets"]},
        "tables": [plain, keyed],
    }
    info["before"] = project_fingerprint(emulator, info["tables"])
    yield info
    for name in (plain, keyed):
        catalog.drop_table(project, name, if_exists=True)
    catalog.drop_volume(project, volume, if_exists=True)


def unchanged(emulator, world) -> None:
    assert project_fingerprint(emulator, world["tables"]) == world["before"]


def upsert_body(ids: list[int], op: int = 85) -> tuple[int, bytes]:
    """A valid bucket body (upsert record schema) of rows all hashing into one bucket."""
    hasher = RowHasher(["bigint"], NBUCKETS, "default", tz=_dt.UTC)
    bucket = hasher.bucket([ids[0]])
    rows = [[i, f"u-{i}", 0, 0, op, [0], [1]] for i in ids if hasher.bucket([i]) == bucket]
    wire = upsert_wire_columns(TableSchema([Column("id", "bigint"), Column("s", "string")], []))
    return bucket, encode_rows(wire, rows)


# ---------------------------------------------------------------------------- tunnel sessions
SESSION_PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "partition",
            "overwrite",
            "create_partition",
            "columns",
            "slotnum",
            "lifecycle",
            "schema_version",
            "zorder_columns",
            "quotaName",
            "asyncmode",
            "arrow",
            "dynamic_partition",
            "instance_tunnel_limit_enabled",
            "%FF%00",
        ]
    ),
    st.one_of(st.none(), VALUE),
    max_size=5,
)


@FUZZ
@given(
    kind=st.sampled_from(["uploads", "downloads", "streams", "upserts"]),
    params=SESSION_PARAMS,
    encoding=st.one_of(st.none(), HEADER_VALUE),
    slots=st.one_of(st.none(), HEADER_VALUE),
    body=st.one_of(st.just(b""), st.binary(max_size=64), JUNK_DOCUMENTS),
)
def test_session_creation_params(emulator, world, kind, params, encoding, slots, body):
    """Creation takes parameters and headers only: junk in them, or a body, changes nothing."""
    count("session creation")
    base, plain, keyed = world["base"], world["plain"], world["keyed"]
    if kind in ("uploads", "downloads"):
        path, query = f"{base}/tables/{plain}", _query({kind: None, **params})
    elif kind == "streams":
        path, query = f"{base}/tables/{plain}/streams", _query(params)
    else:
        path, query = f"{base}/tables/{keyed}/upserts", _query(params)
    headers = {}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    if slots is not None:
        headers["odps-tunnel-slot-num"] = slots
    expect_odps_answer(signed_raw(emulator, "POST", path, query, body, headers=headers))
    unchanged(emulator, world)


@FUZZ
@given(
    columns=st.one_of(
        VALUE,
        st.lists(st.sampled_from(["a", "s", "A", "pt", "zz", "", " a ", "a,a"]), max_size=4).map(
            lambda names: quote(",".join(names), safe="")
        ),
    ),
    arrow=st.booleans(),
    accept=st.one_of(st.none(), HEADER_VALUE),
    instance=st.booleans(),
)
def test_download_columns_and_encodings(emulator, world, columns, arrow, accept, instance):
    count("download columns")
    sessions = world["sessions"]
    if instance:
        path = f"{world['base']}/instances/{world['instance']}"
        params = {"downloadid": sessions["instance"]}
    else:
        path = f"{world['base']}/tables/{world['plain']}"
        params = {"downloadid": sessions["download"], "partition": "pt%3Dx"}
    params.update(data=None, rowrange="(0,3)", columns=columns)
    if arrow:
        params["arrow"] = None
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    expect_odps_answer(signed_raw(emulator, "GET", path, _query(params), headers=headers))
    unchanged(emulator, world)


@FUZZ
@given(
    encoding=HEADER_VALUE.filter(lambda e: e.strip().lower() not in ("", "identity")),
    target=st.sampled_from(["block", "stream", "upsert", "volume"]),
)
def test_bad_content_encoding_of_bodies(emulator, world, encoding, target):
    """A plain body declared compressed (or with an unknown codec) is refused."""
    count("content encoding")
    base, sessions = world["base"], world["sessions"]
    records = encode_rows(COLUMNS, SEED_ROWS)
    method = "PUT"
    if target == "block":
        path, query = f"{base}/tables/{world['plain']}", f"uploadid={sessions['upload']}&blockid=7"
        body = records
    elif target == "stream":
        path = f"{base}/tables/{world['plain']}/streams"
        query, body = f"uploadid={sessions['stream']}&slotid=0", records
    elif target == "upsert":
        bucket, body = upsert_body([1])
        slot = world["slot_of_bucket"][bucket]
        path = f"{base}/tables/{world['keyed']}/upserts"
        query = f"upsertid={sessions['upsert']}&bucketid={bucket}&slotid={slot}"
    else:
        method, path = "POST", f"{base}/tunnel/uploads/{sessions['volume_upload']}"
        query, body = "blockid=enc.txt", b"plain text, not volume framing"
    headers = {"Content-Encoding": encoding}
    assert_odps_error(signed_raw(emulator, method, path, query, body, headers=headers))
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- upserts


GOOD_BUCKET, GOOD_UPSERT = upsert_body(list(range(40)))


@FUZZ
@given(body=mutations(GOOD_UPSERT))
def test_malformed_upsert_bucket_bodies(emulator, world, body):
    count("upsert bodies")
    slot = world["slot_of_bucket"][GOOD_BUCKET]
    query = f"upsertid={world['sessions']['upsert']}&bucketid={GOOD_BUCKET}&slotid={slot}"
    path = f"{world['base']}/tables/{world['keyed']}/upserts"
    # A flipped byte may land where any value is valid: then the bucket is only pending.
    expect_odps_answer(signed_raw(emulator, "PUT", path, query, body))
    unchanged(emulator, world)


@FUZZ
@given(
    bucket=st.one_of(VALUE, st.integers(-2, NBUCKETS + 1).map(str)),
    slot=st.one_of(VALUE, st.integers(-2, 3).map(str)),
    record_count=st.one_of(st.none(), VALUE, st.integers(-2, 50).map(str)),
)
def test_upsert_bucket_params(emulator, world, bucket, slot, record_count):
    count("upsert bucket params")
    params = {"upsertid": world["sessions"]["upsert"], "bucketid": bucket, "slotid": slot}
    if record_count is not None:
        params["record_count"] = record_count
    path = f"{world['base']}/tables/{world['keyed']}/upserts"
    expect_odps_answer(signed_raw(emulator, "PUT", path, _query(params), GOOD_UPSERT))
    unchanged(emulator, world)


@FUZZ
@given(
    session=st.one_of(
        VALUE,
        st.sampled_from(
            ["upload", "download", "stream", "instance", "volume_upload", "volume_download"]
        ),
    ),
    method=st.sampled_from(["POST", "GET", "DELETE"]),
)
def test_upsert_commit_reload_abort_of_foreign_ids(emulator, world, session, method):
    """Junk ids, and ids of sessions of every other kind: a 4xx, nothing committed."""
    count("upsert commit ids")
    upsert_id = world["sessions"].get(session, session)
    path = f"{world['base']}/tables/{world['keyed']}/upserts"
    assert_odps_error(signed_raw(emulator, method, path, f"upsertid={upsert_id}&extra={session}"))
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- streams
EMPTY_RECORDS = encode_rows(COLUMNS, [])  # a valid batch of no rows: commits nothing


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "slotid",
                "schema_version",
                "zorder_columns",
                "partition",
                "dynamic_partition",
                "check_latest_schema",
                "record_count",
            ]
        ),
        VALUE,
        max_size=4,
    ),
    routed=st.one_of(st.none(), HEADER_VALUE),
    body=st.one_of(st.just(EMPTY_RECORDS), mutations(encode_rows(COLUMNS, SEED_ROWS))),
)
def test_stream_write_params(emulator, world, params, routed, body):
    count("stream params")
    params = {"uploadid": world["sessions"]["stream"], **params}
    headers = {"odps-tunnel-routed-server": routed} if routed is not None else {}
    path = f"{world['base']}/tables/{world['plain']}/streams"
    resp = signed_raw(emulator, "PUT", path, _query(params), body, headers=headers)
    if body == EMPTY_RECORDS:  # valid: commits no rows, if the parameters are right
        expect_odps_answer(resp)
    else:  # a stream batch commits when accepted: a mutated one never is (CRCs, footer)
        assert_odps_error(resp)
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- preview, REST
@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["limit", "columns", "partition", "arrow"]), VALUE, max_size=3
    ),
    accept=st.one_of(st.none(), HEADER_VALUE),
    table=st.sampled_from(["plain", "keyed"]),
)
def test_preview_params(emulator, world, params, accept, table):
    count("preview params")
    path = f"{world['base']}/tables/{world[table]}/preview"
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    expect_odps_answer(signed_raw(emulator, "GET", path, _query(params), headers=headers))
    unchanged(emulator, world)


PARTITION_VALUES = st.one_of(
    VALUE,
    st.sampled_from(["pt%3Dx", "pt%3D", "pt", "%3Dx", "PT%3Dx", "pt%3Dx%2Cq%3D1", "pt%3D..%2F"]),
    st.text(max_size=20).map(lambda t: "pt%3D" + quote(t, safe="")),
)


@FUZZ
@given(
    shape=st.sampled_from(["list", "partitions", "partition", "head", "meta"]),
    partition=st.one_of(st.none(), PARTITION_VALUES),
    params=st.dictionaries(
        st.sampled_from(["name", "linenum", "cols", "extended", "marker"]), VALUE, max_size=3
    ),
    table=st.sampled_from(["plain", "keyed"]),
)
def test_rest_table_resources(emulator, world, shape, partition, params, table):
    """Table list, table and partition metadata, partition list, ``head`` rows."""
    count("REST tables")
    base = world["base"]
    path = f"{base}/tables" if shape == "list" else f"{base}/tables/{world[table]}"
    extra = {"partitions": {"partitions": None}, "head": {"data": None}}.get(shape, {})
    if partition is not None:
        params["partition"] = partition
    elif shape == "partition":
        params["partition"] = "pt%3Dx"
    query = _query({**extra, **params})
    expect_odps_answer(signed_raw(emulator, "GET", path, query, service=True))
    unchanged(emulator, world)


def _job(query: str = "SELECT 1;", settings: bytes = b"{}", inner: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0" encoding="utf-8"?><Instance><Job><Priority>9</Priority><Tasks>'
        b"<SQL><Name>fz</Name><Config><Property><Name>settings</Name><Value>"
        + settings
        + b"</Value></Property></Config><Query>"
        + query.encode()
        + inner
        + b"</Query></SQL>"
        b"</Tasks></Job></Instance>"
    )


GOOD_JOB = _job()
_LAUGHS = b'<!ENTITY a "aaaaaaaaaa">' + b"".join(
    b'<!ENTITY %s "%s">' % (bytes([c]), (b"&" + bytes([c - 1]) + b";") * 10) for c in b"bcdefgh"
)


def _entities(declarations: bytes, use: bytes) -> bytes:
    """A job whose DTD declares entities (billion laughs, external files) used in a task."""
    return (
        b'<?xml version="1.0"?><!DOCTYPE Instance [' + declarations + b"]><Instance><Job><Tasks>"
        b"<SQL><Name>fz</Name><Query>" + use + b"</Query></SQL></Tasks></Job></Instance>"
    )


DEEP = st.integers(1, 60_000)
MALFORMED_JOBS = st.one_of(
    st.integers(0, len(GOOD_JOB) - 1).map(lambda n: GOOD_JOB[:n]),  # truncated
    st.binary(max_size=300),  # junk
    st.integers(1, len(GOOD_JOB) - 1).map(lambda at: GOOD_JOB[:at] + b"\xff\xfe" + GOOD_JOB[at:]),
    st.sampled_from(
        [
            b"<Instance><Job></Job></Instance>",
            b"<Instance><Job><Tasks/></Job></Instance>",
            b"<Nope/>",
            b"[]",
            b'{"Instance": {"Job": {"Tasks": [{"SQL": {"Query": "SELECT 1"}}]}}}',
            b"<Instance><Job><Tasks><SQL><Query>x</Query></SQL></Tasks></Job>",
            _entities(b'<!ENTITY x SYSTEM "file:///etc/passwd">', b"&x;"),
            _entities(_LAUGHS, b"&h;"),
        ]
    ),
)
WEIRD_BUT_WELL_FORMED = st.one_of(
    DEEP.map(lambda n: _job(inner=b"<a>" * n + b"</a>" * n)),  # deep element nesting
    DEEP.map(lambda n: _job(settings=b"[" * n + b"]" * n)),  # deep JSON in the settings
    DEEP.map(lambda n: _job(settings=b"{" * min(n, 5000))),  # JSON that does not parse
    st.text(max_size=60).map(
        lambda t: _job(settings=t.encode("utf-8", "replace").replace(b"<", b"").replace(b"&", b""))
    ),
)


@FUZZ
@given(
    job=st.one_of(
        MALFORMED_JOBS.map(lambda b: (b, False)), WEIRD_BUT_WELL_FORMED.map(lambda b: (b, True))
    ),
    content_type=st.sampled_from(["application/xml", "application/json", "text/plain", ""]),
)
def test_sql_submission_bodies(emulator, world, job, content_type):
    """Malformed XML is refused; a well-formed job with odd contents may run (201)."""
    count("SQL submit bodies")
    body, well_formed = job
    path = f"{world['base']}/instances"
    headers = {"Content-Type": content_type} if content_type else {}
    resp = signed_raw(emulator, "POST", path, "", body, headers=headers, service=True)
    if well_formed:
        expect_odps_answer(resp, ok=(201,))
    else:
        assert_odps_error(resp)
    unchanged(emulator, world)


@FUZZ
@given(
    instance=st.one_of(VALUE, st.sampled_from(["upload", "download", "volume_upload"])),
    params=st.sampled_from(
        [
            "downloads",
            "downloads&instance_tunnel_limit_enabled",
            "taskstatus",
            "result",
            "source",
            "",
            "downloadid=x",
            "downloadid=x&data&rowrange=(0,1)",
        ]
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_instance_ids(emulator, world, instance, params, method):
    """Unknown, malformed and other sessions' ids as instance ids (path segment)."""
    count("instance ids")
    instance_id = world["sessions"].get(instance, instance) or "%20"
    path = f"{world['base']}/instances/{instance_id.replace('/', '%2F')}"
    assert_odps_error(signed_raw(emulator, method, path, params, service=method == "GET"))
    unchanged(emulator, world)


@FUZZ
@given(
    downloadid=st.one_of(VALUE, st.sampled_from(["download", "upload", "instance"])),
    rowrange=st.one_of(
        VALUE,
        st.tuples(st.integers(-5, 2**65), st.integers(-5, 2**65)).map(
            lambda t: quote(f"({t[0]},{t[1]})", safe="")
        ),
    ),
    limit=st.booleans(),
)
def test_instance_tunnel_reads(emulator, world, downloadid, rowrange, limit):
    count("instance tunnel")
    session = world["sessions"].get(downloadid, downloadid)
    params = {"downloadid": session, "data": None, "rowrange": rowrange}
    if limit:
        params["instance_tunnel_limit_enabled"] = None
    path = f"{world['base']}/instances/{world['instance']}"
    resp = signed_raw(emulator, "GET", path, _query(params))
    if downloadid == "instance":  # the right session: a valid range is answered
        expect_odps_answer(resp)
    else:
        assert_odps_error(resp)
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- volumes
VOLUME_NAMES = st.one_of(
    st.sampled_from(
        [
            "..",
            "../x",
            "../../../../etc/passwd",
            "/abs",
            "a/../../b",
            "a\x00b",
            "./.",
            "a/./b/../../..",
            "\\..\\x",
            "x" * 5000,
            "/".join(["d" * 200] * 25),  # each part fits, the whole path does not
            "",
            "%00",
            "..%2F..",
        ]
    ),
    st.text(max_size=30),
)


@FUZZ
@given(name=VOLUME_NAMES)
def test_volume_file_names(emulator, world, name):
    """A file name is stored inside the volume partition, or refused: never outside."""
    count("volume file names")
    base, project, volume = world["base"], world["project"], world["volume"]
    target = f"type=volumefile&target={project}/{volume}/p2/"
    created = signed_raw(emulator, "POST", f"{base}/tunnel/uploads", target)
    assert created.status_code == 200, created.text
    upload = created.json()["UploadID"]
    data = emulator.data_dir
    before = {p for p in data.rglob("*") if p.is_file()}
    from airflow_provider_odps_tunnel.tunnel.codec.volume_framing import VolumeFrameEncoder

    encoder = VolumeFrameEncoder()
    body = encoder.feed(b"fuzzed file\n") + encoder.finish()
    put = signed_raw(
        emulator, "POST", f"{base}/tunnel/uploads/{upload}", f"blockid={quote(name, safe='')}", body
    )
    expect_odps_answer(put)
    commit = signed_raw(emulator, "PUT", f"{base}/tunnel/uploads/{upload}")
    assert commit.status_code == 200, commit.text
    partition = (emulator.catalog.volume_dir(project, volume) / "files" / "p2").resolve()
    for path in {p for p in data.rglob("*") if p.is_file()} - before:
        rel = path.resolve().relative_to(data.resolve()).parts
        inside = path.resolve().is_relative_to(partition)
        assert (
            inside or rel[0] in ("sessions", "staging", "trash") or path.name == "requests.jsonl"
        ), path
    if put.status_code == 200:
        stored = signed_raw(emulator, "GET", f"{base}/tunnel/uploads/{upload}").json()
        for f in stored["FileList"]:
            assert (partition / f["FileName"]).resolve().is_relative_to(partition)
    unchanged(emulator, world)


@FUZZ
@given(
    target=st.one_of(VALUE, VOLUME_NAMES.map(lambda n: quote(n, safe="/"))),
    kind=st.sampled_from(["uploads", "downloads"]),
    typ=st.sampled_from([None, "volumefile", "%FF", "table"]),
)
def test_volume_session_targets(emulator, world, target, kind, typ):
    count("volume targets")
    params = {"target": f"{world['project']}/{world['volume']}/{target}"}
    if typ is not None:
        params["type"] = typ
    resp = signed_raw(emulator, "POST", f"{world['base']}/tunnel/{kind}", _query(params))
    expect_odps_answer(resp)
    unchanged(emulator, world)


@FUZZ
@given(
    rng=st.one_of(
        VALUE,
        st.tuples(st.integers(-5, 2**70), st.integers(-5, 2**70)).map(
            lambda t: quote(f"({t[0]},{t[1]})", safe="")
        ),
    ),
    accept=st.one_of(st.none(), HEADER_VALUE),
)
def test_volume_read_ranges(emulator, world, rng, accept):
    count("volume ranges")
    path = f"{world['base']}/tunnel/downloads/{world['sessions']['volume_download']}"
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    expect_odps_answer(signed_raw(emulator, "GET", path, f"data&range={rng}", headers=headers))
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- headers
@FUZZ
@given(
    version=st.one_of(st.none(), HEADER_VALUE),
    date=st.one_of(
        st.none(),
        HEADER_VALUE,
        st.sampled_from(["Mon, 99 Foo 2024 99:99:99 GMT", "0", "Thu, 01 Jan 1970 00:00:00 GMT"]),
    ),
    content_type=st.one_of(st.none(), HEADER_VALUE),
    route=st.sampled_from(["upload", "download", "preview", "meta"]),
)
def test_hostile_headers(emulator, world, version, date, content_type, route):
    """Bad ``x-odps-tunnel-version``, ``Date`` and ``Content-Type`` (all signed)."""
    count("headers")
    headers = {}
    if version is not None:
        headers["x-odps-tunnel-version"] = version
    if date is not None:
        headers["Date"] = date
    if content_type is not None:
        headers["Content-Type"] = content_type
    base, plain = world["base"], world["plain"]
    method, path, query = {
        "upload": ("POST", f"{base}/tables/{plain}", "uploads&partition=pt%3Dx"),
        "download": ("POST", f"{base}/tables/{plain}", "downloads&partition=pt%3Dx"),
        "preview": ("GET", f"{base}/tables/{plain}/preview", "limit=2"),
        "meta": ("GET", f"{base}/tables/{plain}", ""),
    }[route]
    resp = signed_raw(emulator, method, path, query, headers=headers)
    if date is not None:  # anything but a current date (even none) is refused
        assert_odps_error(resp)
    else:
        expect_odps_answer(resp)
    unchanged(emulator, world)


def _raw_exchange(emulator, head: bytes, body: bytes, close_write: bool) -> bytes:
    """Send ``head`` + ``body`` on a fresh connection; all bytes the server sent back
    before it closed or went quiet for ``TIMEOUT`` seconds (then the test fails: a hang)."""
    with socket.create_connection((emulator.host, emulator.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if close_write:
                    raise AssertionError(f"the server hung; it sent {received[:200]!r}") from None
                return received
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data
            if not close_write and b"\r\n\r\n" in received:
                head_end = received.index(b"\r\n\r\n") + 4
                length = _content_length(received[:head_end])
                if length is not None and len(received) >= head_end + length:
                    return received


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def _signed_head(emulator, method: str, path: str, query: str, length: str) -> bytes:
    headers = {"x-odps-tunnel-version": "6", "Date": http_date()}
    from urllib.parse import parse_qsl, unquote

    params = parse_qsl(unquote(query), keep_blank_values=True)
    headers["Authorization"] = authorization(
        emulator.access_id,
        emulator.secret_access_key,
        canonical_string(method, path, params, headers),
    )
    lines = [
        f"{method} {path}?{query} HTTP/1.1",
        f"Host: {emulator.host}:{emulator.port}",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _odps_status(reply: bytes) -> int:
    return int(reply.partition(b"\r\n")[0].split()[1])


@pytest.mark.parametrize(
    "declared, sent",
    [
        (lambda n: n + 1000, "short"),  # the body ends early: the client closes its side
        (lambda n: 2**62, "short"),  # a huge Content-Length
        (lambda n: n - 10, "long"),  # the body runs past Content-Length
    ],
    ids=["longer-than-body", "huge", "shorter-than-body"],
)
def test_content_length_lies(emulator, world, declared, sent):
    count("content-length lies")
    path = f"{world['base']}/tables/{world['plain']}"
    query = f"uploadid={world['sessions']['upload']}&blockid=9"
    body = encode_rows(COLUMNS, SEED_ROWS * 50)
    head = _signed_head(emulator, "PUT", path, query, str(declared(len(body))))
    reply = _raw_exchange(emulator, head, body, close_write=sent == "short")
    if reply:  # an answer before the server closed: a 4xx
        assert 400 <= _odps_status(reply) < 500, reply[:300]
        if sent == "short":  # the app saw a truncated body: the ODPS error body
            assert b'"Code"' in reply and b'"RequestId"' in reply, reply[:300]
        else:  # the bytes past Content-Length are a broken next request, which the HTTP
            # layer refuses (400, connection closed) before any handler can answer
            assert b'"Code"' in reply or b"Invalid HTTP request" in reply, reply[:300]
    else:
        assert sent == "short"  # only a client that gave up may get no answer
    # The block never landed, and the server still answers.
    reload = signed_raw(emulator, "GET", path, f"uploadid={world['sessions']['upload']}")
    assert reload.status_code == 200
    assert 9 not in [b["BlockID"] for b in reload.json()["UploadedBlockList"]]
    unchanged(emulator, world)


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "99999999999999999999999999999", "1, 2"])
def test_malformed_content_length_is_refused(emulator, world, length):
    """Refused by the HTTP layer (400, connection closed): no ODPS body is possible there."""
    count("content-length lies")
    path = f"{world['base']}/tables/{world['plain']}"
    head = _signed_head(
        emulator, "PUT", path, f"uploadid={world['sessions']['upload']}&blockid=9", length
    )
    reply = _raw_exchange(emulator, head, b"xyz", close_write=True)
    assert not reply or 400 <= _odps_status(reply) < 500, reply[:300]
    assert signed_raw(emulator, "GET", path, "").status_code == 200
    unchanged(emulator, world)


# ---------------------------------------------------------------------------- other routes
@FUZZ
@given(
    project=st.one_of(st.just("PROJECT"), VALUE.filter(bool)),
    resource=st.sampled_from(
        [
            ("GET", ""),
            ("GET", "/tables"),
            ("GET", "/tunnel?service"),
            ("GET", "/volumes/VOLUME"),
            ("POST", "/authorization?sign_bearer_token"),
            ("PUT", "/logs"),
            ("POST", "/instances"),
            ("GET", "/nope"),
            ("DELETE", "/tables/TABLE"),
            ("PATCH", "/tables/TABLE?uploads"),
            ("OPTIONS", "/tables/TABLE/streams"),
            ("PUT", "/tables/TABLE/preview"),
            ("GET", "/tables/TABLE/upserts"),
            ("POST", "/tunnel/uploads/x/y/z"),
        ]
    ),
    volume=st.one_of(st.just("VOLUME"), VALUE.filter(bool)),
    body=st.one_of(st.just(b""), JUNK_DOCUMENTS),
)
def test_service_routes_and_unknown_resources(emulator, world, project, resource, volume, body):
    """Project, volume and misc service resources with hostile names; unknown methods and
    paths (a 404/400 ODPS error, not a crash)."""
    count("service routes")
    method, rest = resource
    project = world["project"] if project == "PROJECT" else project.replace("/", "%2F")
    volume = world["volume"] if volume == "VOLUME" else volume.replace("/", "%2F")
    path, _, query = f"/projects/{project}{rest}".partition("?")
    path = path.replace("VOLUME", volume).replace("TABLE", world["plain"])
    resp = signed_raw(emulator, method, path, query, body, service=True)
    expect_odps_answer(resp, ok=(200, 201) if method != "PATCH" else ())
    unchanged(emulator, world)
