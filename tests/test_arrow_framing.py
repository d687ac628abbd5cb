"""Arrow body framing (protocol §6.2): worked examples, edge cases, golden vectors, properties."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import struct

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.tunnel import options
from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    EMPTY_BODY,
    READ_SIZE,
    ArrowFrameDecoder,
    ArrowFrameEncoder,
    read_payload_batches,
    serialize_batch,
)
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import odps_schema_to_arrow_schema
from airflow_provider_odps_tunnel.tunnel.codec.crc import crc32c, crc32c_combiner
from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema
from airflow_provider_odps_tunnel.tunnel.errors import (
    ChecksumError,
    DataStreamError,
    StreamTruncatedError,
)
from airflow_provider_odps_tunnel.tunnel.io.arrow_writer import ArrowWriter

TYPICAL = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
)
EXAMPLE_10 = bytes.fromhex("00000004 41424344 fb9f8872 45464748 1daab397 494a d599aefd")
EXAMPLE_8 = bytes.fromhex("00000004 41424344 fb9f8872 45464748 1daab397 cdc4e60a")


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setattr(options, "local_timezone", "UTC")


def encode(payload_parts, chunk_size: int) -> bytes:
    encoder = ArrowFrameEncoder(chunk_size)
    pieces = []
    for part in payload_parts:
        pieces.extend(encoder.feed(part))
    pieces.append(encoder.finish())
    return b"".join(bytes(p) for p in pieces)


def decode(body: bytes, step: int | None = None) -> bytes:
    stream = io.BytesIO(body) if step is None else Trickle(body, step)
    return b"".join(bytes(p) for p in ArrowFrameDecoder(stream))


class Trickle:
    """A stream that hands out at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int):
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        return self._data.read(self._step if size < 0 else min(size, self._step))


def reference_framing(payload: bytes, chunk_size: int) -> bytes:
    """The §6.2 pseudocode, written as plainly as possible."""
    if not payload:
        return EMPTY_BODY
    out = [struct.pack(">I", chunk_size)]
    pos = 0
    while True:
        chunk = payload[pos : pos + chunk_size]
        pos += len(chunk)
        if len(chunk) == chunk_size:
            out.append(chunk + struct.pack(">I", crc32c(chunk)))
        else:
            out.append(chunk + struct.pack(">I", crc32c(payload)))
            return b"".join(out)


# ----------------------------------------------------------------- worked examples


def test_protocol_examples_encode():
    assert encode([b"ABCDEFGHIJ"], 4) == EXAMPLE_10
    assert encode([b"ABCDEFGH"], 4) == EXAMPLE_8
    assert encode([b"AB", b"C", b"DEFGHI", b"", b"J"], 4) == EXAMPLE_10


def test_protocol_examples_decode():
    assert decode(EXAMPLE_10) == b"ABCDEFGHIJ"
    assert decode(EXAMPLE_8) == b"ABCDEFGH"
    assert decode(EXAMPLE_10, step=3) == b"ABCDEFGHIJ"


def test_encoder_pieces_are_views_of_the_buffer():
    buffer = pa.py_buffer(b"x" * 10_000)
    pieces = ArrowFrameEncoder(4096).feed(buffer)
    views = [p for p in pieces if isinstance(p, memoryview)]
    assert sum(len(v) for v in views) == 10_000
    assert all(v.obj is buffer for v in views)


# ----------------------------------------------------------------- edge cases


def test_empty_bodies():
    assert encode([], 65536) == EMPTY_BODY == b"\x00\x00\x00\x00"
    assert encode([b""], 8) == EMPTY_BODY
    assert decode(b"") == b""
    assert decode(EMPTY_BODY) == b""
    assert decode(struct.pack(">I", 65536) + EMPTY_BODY) == b""


def test_exact_multiple_ends_with_the_bare_global_crc():
    body = encode([b"ABCDEFGH"], 4)
    assert body.endswith(bytes.fromhex("1daab397 cdc4e60a"))
    assert decode(body) == b"ABCDEFGH"


def test_decoder_counts_offsets():
    decoder = ArrowFrameDecoder(io.BytesIO(EXAMPLE_10))
    list(decoder)
    assert (decoder.offset, decoder.payload_bytes, decoder.chunk_size) == (26, 10, 4)


@pytest.mark.parametrize(("position", "chunk_offset"), [(5, 4), (13, 12), (21, 20), (22, 20)])
def test_flipped_bit_is_a_checksum_error_at_its_chunk(position, chunk_offset):
    body = bytearray(EXAMPLE_10)
    body[position] ^= 0x10
    with pytest.raises(ChecksumError) as info:
        decode(bytes(body))
    assert info.value.offset == chunk_offset
    assert "CRC mismatch" in str(info.value)


