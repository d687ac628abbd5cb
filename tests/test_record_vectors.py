"""Our record codec against the golden streams written by pyodps 0.13.2 (tests/vectors).

Encoding: our bytes equal ``<case>.c.bin`` once each CRC varint is rewritten in its minimal
form (we write minimal varints; pyodps's compiled writer sign-extends CRCs >= 2^31 to 10
bytes). Decoding: both ``.c.bin`` (10-byte CRCs) and ``.py.bin`` (5-byte CRCs) read back to
the recorded rows; where the pure-Python writer put a wrong value on the wire, the vector
records what those bytes hold and we must read exactly that.

Every test runs against both implementations: the pure-Python reference (``py``) and the
compiled one (``c``), which must be built.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pytest
from vector_values import case_columns, from_json, load_case, minimal_crc_varints, to_json

from airflow_provider_odps_tunnel.tunnel.codec import record_codec

CASES = [
    "all_types_nulls",
    "binary_raw",
    "complex",
    "datetimes",
    "datetimes_antique",
    "decimals",
    "empty",
    "floating",
    "integers",
    "intervals",
    "json",
    "strings",
    "timestamps",
    "typical",
    "typical_1000",
    "vectors_type",
    "wide_numeric",
]


@pytest.fixture(params=["py", "c"])
def codec(request) -> tuple[type, type]:
    """(encoder class, decoder class) of one implementation."""
    if request.param == "py":
        return record_codec.PyRecordEncoder, record_codec.PyRecordDecoder
    try:
        from airflow_provider_odps_tunnel.tunnel.codec import _record_codec_c
    except ImportError as exc:
        pytest.fail(f"the compiled record codec is not built: {exc}")
    return _record_codec_c.CRecordEncoder, _record_codec_c.CRecordDecoder


def _settings(meta: dict) -> dict:
    # The vectors were made with TZ=UTC.
    return {
        "tz": dt.UTC,
        "string_as_binary": meta["options"].get("tunnel.string_as_binary", False),
    }


def test_every_vector_case_is_covered(vectors_dir):
    on_disk = {p.name.removesuffix(".schema.json") for p in vectors_dir.glob("*.schema.json")}
    assert on_disk == set(CASES)


def test_vector_files_are_the_generated_bytes(vectors_dir):
    """Every stream in tests/vectors has the length and sha256 the generator recorded."""
    manifest = json.loads((vectors_dir / "manifest.json").read_text())
    recorded = {
        entry["file"]: entry
        for case in manifest["cases"].values()
        for entry in case["files"].values()
    }
    recorded.update(manifest["arrow"]["c"]["files"])
    on_disk = {p.name for p in vectors_dir.glob("*.bin")}
    assert on_disk <= set(recorded), "streams the manifest does not know"
    assert {name for name in recorded if ".c." in name} <= on_disk, "golden streams missing"
    for name in sorted(on_disk):
        data = (vectors_dir / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (
            recorded[name]["len"],
            recorded[name]["sha256"],
        ), name


@pytest.mark.parametrize("case", CASES)
def test_encoder_reproduces_c_stream(vectors_dir, case, codec):
    meta, rows = load_case(vectors_dir, case)
    columns = case_columns(meta)
    values = [
        [from_json(v, c.type) for v, c in zip(row["input"], columns, strict=True)] for row in rows
    ]
    golden = (vectors_dir / f"{case}.c.bin").read_bytes()
    want = minimal_crc_varints(golden, rows, meta["footer_span_c"])
    encoder = codec[0](columns, **_settings(meta))
    out = bytearray()
    for row in values:
        encoder.encode(row, out)
    out += encoder.footer()
    assert bytes(out) == want
    # The bulk call writes the same body, and the encoder starts afresh after a footer.
    bulk = bytearray()
    encoder.encode_many(values, bulk)
    bulk += encoder.footer()
    assert bytes(bulk) == want


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["c", "py"])
def test_decoder_reads_vector(vectors_dir, case, impl, codec):
    meta, rows = load_case(vectors_dir, case)
    path = vectors_dir / f"{case}.{impl}.bin"
    if not path.exists():  # only `empty` has no .py.bin: both writers agree on it
        path = vectors_dir / f"{case}.c.bin"
    columns = case_columns(meta)
    data = path.read_bytes()
    decoder = codec[1](columns, io.BytesIO(data), **_settings(meta))
    got = [[to_json(v, c.type) for v, c in zip(row, columns, strict=True)] for row in decoder]
    key = "decoded_py_reader_on_py_bytes" if impl == "py" else "decoded"
    want = [row.get(key, row["decoded"]) for row in rows]
    assert got == want
    assert decoder.finished and decoder.count == len(rows) and decoder.offset == len(data)
    # read_rows gives the same rows as tuples, in batches of any size.
    decoder = codec[1](columns, io.BytesIO(data), **_settings(meta))
    batches = [decoder.read_rows(7)]
    while batches[-1]:
        batches.append(decoder.read_rows(7))
    tuples = [row for batch in batches for row in batch]
    assert all(type(row) is tuple for row in tuples)
    assert [[to_json(v, c.type) for v, c in zip(r, columns, strict=True)] for r in tuples] == want


@pytest.mark.parametrize("case", ["complex", "typical"])
def test_decoder_reads_byte_by_byte(vectors_dir, codec, case):
    """Records split across every possible read boundary still decode."""
    meta, rows = load_case(vectors_dir, case)
    data = (vectors_dir / f"{case}.c.bin").read_bytes()
    columns = case_columns(meta)
    decoder = codec[1](columns, io.BytesIO(data), read_size=1, **_settings(meta))
    got = [[to_json(v, c.type) for v, c in zip(row, columns, strict=True)] for row in decoder]
    assert got == [row["decoded"] for row in rows]
