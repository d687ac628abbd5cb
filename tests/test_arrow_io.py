"""ArrowWriter, BufferedArrowWriter and TunnelArrowReader without a server: bodies go to a
collecting callback and come back through a stream creator."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import random
import zoneinfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_odps_tunnel.tunnel import (
    Record,
    RecordValidationError,
    StreamTruncatedError,
    TableSchema,
    TunnelError,
    options,
)
from airflow_provider_odps_tunnel.tunnel.codec import arrow_framing, arrow_types
from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import (
    EMPTY_BODY,
    ArrowFrameDecoder,
    read_payload_batches,
)
from airflow_provider_odps_tunnel.tunnel.codec.arrow_types import (
    TIMESTAMP_STRUCT_TYPE,
    arrow_type_to_odps_type,
    conform_table,
    odps_schema_to_arrow_schema,
    odps_type_to_arrow_type,
)
from airflow_provider_odps_tunnel.tunnel.codec.compression import (
    CompressOption,
    decompressing_stream,
)
from airflow_provider_odps_tunnel.tunnel.codec.datetimes import datetime_to_millis
from airflow_provider_odps_tunnel.tunnel.codec.types import parse_type
from airflow_provider_odps_tunnel.tunnel.io.arrow_reader import TunnelArrowReader
from airflow_provider_odps_tunnel.tunnel.io.arrow_writer import ArrowWriter, BufferedArrowWriter

Algo = CompressOption.CompressAlgorithm
TYPICAL = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount"],
    ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
)
NESTED = TableSchema.from_lists(
    ["id", "tags", "attrs", "info", "stamp", "wall", "day", "raw", "span", "doc", "vec"],
    [
        "bigint",
        "array<string>",
        "map<string,array<double>>",
        "struct<a:bigint,b:string,c:array<datetime>>",
        "timestamp",
        "timestamp_ntz",
        "date",
        "binary",
        "interval_day_time",
        "json",
        "vector<float,3>",
    ],
    ["pt"],
)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setattr(options, "local_timezone", "UTC")
    monkeypatch.setenv("TZ", "UTC")  # the zone of codecs used directly, without a tz


def typical_table(n: int, seed: int = 3) -> pa.Table:
    rnd = random.Random(seed)
    base = dt.datetime(2024, 1, 1)
    rows = {
        "id": [rnd.randint(-(2**63), 2**63 - 1) for _ in range(n)],
        "score": [rnd.uniform(-1e9, 1e9) for _ in range(n)],
        "name": [
            "".join(rnd.choice("abcXYZ日本🙂\x00") for _ in range(rnd.randint(0, 25)))
            for _ in range(n)
        ],
        "flag": [rnd.random() < 0.5 for _ in range(n)],
        "ts": [base + dt.timedelta(milliseconds=rnd.randint(-(10**12), 10**12)) for _ in range(n)],
        "amount": [decimal.Decimal(rnd.randint(-(10**17), 10**17)).scaleb(-4) for _ in range(n)],
    }
    if n > 3:
        for column in rows.values():
            column[3] = None
    schema = odps_schema_to_arrow_schema(TYPICAL)
    return pa.Table.from_arrays([pa.array(rows[f.name], f.type) for f in schema], schema=schema)


def nested_rows(n: int, seed: int = 5) -> list[tuple]:
    rnd = random.Random(seed)
    base = dt.datetime(2023, 6, 1, 12)
    out = []
    for i in range(n):
        stamp = pd.Timestamp(base) + pd.Timedelta(rnd.randint(-(10**17), 10**17), unit="ns")
        out.append(
            (
                i,
                [rnd.choice(["x", "yy", None, "日本"]) for _ in range(rnd.randint(0, 4))],
                {
                    f"k{j}": [rnd.random(), None][: rnd.randint(0, 2)]
                    for j in range(rnd.randint(0, 3))
                },
                {
                    "a": rnd.randint(-5, 5),
                    "b": rnd.choice([None, "text"]),
                    "c": [base + dt.timedelta(seconds=rnd.randint(0, 10**6))],
                },
                stamp,
                stamp.floor("us"),
                (base + dt.timedelta(days=rnd.randint(-9000, 9000))).date(),
                rnd.randbytes(rnd.randint(0, 12)),
                pd.Timedelta(rnd.randint(-(10**15), 10**15), unit="ns"),
                {"n": i, "list": [1, "two", None]},
                [rnd.randint(-99, 99) / 8, 1.5, -2.0],  # exact in float32
            )
        )
    out[1] = (1,) + (None,) * 10
    return out


def nested_table(rows: list[tuple]) -> pa.Table:
    """The Arrow form of ``nested_rows`` (what a reader returns in UTC)."""
    schema = odps_schema_to_arrow_schema(NESTED)
    columns = list(zip(*rows, strict=True))

    def arrow_value(name, v):
        if v is None:
            return None
        if name == "attrs":
            return list(v.items())
        if name == "span":
            sec, nano = divmod(v.value, 10**9)
            return {"sec": sec, "nano": nano}
        if name == "doc":
            return json.dumps(v)
        if name in ("stamp", "wall"):
            return v.value
        return v

    arrays = [
        pa.array([arrow_value(f.name, v) for v in col], f.type)
        for f, col in zip(schema, columns, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_body(schema, parts, compress=None, chunk_size=None) -> tuple[bytes, ArrowWriter]:
    sent = []
    writer = ArrowWriter(schema, lambda chunks: sent.append(b"".join(chunks)), compress, chunk_size)
    with writer:
        for part in parts:
            writer.write(part)
    return sent[0], writer


def reader_of(body: bytes, schema=TYPICAL, encoding=None, **kw) -> TunnelArrowReader:
    return TunnelArrowReader(
        schema, lambda start: decompressing_stream(io.BytesIO(body), encoding), **kw
    )


# ----------------------------------------------------------------- round trips

COMPRESSIONS = [None] + [CompressOption(a) for a in Algo if a is not Algo.ODPS_RAW]


@pytest.mark.parametrize("compress", COMPRESSIONS, ids=lambda c: c and c.algorithm.value)
@pytest.mark.parametrize("kind", ["table", "batch", "dataframe"])
def test_typical_round_trip(compress, kind):
    table = typical_table(500)
    if kind == "table":
        data = pa.concat_tables([table.slice(0, 200), table.slice(200)])
    elif kind == "batch":
        data = table.combine_chunks().to_batches()[0]
    else:
        # Nullable integers: a float64 column could not hold these int64 values exactly.
        data = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        assert pd.isna(data.loc[3, "score"])
    body, writer = write_body(TYPICAL, [data], compress, chunk_size=4096)
    if compress and compress.algorithm in (Algo.ODPS_LZ4, Algo.ODPS_ARROW_LZ4):
        assert writer.content_encoding == "x-odps-lz4-frame"
    elif compress:
        assert writer.content_encoding == compress.algorithm.get_encoding()
    else:
        assert writer.content_encoding is None
    assert (writer.n_rows, writer.n_bytes > 0) == (500, True)
    reader = reader_of(body, encoding=writer.content_encoding)
    got = reader.read()
    assert got.equals(table)
    assert reader.n_rows == 500
    assert reader.n_bytes == writer.n_bytes


@pytest.mark.parametrize("compress", COMPRESSIONS, ids=lambda c: c and c.algorithm.value)
def test_nested_round_trip_from_arrow_and_pandas(compress):
    rows = nested_rows(60)
    expected = nested_table(rows)
    frame = pd.DataFrame(rows, columns=[c.name for c in NESTED.simple_columns])
    body, writer = write_body(NESTED, [expected, frame], compress)
    got = reader_of(body, NESTED, writer.content_encoding).read()
    assert got.equals(pa.concat_tables([expected, expected]))


def test_tuples_and_records_follow_record_conventions():
    rows = nested_rows(20)
    body, _ = write_body(NESTED, [nested_table(rows)])
    reader = reader_of(body, NESTED, partition_spec="pt=p1", append_partitions=True)
    got = list(reader.iter_tuples())
    assert [r[:-1] for r in got] == rows
    assert {r[-1] for r in got} == {"p1"}
    assert type(got[0][4]) is pd.Timestamp and type(got[0][3]["c"][0]) is dt.datetime
    assert got[0][8] == rows[0][8] and isinstance(got[0][8], pd.Timedelta)
    records = list(reader_of(body, NESTED).iter_records())
    assert isinstance(records[0], Record)
    assert records[0]["attrs"] == rows[0][2] and records[0].doc == {
        "n": 0,
        "list": [1, "two", None],
    }
    assert records[1].values == [1] + [None] * 10


def test_typical_records():
    table = typical_table(10)
    body, _ = write_body(TYPICAL, [table])
    records = list(reader_of(body).iter_records())
    assert [list(r.values) for r in records] == [list(row.values()) for row in table.to_pylist()]
    assert isinstance(records[0]["amount"], decimal.Decimal)


def test_to_pandas_and_iteration():
    table = typical_table(50)
    body, _ = write_body(TYPICAL, [table.slice(0, 20), table.slice(20)])
    with reader_of(body) as reader:
        batches = list(reader)
    assert [b.num_rows for b in batches] == [20, 30]
    frame = reader_of(body).to_pandas()
    assert frame.equals(table.to_pandas())


def test_empty_writer_and_empty_reads():
    body, writer = write_body(TYPICAL, [])
    assert body == EMPTY_BODY and writer.n_rows == 0
    for empty in (b"", EMPTY_BODY, b"\x00\x01\x00\x00" + EMPTY_BODY):
        reader = reader_of(empty)
        assert reader.read_next_batch() is None
        table = reader_of(empty).read()
        assert table.num_rows == 0 and table.schema.names == TYPICAL.names


def test_writer_context_aborts_on_error():
    seen = []

    def callback(chunks):
        seen.append(b"".join(chunks))

    with pytest.raises(KeyError), ArrowWriter(TYPICAL, callback) as writer:
        writer.write(typical_table(5))
        raise KeyError("stop")
    assert seen == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(typical_table(1))


# ----------------------------------------------------------------- columns and partitions


def test_columns_are_reordered_client_side():
    schema = TableSchema.from_lists(
        ["id", "score", "name", "flag", "ts", "amount"],
        ["bigint", "double", "string", "boolean", "datetime", "decimal(18,4)"],
        ["pt", "region"],
        ["string", "bigint"],
    )
    table = typical_table(30)
    # The service sends the selected data columns in table order.
    wire = table.select(["score", "ts", "amount"])
    sent = []
    wire_schema = TableSchema([schema.get_column(n) for n in wire.schema.names])
    with ArrowWriter(wire_schema, lambda c: sent.append(b"".join(c))) as writer:
        writer.write(wire)
    columns = ["amount", "Region", "score", "ts"]
    reader = reader_of(sent[0], schema, columns=columns, partition_spec="pt=a,region=7")
    assert [c.name for c in reader.wire_columns] == ["score", "ts", "amount"]
    got = reader.read()
    assert got.schema.names == ["amount", "region", "score", "ts"]
    assert got.column("region").type == pa.int64()  # partition values take their column types
    assert got.column("region").to_pylist() == [7] * 30
    assert got.select(["amount", "score", "ts"]).equals(table.select(["amount", "score", "ts"]))
    with pytest.raises(TunnelError, match="gives it no value"):
        reader_of(sent[0], schema, columns=["pt", "score"])


# ----------------------------------------------------------------- time zones


def test_naive_times_are_wall_clock_in_the_local_zone(monkeypatch):
    monkeypatch.setattr(options, "local_timezone", "Asia/Shanghai")
    schema = TableSchema.from_lists(
        ["d", "t", "aware", "n"], ["datetime", "timestamp", "timestamp", "timestamp_ntz"]
    )
    wall = dt.datetime(2024, 5, 1, 8, 30, 0, 123000)
    aware = dt.datetime(2024, 5, 1, 0, 30, 0, 123000, tzinfo=dt.UTC)
    data = pa.table(
        {
            "d": pa.array([wall, None], pa.timestamp("us")),
            "t": pa.array([wall, wall], pa.timestamp("ns")),
            "aware": pa.array([aware, aware], pa.timestamp("ms", "UTC")),
            "n": pa.array([wall, wall.replace(tzinfo=dt.UTC)], pa.timestamp("ms")),
        }
    )
    body, _ = write_body(schema, [data])
    wire = pa.Table.from_batches(
        list(
            read_payload_batches(
                ArrowFrameDecoder(io.BytesIO(body)), odps_schema_to_arrow_schema(schema)
            )
        )
    )
    instant = int(aware.timestamp() * 1000)
    assert wire.column("d").cast(pa.int64()).to_pylist() == [instant, None]
    assert wire.column("t").cast(pa.int64()).to_pylist() == [instant * 10**6] * 2
    assert wire.column("aware").cast(pa.int64()).to_pylist() == [instant * 10**6] * 2
    assert wire.column("n").to_pylist()[0] == pd.Timestamp(wall)
    rows = list(reader_of(body, schema).iter_tuples())
    stamp = pd.Timestamp(wall)
    assert rows[0] == (wall, stamp, stamp, stamp)
    assert rows[1] == (None, stamp, stamp, stamp)


@pytest.mark.parametrize(
    "zone_setting",
    ["America/New_York", "from_file"],
    ids=["named-zone", "unnamed-zone"],
)
def test_dst_edges_follow_the_record_encoder(monkeypatch, zone_setting):
    path = "/usr/share/zoneinfo/America/New_York"
    if zone_setting == "from_file":
        with open(path, "rb") as fh:
            zone = zoneinfo.ZoneInfo.from_file(fh, key="custom")
    else:
        zone = zoneinfo.ZoneInfo(zone_setting)
    walls = [
        dt.datetime(2021, 3, 14, 2, 30, 0, 500),  # skipped by the spring change
        dt.datetime(2021, 11, 7, 1, 30, 0, 999999),  # repeated in the autumn
        dt.datetime(2021, 7, 1, 12),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999500),
    ]
    batch = pa.record_batch([pa.array(walls, pa.timestamp("us"))], names=["d"])
    target = odps_schema_to_arrow_schema(TableSchema.from_lists(["d"], ["datetime"]))
    (out,) = conform_table(batch, target, zone)
    assert out.column(0).cast(pa.int64()).to_pylist() == [
        datetime_to_millis(w, zone) for w in walls
    ]
    strict = odps_schema_to_arrow_schema(TableSchema.from_lists(["d"], ["timestamp"]))
    with pytest.raises(RecordValidationError) as info:
        list(conform_table(batch, strict, zone))
    assert info.value.row == 0 and info.value.column == "d"


def test_reader_converts_to_an_unnamed_zone(monkeypatch):
    with open("/usr/share/zoneinfo/Asia/Tokyo", "rb") as fh:
        zone = zoneinfo.ZoneInfo.from_file(fh, key="localtime-copy")
    instants = pa.array([0, 86_400_000, None], pa.timestamp("ms"))
    local = arrow_types.instants_to_wall_clock(instants, parse_type("datetime"), zone)
    assert local.to_pylist() == [dt.datetime(1970, 1, 1, 9), dt.datetime(1970, 1, 2, 9), None]


# ----------------------------------------------------------------- buffered writer


def decode_block(chunks: list[bytes], schema=TYPICAL, encoding=None) -> pa.Table:
    body = b"".join(chunks)
    return reader_of(body, schema, encoding).read()


@pytest.mark.parametrize("compress", [None, CompressOption("zlib"), CompressOption("lz4")])
def test_buffered_writer_cuts_blocks(compress):
    table = typical_table(3000)
    blocks: dict[int, list[bytes]] = {}
    ids = iter([7, 11, 19, 23, 42, 57, 64, 81, 99, 120, 150, 170, 200, 230, 260, 290])
    writer = BufferedArrowWriter(
        TYPICAL,
        lambda block_id, chunks: blocks.setdefault(block_id, list(chunks)),
        compress,
        buffer_size=30_000,
        chunk_size=4096,
        block_id_gen=lambda: next(ids),
    )
    with writer:
        writer.write(table.slice(0, 1000))
        writer.write(table.slice(1000).to_pandas())
    written = writer.get_blocks_written()
    assert len(written) >= 3
    assert written == list(blocks) and written[:3] == [7, 11, 19]
    encoding = writer.content_encoding
    parts = [decode_block(blocks[i], encoding=encoding) for i in written]
    assert pa.concat_tables(parts).equals(table)
    # A block ends soon after its compressed size passes buffer_size; a compressor may
    # still hold up to one of its own blocks (LZ4: 64 KiB) when the cut is decided.
    slack = 30_000 if compress is None else 30_000 + 65_536
    assert all(sum(len(c) for c in blocks[i]) < 30_000 + slack for i in written)
    assert writer.n_rows == 3000


def test_buffered_writer_ids_without_generator_and_empty_close():
    blocks = []
    writer = BufferedArrowWriter(
        TYPICAL, lambda block_id, chunks: blocks.append(block_id), buffer_size=10_000, block_id=5
    )
    writer.write(typical_table(1000))
    assert writer.close() == blocks == list(range(5, 5 + len(blocks)))
    nothing = BufferedArrowWriter(TYPICAL, lambda *a: blocks.append("sent"))
    assert nothing.close() == [] and blocks[-1] != "sent"


def test_buffered_block_chunks_can_be_sent_twice():
    sent = []
    writer = BufferedArrowWriter(TYPICAL, lambda block_id, chunks: sent.append(chunks))
    writer.write(typical_table(10))
    writer.close()
    assert b"".join(sent[0]) == b"".join(sent[0])
    # The framed pieces themselves: views of the serialized batches and CRC words.
    assert all(isinstance(c, bytes | memoryview) for c in sent[0])


# ----------------------------------------------------------------- resume


class FailingStream:
    """A body that raises ``error`` once ``fail_after`` bytes have been read."""

    def __init__(self, data: bytes, fail_after: int, error: BaseException):
        self._data = io.BytesIO(data)
        self._fail_after = fail_after
        self._error = error
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if self._data.tell() + size > self._fail_after:
            raise self._error
        return self._data.read(size)

    def close(self) -> None:
        self.closed = True


def test_resume_reopens_at_the_first_undelivered_row(monkeypatch):
    # Reads of one frame each, so the failure comes after some batches were returned.
    monkeypatch.setattr(arrow_framing, "READ_SIZE", 1)
    table = typical_table(1000)
    bodies = {
        start: write_body(TYPICAL, table.slice(start).to_batches(max_chunksize=100), None, 2048)[0]
        for start in range(0, 1000, 100)
    }
    opened = []
    streams = []

    def stream_creator(start):
        opened.append(start)
        body = bodies[start]
        stream = (
            FailingStream(body, len(body) // 2, ConnectionError("reset by peer"))
            if len(opened) == 1
            else io.BytesIO(body)
        )
        streams.append(stream)
        return stream

    reader = TunnelArrowReader(TYPICAL, stream_creator)
    got = reader.read()
    assert got.equals(table)
    assert opened[0] == 0 and len(opened) == 2
    assert opened[1] in range(100, 1000, 100)  # the rows of whole batches already returned
    assert streams[0].closed


def test_on_exception_true_reraises_and_false_retries():
    table = typical_table(300)
    body, _ = write_body(TYPICAL, table.to_batches(max_chunksize=100), None, 2048)
    calls = []

    def failing(start):
        calls.append(start)
        return FailingStream(body, 3000, ConnectionError("boom"))

    seen = []
    reader = TunnelArrowReader(TYPICAL, failing, on_exception=lambda e: seen.append(e) or True)
    with pytest.raises(ConnectionError, match="boom") as info:
        reader.read()
    assert len(calls) == 1 and len(seen) == 1
    assert any("row" in note for note in info.value.__notes__)

    calls.clear()
    reader = TunnelArrowReader(TYPICAL, failing, on_exception=lambda e: False)
    with pytest.raises(ConnectionError):
        reader.read()
    assert len(calls) == options.retry_times + 1


def test_checksum_errors_and_truncation_are_retried(monkeypatch):
    table = typical_table(300)
    body, _ = write_body(TYPICAL, [table], None, 1024)
    corrupt = bytearray(body)
    corrupt[5000] ^= 1
    calls = []

    def creator(start):
        calls.append(start)
        return io.BytesIO(bytes(corrupt) if len(calls) == 1 else body)

    assert TunnelArrowReader(TYPICAL, creator).read().equals(table)
    assert calls == [0, 0]

    calls.clear()
    truncated = body[: 4 + 3 * 1028]  # whole chunks, no closing CRC

    def truncating(start):
        calls.append(start)
        return io.BytesIO(truncated)

    # A connection dropped between chunks looks like truncation: re-open, then give up.
    with pytest.raises(StreamTruncatedError) as info:
        TunnelArrowReader(TYPICAL, truncating).read()
    assert calls == [0] * (options.retry_times + 1) and info.value.row == 0

    monkeypatch.setattr(options, "retry_times", 1)
    with pytest.raises(TunnelError) as info:
        TunnelArrowReader(TYPICAL, lambda start: io.BytesIO(bytes(corrupt))).read()
    assert info.value.row == 0 and info.value.offset is not None


# ----------------------------------------------------------------- conforming


def test_conform_reorders_columns_case_insensitively():
    table = typical_table(20)
    shuffled = table.select(["amount", "name", "id", "ts", "flag", "score"])
    shuffled = shuffled.rename_columns([n.upper() for n in shuffled.schema.names])
    (batch,) = conform_table(shuffled, odps_schema_to_arrow_schema(TYPICAL))
    assert pa.Table.from_batches([batch]).equals(table)


def test_conform_errors_name_the_column():
    target = odps_schema_to_arrow_schema(TYPICAL)
    table = typical_table(20)
    with pytest.raises(RecordValidationError, match="'amount' .* missing") as info:
        list(conform_table(table.drop_columns(["amount"]), target))
    assert info.value.column == "amount" and info.value.column_type == "decimal(18,4)"
    with pytest.raises(RecordValidationError, match="'extra' of the data is not in the table"):
        list(conform_table(table.append_column("extra", pa.array([1] * 20)), target))

    bad = table.set_column(0, "id", pa.array([str(i) for i in range(19)] + ["x"]))
    with pytest.raises(RecordValidationError) as info:
        list(conform_table(bad, target))
    assert (info.value.column, info.value.column_type, info.value.row) == ("id", "bigint", 19)
    assert info.value.value == "x" and "row 19" in str(info.value)

    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame["id"] = frame["id"].astype(object)
    frame.loc[7, "id"] = "seven"
    with pytest.raises(RecordValidationError) as info:
        list(conform_table(frame, target))
    assert (info.value.column, info.value.row, info.value.value) == ("id", 7, "seven")


@pytest.mark.parametrize(
    ("odps_type", "values", "row"),
    [
        ("int", pa.array([1, 2**31, 3], pa.int64()), 1),
        ("decimal(10,2)", pa.array([decimal.Decimal("1.5"), decimal.Decimal("1.234")]), 1),
        ("varchar(3)", pa.array(["abc", "abcd"]), 1),
        ("vector<float,2>", pa.array([[1.0, 2.0], [1.0]]), 1),
        ("timestamp", pa.array([dt.datetime(2262, 4, 12)], pa.timestamp("ms")), 0),
        ("map<string,bigint>", pa.array([1, 2]), None),
        ("struct<a:bigint>", pa.array([{"a": 1, "zz": 2}]), None),
        ("json", pa.array([1]), None),
    ],
)
def test_conform_value_errors(odps_type, values, row):
    schema = odps_schema_to_arrow_schema(TableSchema.from_lists(["c"], [odps_type]))
    with pytest.raises(RecordValidationError) as info:
        list(conform_table(pa.table({"c": values}), schema))
    assert info.value.column == "c" and info.value.column_type == odps_type
    if row is not None:
        assert info.value.row == row


def test_not_null_columns():
    schema = TableSchema.from_lists(["a"], ["bigint"])
    schema.simple_columns[0].nullable = False
    target = odps_schema_to_arrow_schema(schema)
    with pytest.raises(RecordValidationError, match="NOT NULL but row 2 is null"):
        list(conform_table(pa.table({"a": [1, 2, None]}), target))


def test_conform_casts_and_fills():
    schema = TableSchema.from_lists(
        ["i", "d", "s", "dt", "st"],
        ["int", "decimal(10,2)", "string", "datetime", "struct<a:bigint,b:string>"],
    )
    data = pa.table(
        {
            "i": pa.array([1, None], pa.int8()),
            "d": pa.array(["1.5", "-2.25"]),
            "s": pa.array(["x", "y"], pa.large_string()).dictionary_encode(),
            "dt": pa.array([dt.date(2020, 1, 2), None]),
            "st": pa.array([{"B": "only b"}, None]),
        }
    )
    (batch,) = conform_table(data, odps_schema_to_arrow_schema(schema))
    assert batch.to_pylist() == [
        {
            "i": 1,
            "d": decimal.Decimal("1.50"),
            "s": "x",
            "dt": dt.datetime(2020, 1, 2),
            "st": {"a": None, "b": "only b"},
        },
        {"i": None, "d": decimal.Decimal("-2.25"), "s": "y", "dt": None, "st": None},
    ]


def test_large_string_columns_are_split(monkeypatch):
    monkeypatch.setattr(arrow_types, "MAX_32BIT_OFFSET", 1000)
    schema = TableSchema.from_lists(["id", "text"], ["bigint", "string"])
    texts = [str(i) * (i % 37) for i in range(400)]
    data = pa.table({"id": list(range(400)), "text": pa.array(texts, pa.large_string())})
    batches = list(conform_table(data, odps_schema_to_arrow_schema(schema)))
    assert len(batches) > 5
    assert all(b.column(1).type == pa.string() for b in batches)
    assert all(pc.sum(pc.binary_length(b.column(1))).as_py() <= 1000 for b in batches)
    body, _ = write_body(schema, [data])
    assert reader_of(body, schema).read().column("text").to_pylist() == texts


# ----------------------------------------------------------------- type mapping


@pytest.mark.parametrize(
    ("odps", "arrow"),
    [
        ("tinyint", pa.int8()),
        ("float", pa.float32()),
        ("datetime", pa.timestamp("ms")),
        ("timestamp_ntz", pa.timestamp("ns")),
        ("decimal", pa.decimal256(54, 18)),
        ("decimal(38,10)", pa.decimal128(38, 10)),
        ("char(3)", pa.string()),
        ("json", pa.string()),
        ("date", pa.date32()),
        ("interval_day_time", TIMESTAMP_STRUCT_TYPE),
        ("vector<double,8>", pa.list_(pa.float64())),
        ("map<bigint,array<string>>", pa.map_(pa.int64(), pa.list_(pa.string()))),
        ("struct<x:datetime,y:binary>", pa.struct([("x", pa.timestamp("ms")), ("y", pa.binary())])),
    ],
)
def test_type_mapping(odps, arrow):
    assert odps_type_to_arrow_type(odps) == arrow


def test_type_mapping_specials():
    assert odps_type_to_arrow_type("timestamp", timestamp_as_struct=True) == TIMESTAMP_STRUCT_TYPE
    assert odps_type_to_arrow_type("array<timestamp>", True) == pa.list_(pa.timestamp("ns"))
    with pytest.raises(TypeError, match="interval_year_month"):
        odps_type_to_arrow_type("interval_year_month")
    assert arrow_type_to_odps_type(pa.large_string()) == "string"
    assert arrow_type_to_odps_type(pa.timestamp("us")) == "timestamp"
    assert arrow_type_to_odps_type(pa.decimal256(54, 18)) == "decimal"
    assert arrow_type_to_odps_type(TIMESTAMP_STRUCT_TYPE) == "struct<sec:bigint,nano:int>"
    for t in ["bigint", "array<map<string,decimal(10,2)>>", "struct<a:date,b:boolean>"]:
        assert arrow_type_to_odps_type(odps_type_to_arrow_type(t)) == t


# ----------------------------------------------------------------- other body forms


def test_instance_layout_with_timestamp_structs():
    schema = TableSchema.from_lists(["id", "t"], ["bigint", "timestamp"])
    instants = [pd.Timestamp("1969-12-31 23:59:59.999999999"), pd.Timestamp("2024-02-29 12:00")]
    wire_schema = odps_schema_to_arrow_schema(schema, timestamp_as_struct=True)
    pairs = [dict(zip(("sec", "nano"), divmod(t.value, 10**9), strict=True)) for t in instants]
    batch = pa.record_batch(
        [pa.array([1, 2]), pa.array(pairs, TIMESTAMP_STRUCT_TYPE)], schema=wire_schema
    )
    from airflow_provider_odps_tunnel.tunnel.codec.arrow_framing import ArrowFrameEncoder

    encoder = ArrowFrameEncoder(64)
    body = b"".join(bytes(p) for p in encoder.feed(batch.serialize())) + encoder.finish()
    got = reader_of(body, schema, timestamp_as_struct=True)
    assert [row[1] for row in got.iter_tuples()] == instants


def test_plain_ipc_stream_body():
    table = typical_table(40)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    got = reader_of(sink.getvalue(), use_ipc_stream=True, columns=["name", "id"]).read()
    assert got.equals(table.select(["name", "id"]))


# ----------------------------------------------------------------- pyodps parity


@pytest.fixture
def pyodps_utc():
    from odps import options as odps_options

    saved = odps_options.local_timezone
    odps_options.local_timezone = "UTC"
    yield
    odps_options.local_timezone = saved


def pyodps_schema(schema: TableSchema):
    from odps.types import OdpsSchema

    return OdpsSchema.from_lists(schema.names, [str(t) for t in schema.types])


PARITY = TableSchema.from_lists(
    ["id", "score", "name", "flag", "ts", "amount", "tags", "kv", "st", "day"],
    [
        "bigint",
        "double",
        "string",
        "boolean",
        "datetime",
        "decimal(18,4)",
        "array<bigint>",
        "map<string,double>",
        "struct<a:bigint,b:string>",
        "date",
    ],
)


def parity_table(n: int, seed: int) -> pa.Table:
    rnd = random.Random(seed)
    typical = typical_table(n, seed)
    extra = {
        "tags": [[rnd.randint(-9, 9) for _ in range(rnd.randint(0, 3))] for _ in range(n)],
        "kv": [[(f"k{j}", rnd.random()) for j in range(rnd.randint(0, 2))] for _ in range(n)],
        "st": [{"a": rnd.randint(0, 99), "b": rnd.choice(["x", None])} for _ in range(n)],
        "day": [
            dt.date(2000, 1, 1) + dt.timedelta(days=rnd.randint(-5000, 5000)) for _ in range(n)
        ],
    }
    schema = odps_schema_to_arrow_schema(PARITY)
    arrays = list(typical.columns) + [
        pa.array(extra[f.name], f.type) for f in list(schema)[len(typical.columns) :]
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("compress", [None, CompressOption("zlib"), CompressOption("arrow_lz4")])
def test_pyodps_reads_our_bodies(pyodps_utc, seed, compress):
    from odps.tunnel.io.reader import TunnelArrowReader as TheirReader
    from odps.tunnel.io.stream import CompressOption as TheirOption
    from odps.tunnel.io.stream import get_decompress_stream

    table = parity_table(400, seed)
    body, writer = write_body(PARITY, table.to_batches(max_chunksize=150), compress, 1000)
    their_option = compress and TheirOption(compress.algorithm.value)
    reader = TheirReader(
        pyodps_schema(PARITY),
        lambda start: get_decompress_stream(io.BytesIO(body), their_option, requests=False),
    )
    got = reader.read()
    got = got.set_column(4, "ts", got.column("ts").cast(pa.timestamp("ms")))  # drop tz=UTC
    assert got.equals(table)


@pytest.mark.parametrize("seed", [4, 5, 6])
@pytest.mark.parametrize("compress", [None, "ZLIB", "ARROW_LZ4", "ZSTD"])
def test_we_read_pyodps_bodies(pyodps_utc, seed, compress):
    from odps.tunnel.io.stream import CompressOption as TheirOption
    from odps.tunnel.io.writer import ArrowWriter as TheirWriter

    table = parity_table(400, seed)
    sent = []
    option = compress and TheirOption(compress)
    writer = TheirWriter(
        pyodps_schema(PARITY), lambda chunks: sent.append(b"".join(chunks)), option, 2000
    )
    for batch in table.to_batches(max_chunksize=130):
        writer.write(batch)
    writer.close()
    encoding = option and option.algorithm.get_encoding()
    assert reader_of(sent[0], PARITY, encoding).read().equals(table)