def test_flipped_crc_word_is_a_checksum_error():
    body = bytearray(EXAMPLE_10)
    body[-1] ^= 1
    with pytest.raises(ChecksumError, match="closing CRC"):
        decode(bytes(body))


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_truncated_inside_the_chunk_size_word(cut):
    with pytest.raises(StreamTruncatedError, match="chunk-size word") as info:
        decode(EXAMPLE_10[:cut])
    assert info.value.offset == 0


@pytest.mark.parametrize("cut", [12, 20, 21, 23])
def test_truncated_before_the_closing_crc(cut):
    """Cut after a whole chunk, or with fewer than 4 bytes of the last frame left."""
    body = EXAMPLE_8[:cut] if cut != 12 else EXAMPLE_8[:12]
    with pytest.raises(StreamTruncatedError, match="without its closing CRC") as info:
        decode(body)
    assert info.value.offset == len(body)


def test_cut_inside_a_chunk_fails_the_closing_crc():
    with pytest.raises(ChecksumError, match="cut inside a chunk"):
        decode(EXAMPLE_10[:10])


def test_corrupt_headers():
    with pytest.raises(DataStreamError, match="chunk size of 0"):
        decode(EMPTY_BODY + b"more")
    with pytest.raises(DataStreamError, match="implausible chunk size"):
        decode(b"\xff\xff\xff\xff" + b"x" * 10)
    with pytest.raises(ValueError, match="chunk size"):
        ArrowFrameEncoder(-1)


# ----------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=300), max_size=12),
    chunk_size=st.integers(min_value=1, max_value=130),
    step=st.integers(min_value=1, max_value=400),
)
def test_framing_round_trips(parts, chunk_size, step):
    payload = b"".join(parts)
    body = encode(parts, chunk_size)
    assert body == reference_framing(payload, chunk_size)
    assert decode(body) == payload
    assert decode(body, step=step) == payload


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=400),
    chunk_size=st.integers(min_value=1, max_value=64),
    data=st.data(),
)
def test_any_single_bit_flip_is_detected(payload, chunk_size, data):
    body = bytearray(encode([payload], chunk_size))
    position = data.draw(st.integers(min_value=4, max_value=len(body) - 1))
    body[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with pytest.raises(ChecksumError):
        decode(bytes(body))


# ----------------------------------------------------------------- payload


def small_batches(n_batches: int, rows: int = 50) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    schema = pa.schema([("a", pa.int64()), ("s", pa.string())])
    batches = [
        pa.record_batch(
            [pa.array(range(k * rows, (k + 1) * rows)), pa.array([f"v{i}" for i in range(rows)])],
            schema=schema,
        )
        for k in range(n_batches)
    ]
    return schema, batches


def test_payload_batches_round_trip():
    schema, batches = small_batches(4)
    body = encode([serialize_batch(b) for b in batches], 256)
    got = list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), schema))
    assert [b.equals(e) for b, e in zip(got, batches, strict=True)] == [True] * 4


def test_payload_is_read_one_message_at_a_time():
    """Read-ahead is bounded: one message plus at most one read of about READ_SIZE."""
    schema, batches = small_batches(20, rows=20_000)
    body = encode([serialize_batch(b) for b in batches], 4096)
    stream = io.BytesIO(body)
    reader = read_payload_batches(ArrowFrameDecoder(stream), schema)
    first = next(reader)
    assert first.equals(batches[0])
    assert stream.tell() <= serialize_batch(batches[0]).size * 1.01 + READ_SIZE + 4100
    assert stream.tell() < len(body) // 4
    assert len(list(reader)) == 19
    assert stream.tell() == len(body)


def test_end_of_stream_marker_is_tolerated():
    schema, batches = small_batches(2)
    eos = b"\xff\xff\xff\xff\x00\x00\x00\x00"
    body = encode([serialize_batch(batches[0]), serialize_batch(batches[1]), eos], 64)
    assert len(list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), schema))) == 2
    body = encode([serialize_batch(batches[0]), eos, serialize_batch(batches[1])], 64)
    with pytest.raises(DataStreamError, match="after its end-of-stream marker"):
        list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), schema))


def test_checksum_error_surfaces_through_the_arrow_reader():
    schema, batches = small_batches(3)
    body = bytearray(encode([serialize_batch(b) for b in batches], 128))
    body[700] ^= 0xFF
    with pytest.raises(ChecksumError) as info:
        list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(bytes(body))), schema))
    assert info.value.offset == 4 + 5 * 132


def test_unparsable_payload_is_a_data_stream_error():
    schema, _ = small_batches(1)
    body = encode([b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x01" * 16], 64)
    with pytest.raises(DataStreamError, match="does not parse"):
        list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(body)), schema))


