"""Our record codec against the golden streams written by pyodps 0.13.2 (../shared/vectors).

Encoding: our bytes equal ``<case>.c.bin`` once each CRC varint is rewritten in its minimal
form (we write minimal varints; pyodps's compiled writer sign-extends CRCs >= 2^31 to 10
bytes). Decoding: both ``.c.bin`` (10-byte CRCs) and ``.py.bin`` (5-byte CRCs) read back to
the recorded rows; where the pure-Python writer put a wrong value on the wire, the vector
records what those bytes hold and we must read exactly that.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from vector_values import case_columns, from_json, load_case, minimal_crc_varints, to_json

from airflow_provider_odps_tunnel.tunnel.record_codec import RecordDecoder, RecordEncoder

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


def _settings(meta: dict) -> dict:
    # The vectors were made with TZ=UTC.
    return {
        "tz": dt.UTC,
        "string_as_binary": meta["options"].get("tunnel.string_as_binary", False),
    }


def test_every_vector_case_is_covered(vectors_dir):
    on_disk = {p.name.removesuffix(".schema.json") for p in vectors_dir.glob("*.schema.json")}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_encoder_reproduces_c_stream(vectors_dir, case):
    meta, rows = load_case(vectors_dir, case)
    columns = case_columns(meta)
    encoder = RecordEncoder(columns, **_settings(meta))
    out = bytearray()
    for row in rows:
        encoder.encode(
            [from_json(v, c.type) for v, c in zip(row["input"], columns, strict=True)], out
        )
    out += encoder.footer()
    golden = (vectors_dir / f"{case}.c.bin").read_bytes()
    assert bytes(out) == minimal_crc_varints(golden, rows, meta["footer_span_c"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["c", "py"])
def test_decoder_reads_vector(vectors_dir, case, impl):
    meta, rows = load_case(vectors_dir, case)
    path = vectors_dir / f"{case}.{impl}.bin"
    if not path.exists():  # only `empty` has no .py.bin: both writers agree on it
        path = vectors_dir / f"{case}.c.bin"
    columns = case_columns(meta)
    decoder = RecordDecoder(columns, io.BytesIO(path.read_bytes()), **_settings(meta))
    got = [[to_json(v, c.type) for v, c in zip(row, columns, strict=True)] for row in decoder]
    key = "decoded_py_reader_on_py_bytes" if impl == "py" else "decoded"
    want = [row.get(key, row["decoded"]) for row in rows]
    assert got == want
    assert decoder.finished and decoder.count == len(rows)


def test_decoder_reads_byte_by_byte(vectors_dir):
    """Records split across every possible read boundary still decode."""
    meta, rows = load_case(vectors_dir, "complex")
    data = (vectors_dir / "complex.c.bin").read_bytes()
    decoder = RecordDecoder(case_columns(meta), io.BytesIO(data), read_size=1, **_settings(meta))
    assert len(list(decoder)) == len(rows)
