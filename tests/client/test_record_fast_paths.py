"""The fast record paths of issue 13 and their references: the compiled codec's own CRC32C,
Records made one at a time by ``RecordIterator``, the writers' ``try_encode`` call, and the
readers and writers built on them, with the compiled extension and with its pure-Python
fallback."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import os
import random

import crc32c
import pytest

from airflow_provider_odps_tunnel.tunnel import (
    Record,
    RecordValidationError,
    TableSchema,
    TunnelError,
    options,
)
from airflow_provider_odps_tunnel.tunnel.codec import record_codec
from airflow_provider_odps_tunnel.tunnel.codec.record import PyRecordIterator
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column
from airflow_provider_odps_tunnel.tunnel.io import record_reader, record_writer
from airflow_provider_odps_tunnel.tunnel.io.record_reader import TunnelRecordReader
from airflow_provider_odps_tunnel.tunnel.io.record_writer import BufferedRecordWriter, RecordWriter

compiled = pytest.importorskip("airflow_provider_odps_tunnel.tunnel.codec._record_codec_c")

SCHEMA = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
    ["pt"],
    ["string"],
)
DATA = SCHEMA.simple_columns


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setattr(options, "local_timezone", "UTC")


@pytest.fixture(params=["c", "py"])
def flavour(request, monkeypatch):
    """Run a reader or writer test on the compiled classes and on the pure-Python ones."""
    if request.param == "py":
        monkeypatch.setattr(record_reader, "RecordDecoder", record_codec.PyRecordDecoder)
        monkeypatch.setattr(record_reader, "RecordIterator", PyRecordIterator)
        monkeypatch.setattr(record_writer, "RecordEncoder", record_codec.PyRecordEncoder)
    return request.param


def rows_of(n: int) -> list[tuple]:
    rnd = random.Random(n)
    base = dt.datetime(2024, 1, 1)
    return [
        (
            i,
            rnd.random(),
            f"name-{i}",
            i % 2 == 0,
            base + dt.timedelta(seconds=i),
            decimal.Decimal(rnd.randint(-(10**9), 10**9)).scaleb(-4),
        )
        for i in range(n)
    ]


def body_of(rows: list[tuple]) -> bytes:
    return record_codec.encode_rows(DATA, rows, tz=dt.UTC)


def reader_of(rows: list[tuple], **kw) -> TunnelRecordReader:
    return TunnelRecordReader(SCHEMA, lambda start: io.BytesIO(body_of(rows[start:])), **kw)


# ----------------------------------------------------------------------------- CRC32C


@pytest.mark.parametrize("software", [False, True])
def test_compiled_crc32c_is_the_crc32c_package(software):
    rnd = random.Random(1)
    for n in [*range(40), 63, 64, 65, 1000, 65537]:
        data = os.urandom(n)
        for start in (0, 1, 0x12345678, 0xFFFFFFFF, rnd.getrandbits(32)):
            want = crc32c.crc32c(data, start)
            assert compiled._crc32c(data, start, software) == want, (n, start)
    assert isinstance(compiled.CRC_HARDWARE, bool)


# ------------------------------------------------------------------------- Records


def test_record_values_is_a_slot_that_stays_the_records_list():
    record = Record(schema=SCHEMA, values=[*rows_of(1)[0], "p"])
    values = record.values
    assert values is record.values and isinstance(values, list)
    values[0] = 42  # the record's own list, as pyodps's
    assert record["id"] == 42
    with pytest.raises(AttributeError):
        record.values = [1]  # no column named "values"
    with pytest.raises(AttributeError):
        del record.values
    assert record.values is values


def test_a_column_named_values_is_set_by_attribute():
    schema = TableSchema.from_lists(["values", "n"], ["string", "bigint"])
    record = Record(schema=schema, values=["a", 1])
    record.values = "b"  # assigns the column, as before
    assert record.values == ["b", 1] and record["values"] == "b"


@pytest.mark.parametrize("iterator", [compiled.CRecordIterator, PyRecordIterator])
def test_record_iterators_make_trusted_records_one_at_a_time(iterator):
    rows = rows_of(5)
    columns = list(SCHEMA.simple_columns)
    index = {c.name.lower(): i for i, c in enumerate(columns)}
    it = iterator(list(rows), columns, index)
    assert iter(it) is it and it.__length_hint__() == 5
    first = next(it)
    assert type(first) is Record
    assert first == Record._trusted(columns, index, list(rows[0]))
    assert first.columns is columns and first.values == list(rows[0])
    assert first.name == "name-0" and first[1] == rows[0][1]
    assert [r.values for r in [next(it)]] == [list(rows[1])]
    assert it.__length_hint__() == 3
    assert it.rest() == rows[2:]
    assert it.__length_hint__() == 0 and list(it) == [] and it.rest() == []


def test_compiled_and_reference_iterators_agree():
    rows = rows_of(50)
    columns = list(SCHEMA.simple_columns)
    index = {c.name.lower(): i for i, c in enumerate(columns)}
    c_records = list(compiled.CRecordIterator(list(rows), columns, index))
    py_records = list(PyRecordIterator(list(rows), columns, index))
    assert c_records == py_records
    assert all(a.values is not b.values for a, b in zip(c_records, py_records, strict=True))


# ----------------------------------------------------------------------- try_encode


@pytest.mark.parametrize("encoder_class", [compiled.CRecordEncoder, record_codec.PyRecordEncoder])
def test_try_encode_takes_records_and_exact_rows_only(encoder_class):
    row = rows_of(1)[0]
    want = bytearray()
    encoder_class(DATA, tz=dt.UTC).encode(row, want)

    for accepted in (row, list(row), Record(schema=SCHEMA, values=[*row, "p"])):
        encoder, out = encoder_class(DATA, tz=dt.UTC), bytearray(b"x")
        assert encoder.try_encode(accepted, out) is True
        assert out == b"x" + want and encoder.count == 1

    class MyRecord(Record):
        __slots__ = ()

    for refused in ((*row, "p"), row[:-1], {"id": 1}, MyRecord(schema=SCHEMA), "abcdef"):
        encoder, out = encoder_class(DATA, tz=dt.UTC), bytearray()
        assert encoder.try_encode(refused, out) is False
        assert out == b"" and encoder.count == 0


@pytest.mark.parametrize("encoder_class", [compiled.CRecordEncoder, record_codec.PyRecordEncoder])
def test_try_encode_raises_the_encoders_error_and_appends_nothing(encoder_class):
    encoder, out = encoder_class(DATA, tz=dt.UTC), bytearray()
    bad = (1, "not a double", "x", True, dt.datetime(2024, 1, 1), decimal.Decimal(1))
    with pytest.raises(RecordValidationError) as info:
        encoder.try_encode(bad, out)
    assert info.value.column == "score" and out == b"" and encoder.count == 0


def test_many_records_grow_the_callers_buffer_correctly():
    rows = rows_of(3000)
    out = bytearray()
    encoder = compiled.CRecordEncoder(DATA, tz=dt.UTC)
    for row in rows:
        encoder.try_encode(row, out)
    reference = record_codec.PyRecordEncoder(DATA, tz=dt.UTC)
    want = bytearray()
    reference.encode_many(rows, want)
    assert out == want and encoder.footer() == reference.footer()


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "1.5",
        "1E+5",
        "-1.23E-7",
        "12.3400",
        "NaN",
        "sNaN",
        "-Infinity",
        "9" * 60,
        " 1",
        "1_0",
        "1e-1000000000000000000",
        "1E+999999999999999999",
    ],
)
def test_decimal_text_reads_as_the_reference_reads_it(text):
    # The same bytes as a STRING column's value, read back as DECIMAL.
    body = record_codec.encode_rows([Column("d", "string")], [(text,)])
    columns = [Column("d", "decimal(38,18)")]
    got = compiled.CRecordDecoder(columns, io.BytesIO(body)).read_rows(2)
    want = record_codec.PyRecordDecoder(columns, io.BytesIO(body)).read_rows(2)
    assert repr(got) == repr(want) == repr([(decimal.Decimal(text),)])


def test_decimal_reading_ignores_the_threads_context():
    body = record_codec.encode_rows([Column("d", "string")], [("123456789.123456789",)])
    columns = [Column("d", "decimal(38,18)")]
    with decimal.localcontext(decimal.Context(prec=3, traps=[decimal.Inexact])):
        got = compiled.CRecordDecoder(columns, io.BytesIO(body)).read_rows(1)
    assert got == [(decimal.Decimal("123456789.123456789"),)]


def test_corrupt_record_crc_is_still_caught():
    body = bytearray(body_of(rows_of(3)))
    end = body.index(b"\x80\xc0\xff\x7f")  # the first END_RECORD tag; its CRC follows
    body[end + 4] ^= 0x01
    with pytest.raises(record_codec.ChecksumError):
        compiled.CRecordDecoder(DATA, io.BytesIO(bytes(body))).read_rows(10)


# ---------------------------------------------------------------------------- readers


def test_reader_loops_reads_and_counts_share_one_position(flavour):
    rows = rows_of(3000)
    reader = reader_of(rows)
    got = [reader.read().values, next(reader).values]
    for record in reader:
        got.append(record.values)
        if len(got) == 1500:
            break
    assert reader.count == 1500
    got.append(reader.read().values)
    tuples = reader.iter_tuples()
    got.append(list(next(tuples)))
    assert reader.count == 2048  # iter_tuples takes the rest of a batch at once
    got += [list(t) for t in tuples]
    assert got == [list(r) for r in rows] and reader.count == 3000
    assert reader.read() is None and list(reader) == []


def test_reader_iteration_is_records_in_order(flavour):
    rows = rows_of(2500)
    reader = reader_of(rows)
    records = list(reader)
    assert all(type(r) is Record for r in records)
    assert [tuple(r.values) for r in records] == rows
    assert records[0].columns is reader.columns and reader.count == 2500


def test_reader_with_partition_values_shapes_records_and_tuples(flavour):
    rows = rows_of(1100)
    wire = [SCHEMA.get_column("name"), SCHEMA.get_column("id")]
    body = record_codec.encode_rows(wire, [(r[2], r[0]) for r in rows])
    shaped = [(r[2], "p1", r[0]) for r in rows]

    def open_reader() -> TunnelRecordReader:
        return TunnelRecordReader(
            SCHEMA, lambda start: io.BytesIO(body), ["name", "pt", "id"], "pt=p1"
        )

    reader = open_reader()
    assert reader.wire_columns == wire
    assert [tuple(reader.read().values) for _ in range(3)] == shaped[:3]
    assert list(reader.iter_tuples()) == shaped[3:]
    records = list(open_reader())
    assert [tuple(r.values) for r in records] == shaped
    assert records[0].pt == "p1" and records[0].columns[1].name == "pt"


def test_closing_a_reader_drops_what_an_open_loop_holds(flavour):
    reader = reader_of(rows_of(100))
    loop = iter(reader)
    next(loop)
    reader.close()
    # The rest of the batch is gone; reading on re-opens the body after it, which is empty.
    assert next(loop, None) is None and reader.read() is None and reader.count == 100


# ---------------------------------------------------------------------------- writers


@pytest.mark.parametrize("kind", ["tuples", "lists", "records", "full rows"])
def test_writer_writes_every_kind_of_row_the_same(flavour, kind):
    rows = rows_of(2000)
    items = {
        "tuples": rows,
        "lists": [list(r) for r in rows],
        "records": [Record(schema=SCHEMA, values=[*r, "p"]) for r in rows],
        "full rows": [(*r, "p") for r in rows],
    }[kind]
    bodies = []
    writer = RecordWriter(SCHEMA, lambda chunks: bodies.append(b"".join(chunks)))
    events = []
    writer.progress.callback = events.append
    for item in items:
        writer.write(item)
    writer.close()
    assert bodies == [body_of(rows)]
    assert events[-1].done and events[-1].rows == 2000 and writer.progress.rows == 2000


def test_writer_refuses_rows_after_close_and_checks_partition_values(flavour):
    writer = RecordWriter(SCHEMA, lambda chunks: b"".join(chunks))
    with pytest.raises(RecordValidationError):
        writer.write((*rows_of(1)[0], "p", "extra"))
    writer.close()
    with pytest.raises(TunnelError, match="closed"):
        writer.write(rows_of(1)[0])


def test_timed_writer_takes_the_general_path(flavour, monkeypatch):
    monkeypatch.setattr(options, "enable_client_metrics", True)
    bodies = []
    writer = RecordWriter(SCHEMA, lambda chunks: bodies.append(b"".join(chunks)) or "{}")
    for row in rows_of(10):
        writer.write(row)
    writer.close()
    assert bodies == [body_of(rows_of(10))] and writer._clock.local > 0


def test_buffered_writer_reports_rows_per_chunk_and_block(flavour, monkeypatch):
    monkeypatch.setattr(options, "chunk_size", 1024)
    blocks = []
    writer = BufferedRecordWriter(
        SCHEMA, lambda block_id, body: blocks.append(b"".join(body)), buffer_size=20_000
    )
    seen = []
    for row in rows_of(1000):
        writer.write(row)
        seen.append(writer.progress.rows)
    writer.close()
    assert writer.progress.rows == 1000 and len(blocks) > 2
    assert all(0 <= n - seen_rows < 40 for n, seen_rows in enumerate(seen, 1))
    decoded = []
    for block in blocks:
        decoded += record_codec.RecordDecoder(DATA, io.BytesIO(block), tz=dt.UTC).read_rows(10**6)
    assert decoded == rows_of(1000)


def _writer_trace(monkeypatch, encoder_class, buffered: bool) -> tuple[list, list]:
    """Write rows of both kinds (direct, and full rows that take the general path) with
    flushes and ``block_limit`` moves between them; return what was sent and the
    progress (rows, bytes) and size after each call. Chunks are 1024 bytes."""
    monkeypatch.setattr(record_writer, "RecordEncoder", encoder_class)
    sent: list = []
    if buffered:
        writer = BufferedRecordWriter(
            SCHEMA,
            lambda block_id, body: sent.append((block_id, b"".join(body))),
            buffer_size=20_000,
        )
    else:
        writer = RecordWriter(SCHEMA, lambda chunks: sent.extend(chunks))
    assert ("write" in vars(writer)) is (encoder_class is compiled.CRecordEncoder)
    trace = []
    for i, row in enumerate(rows_of(3000)):
        writer.write(row if i % 7 else (*row, "p"))
        # a full chunk is sent, a block past its limit too, at the write that fills it
        assert len(writer._buffer) <= (writer.block_limit if buffered else 1023)
        if i % 700 == 699:
            writer.flush()
        if buffered and i % 500 == 250:
            # as WriterMemory does when writers come and go: below what is held, or above
            writer.block_limit = 2_500 if i % 1000 == 750 else 30_000
        trace.append((writer.progress.rows, writer.progress.bytes, writer.n_bytes))
    writer.close()
    trace.append((writer.progress.rows, writer.progress.bytes, writer.n_bytes))
    return sent, trace


@pytest.mark.parametrize("buffered", [False, True], ids=["streamed", "buffered"])
def test_compiled_write_does_what_the_method_does(monkeypatch, buffered):
    monkeypatch.setattr(options, "chunk_size", 1024)
    c_sent, c_trace = _writer_trace(monkeypatch, compiled.CRecordEncoder, buffered)
    py_sent, py_trace = _writer_trace(monkeypatch, record_codec.PyRecordEncoder, buffered)
    assert len(c_sent) > 10
    assert c_sent == py_sent and c_trace == py_trace


@pytest.mark.parametrize("cls", [RecordWriter, BufferedRecordWriter])
def test_compiled_write_is_the_open_writers_only(cls, monkeypatch):
    args = (lambda chunks: b"".join(chunks),) if cls is RecordWriter else (lambda i, b: None,)
    writer = cls(SCHEMA, *args)
    bound = writer.write
    assert bound.__self__ is not writer and cls.write.__doc__ in bound.__doc__
    bound(rows_of(1)[0])
    writer.close()
    assert "write" not in vars(writer) and writer.write.__func__ is cls.write
    with pytest.raises(TunnelError, match="closed"):
        bound(rows_of(1)[0])  # bound before closing: still refused
    monkeypatch.setattr(options, "enable_client_metrics", True)
    assert "write" not in vars(cls(SCHEMA, *args))  # timed: the method, which times each call


def test_a_subclass_with_its_own_write_keeps_it():
    seen = []

    class Counting(RecordWriter):
        def write(self, record):
            seen.append(record)
            super().write(record)

    writer = Counting(SCHEMA, lambda chunks: b"".join(chunks))
    assert "write" not in vars(writer)
    writer.write(rows_of(1)[0])
    writer.close()
    assert seen == rows_of(1)
    assert "write" in vars(RecordWriter(SCHEMA, lambda chunks: b"".join(chunks)))