# ----------------------------------------------------------------- golden vectors


def _value(column: int, value):
    if value is None:
        return None
    if column == 1 and isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    if column == 4:
        return dt.datetime.fromisoformat(value)
    if column == 5:
        return decimal.Decimal(value)
    return value


def vector_table(vectors_dir) -> pa.Table:
    """The 300 input rows of ``arrow_typical.jsonl`` as the table pyodps was given."""
    lines = (vectors_dir / "arrow_typical.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line)["input"] for line in lines]
    schema = odps_schema_to_arrow_schema(TYPICAL)
    columns = [
        pa.array([_value(i, row[i]) for row in rows], type=field.type)
        for i, field in enumerate(schema)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


VECTOR_FILES = [("arrow_typical.chunk65536.c.bin", 65536), ("arrow_typical.chunk1024.c.bin", 1024)]


def test_vector_arrow_schema_matches_the_readme():
    expected = pa.schema(
        [
            ("id", pa.int64()),
            ("score", pa.float64()),
            ("name", pa.string()),
            ("flag", pa.bool_()),
            ("ts", pa.timestamp("ms")),
            ("amount", pa.decimal128(18, 4)),
        ]
    )
    assert odps_schema_to_arrow_schema(TYPICAL).equals(expected)


@pytest.mark.parametrize(("name", "chunk_size"), VECTOR_FILES)
def test_vectors_decode_to_the_input_rows(vectors_dir, name, chunk_size):
    body = (vectors_dir / name).read_bytes()
    decoder = ArrowFrameDecoder(io.BytesIO(body))
    schema = odps_schema_to_arrow_schema(TYPICAL)
    table = pa.Table.from_batches(list(read_payload_batches(decoder, schema)))
    assert decoder.chunk_size == chunk_size
    assert decoder.offset == len(body)
    assert table.equals(vector_table(vectors_dir))
    assert table.column("name")[4].as_py() == "日本語 😀"
    assert all(v is None for v in table.slice(3, 1).to_pylist()[0].values())


@pytest.mark.parametrize(("name", "chunk_size"), VECTOR_FILES)
def test_reframing_the_vector_payload_reproduces_it(vectors_dir, name, chunk_size):
    body = (vectors_dir / name).read_bytes()
    payload = decode(body)
    assert encode([payload], chunk_size) == body
    # Fed as the three batch messages pyodps wrote, too.
    messages = []
    source = pa.BufferReader(payload)
    while source.tell() < len(payload):
        messages.append(pa.ipc.read_message(source).serialize())
    assert encode(messages, chunk_size) == body


def _written(parts, chunk_size: int) -> bytes:
    sent = []
    writer = ArrowWriter(
        TYPICAL, lambda chunks: sent.append(b"".join(chunks)), chunk_size=chunk_size
    )
    for part in parts:
        writer.write(part)
    writer.close()
    return sent[0]


def test_our_writer_reproduces_the_vectors(vectors_dir):
    assert pa.__version__ == "26.0.1"  # the payload bytes are those of the Arrow IPC writer
    table = vector_table(vectors_dir)
    one_batch = (vectors_dir / "arrow_typical.chunk65536.c.bin").read_bytes()
    assert _written([table], 65536) == one_batch

    three = (vectors_dir / "arrow_typical.chunk1024.c.bin").read_bytes()
    slices = table.to_batches(max_chunksize=100)
    # pyodps re-materialises every timestamp column while writing, which gives each slice's
    # ``ts`` a bitmap of its own rows; a slice of the 300-row column serialises the wider
    # parent bitmap instead. Values and framing are the same; compacting ``ts`` as pyodps
    # does reproduces the bytes exactly.
    sliced = _written(slices, 1024)
    assert len(sliced) == len(three) + 24
    assert pa.Table.from_batches(
        list(read_payload_batches(ArrowFrameDecoder(io.BytesIO(sliced)), table.schema))
    ).equals(table)
    compact = [
        b.set_column(4, "ts", pa.concat_arrays([pa.array([], b.schema.field(4).type), b["ts"]]))
        for b in slices
    ]
    assert _written(compact, 1024) == three


@settings(max_examples=200, deadline=None)
@given(first=st.binary(max_size=300), second=st.binary(max_size=300))
def test_crc_of_a_concatenation_from_the_crcs_of_its_parts(first, second):
    combine = crc32c_combiner(len(second))
    assert combine(crc32c(first), crc32c(second)) == crc32c(first + second)


def test_closing_crc_is_combined_over_default_size_chunks():
    payload = bytes(range(256)) * 700  # 2.7 default chunks
    body = encode([payload[:1000], payload[1000:]], 65536)
    assert body[-4:] == struct.pack(">I", crc32c(payload))
