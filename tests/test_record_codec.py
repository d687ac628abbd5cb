"""The record codec's two implementations: the pure-Python reference and the compiled one.

Every test runs against both (``impl`` is ``py`` or ``c``; ``c`` must be built, a missing
extension fails the run). Properties: random schemas of every type, nested to depth 3,
round-trip and give the same bytes through both; the bulk APIs (``encode_many``,
``read_rows``, ``encode_arrow``) equal the per-row calls; bad values and damaged streams
raise the same error class, message and context (column, row, byte offset) in both.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import struct
import zoneinfo
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_odps_tunnel.tunnel.codec import record_codec
from airflow_provider_odps_tunnel.tunnel.codec import types as t
from airflow_provider_odps_tunnel.tunnel.codec.record import Record
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema
from airflow_provider_odps_tunnel.tunnel.errors import (
    ChecksumError,
    DataStreamError,
    RecordValidationError,
    StreamTruncatedError,
)

try:
    from airflow_provider_odps_tunnel.tunnel.codec import _record_codec_c
except ImportError as exc:  # reported by the tests below, never skipped
    _record_codec_c = None
    _BUILD_ERROR = exc

UTC = dt.UTC
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
ZONES = [
    UTC,
    zoneinfo.ZoneInfo("UTC"),
    SHANGHAI,
    BERLIN,
    NEW_YORK,
    dt.timezone(dt.timedelta(hours=-3, minutes=-30)),
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _classes(name: str) -> tuple[type, type]:
    if name == "py":
        return record_codec.PyRecordEncoder, record_codec.PyRecordDecoder
    if _record_codec_c is None:
        pytest.fail(f"the compiled record codec is not built: {_BUILD_ERROR}")
    return _record_codec_c.CRecordEncoder, _record_codec_c.CRecordDecoder


@pytest.fixture(params=["py", "c"])
def impl(request) -> tuple[type, type]:
    """(encoder class, decoder class) of one implementation."""
    return _classes(request.param)


def _both() -> list[tuple[type, type]]:
    return [_classes("py"), _classes("c")]


def test_compiled_codec_is_built_and_selected():
    assert _record_codec_c is not None, f"the compiled record codec is not built: {_BUILD_ERROR}"
    assert record_codec.RecordEncoder is _record_codec_c.CRecordEncoder
    assert record_codec.RecordDecoder is _record_codec_c.CRecordDecoder


# ------------------------------------------------------------------------------ helpers
def cols(*types: str, nullable: bool = True) -> list[Column]:
    return [Column(f"c{i}", typ, nullable=nullable) for i, typ in enumerate(types)]


def encode(enc_cls: type, columns: list[Column], rows: list, **kw: Any) -> bytes:
    encoder = enc_cls(columns, **kw)
    out = bytearray()
    for row in rows:
        encoder.encode(row, out)
    return bytes(out + encoder.footer())


def decode(dec_cls: type, columns: list[Column], data: bytes, **kw: Any) -> list[list]:
    return list(dec_cls(columns, io.BytesIO(data), **kw))


def records(enc_cls: type, columns: list[Column], rows: list, **kw: Any) -> bytes:
    """The records of ``rows``, without a footer."""
    out = bytearray()
    enc_cls(columns, **kw).encode_many(rows, out)
    return bytes(out)


def outcome(fn: Callable[[], Any]) -> tuple:
    """What a call did: ("ok", result) or ("error", class, str, offset, row, column)."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - compared between the implementations
        return (
            "error",
            type(exc),
            str(exc),
            getattr(exc, "offset", None),
            getattr(exc, "row", None),
            getattr(exc, "column", None),
        )


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and a.fold == b.fold and type(a) is type(b)
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------- random schemas/values
PRIMITIVES = [
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "float",
    "double",
    "string",
    "varchar(5)",
    "char(3)",
    "binary",
    "boolean",
    "datetime",
    "date",
    "decimal(18,4)",
    "decimal(38,18)",
    "decimal(10,10)",
    "decimal",
    "timestamp",
    "timestamp_ntz",
    "interval_day_time",
    "interval_year_month",
    "json",
    "vector<float,3>",
    "vector<double,2>",
]
KEY_TYPES = ["bigint", "string", "int", "boolean", "date"]


def types_(depth: int = 3) -> st.SearchStrategy[t.DataType]:
    """Random ODPS types: every primitive, and arrays/maps/structs nested up to ``depth``."""
    prim = st.sampled_from(PRIMITIVES).map(t.parse_type)
    if depth == 0:
        return prim
    inner = types_(depth - 1)
    return st.one_of(
        prim,
        inner.map(t.Array),
        st.tuples(st.sampled_from(KEY_TYPES).map(t.parse_type), inner).map(lambda kv: t.Map(*kv)),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda fs: t.Struct([(f"f{i}", ft) for i, ft in enumerate(fs)])
        ),
    )


def _datetimes() -> st.SearchStrategy[dt.datetime]:
    return st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)).map(
        lambda v: v.replace(microsecond=v.microsecond // 1000 * 1000, fold=0)
    )


def _decimals(precision: int, scale: int) -> st.SearchStrategy[decimal.Decimal]:
    """Decimals of exactly ``scale`` places that fit (built from text: no rounding)."""
    bound = 10**precision - 1
    return st.integers(-bound, bound).map(lambda n: decimal.Decimal(f"{n}E-{scale}"))


JSON = st.recursive(
    st.none() | st.booleans() | st.text(max_size=5) | st.integers(-1000, 1000),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3)
    ),
    max_leaves=6,
).filter(lambda v: isinstance(v, list | dict | str | bool))


def values(typ: t.DataType, nullable: bool = True) -> st.SearchStrategy[Any]:  # noqa: C901
    """Canonical values of ``typ``: what the decoder gives back for them."""
    strategy: st.SearchStrategy[Any]
    if isinstance(typ, t.IntegerType):
        strategy = st.one_of(
            st.integers(typ.min_value, typ.max_value),
            st.sampled_from([typ.min_value, typ.max_value, 0, -1, 63, -64, 64]),
        )
    elif typ == t.double:
        strategy = st.floats()
    elif typ == t.float_:
        strategy = st.floats(width=32, allow_nan=False)
    elif isinstance(typ, t._StringType):
        strategy = st.text(max_size=typ.max_length or 30)
    elif typ == t.binary:
        strategy = st.binary(max_size=30)
    elif typ == t.boolean:
        strategy = st.booleans()
    elif typ == t.datetime:
        strategy = _datetimes()
    elif typ == t.date:
        strategy = st.dates()
    elif isinstance(typ, t.Decimal):
        strategy = _decimals(min(typ.precision, 38), min(typ.scale, 18))
    elif typ in (t.timestamp, t.timestamp_ntz):
        strategy = st.integers(-(2**62), 2**62).map(pd.Timestamp)
    elif typ == t.interval_day_time:
        strategy = st.integers(-(2**62), 2**62).map(lambda n: pd.Timedelta(n, unit="ns"))
    elif typ == t.interval_year_month:
        strategy = st.integers(-(10**6), 10**6).map(lambda m: t.Monthdelta(months=m))
    elif typ == t.json:
        strategy = JSON
    elif isinstance(typ, t.Vector):
        width = 32 if typ.value_type == t.float_ else 64
        finite = st.floats(width=width, allow_nan=False, allow_infinity=False)
        strategy = st.lists(finite, min_size=typ.dim, max_size=typ.dim)
    elif isinstance(typ, t.Array):
        strategy = st.lists(values(typ.value_type), max_size=3)
    elif isinstance(typ, t.Map):
        strategy = st.dictionaries(
            values(typ.key_type, nullable=False), values(typ.value_type), max_size=3
        )
    elif isinstance(typ, t.Struct):
        strategy = st.fixed_dictionaries({n: values(ft) for n, ft in typ.field_types.items()})
    else:
        raise AssertionError(typ)
    return st.one_of(st.none(), strategy) if nullable else strategy


@st.composite
def tables(draw: st.DrawFn, type_strategy: st.SearchStrategy | None = None) -> tuple:
    """(columns, rows) with 1-6 random columns and 0-8 rows."""
    kinds = draw(
        st.lists(types_() if type_strategy is None else type_strategy, min_size=1, max_size=6)
    )
    columns = [
        Column(f"c{i}", typ, nullable=draw(st.booleans()) or i > 0) for i, typ in enumerate(kinds)
    ]
    row = st.tuples(*[values(c.type, c.nullable) for c in columns])
    return columns, draw(st.lists(row, max_size=8))


# --------------------------------------------------------------------- property tests
@SETTINGS
@given(table=tables(), read_size=st.sampled_from([1, 3, 64, 65536]), as_binary=st.booleans())
def test_random_tables_round_trip_identically(table, read_size, as_binary):
    columns, rows = table
    kw = {"tz": UTC, "string_as_binary": as_binary}
    bodies = [encode(enc, columns, rows, **kw) for enc, _ in _both()]
    assert bodies[0] == bodies[1]
    decoded = []
    for enc, dec in _both():
        bulk = bytearray()
        encoder = enc(columns, **kw)
        encoder.encode_many(iter(rows), bulk)
        assert bytes(bulk + encoder.footer()) == bodies[0]
        decoded.append(decode(dec, columns, bodies[0], read_size=read_size, **kw))
        decoder = dec(columns, io.BytesIO(bodies[0]), read_size=read_size, **kw)
        assert same(decoder.read_rows(3) + decoder.read_rows(10**6), decoded[-1])
        assert decoder.read_rows(5) == [] and decoder.finished and decoder.count == len(rows)
    assert same(decoded[0], decoded[1])
    if not as_binary:  # (with it, strings and decimals read back as bytes)
        assert same(decoded[0], [list(r) for r in rows])


@SETTINGS
@given(
    table=tables(st.sampled_from(["datetime", "date", "timestamp", "string"]).map(t.parse_type)),
    folded=st.lists(st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)), max_size=6),
    tz=st.sampled_from(ZONES),
    encoding=st.sampled_from(["utf-8", "utf-16-le", "latin-1"]),
)
def test_zones_and_encodings_give_identical_results(table, folded, tz, encoding):
    """Naive datetimes (of either fold) in any zone, and other text encodings."""
    settings_ = {"tz": tz, "encoding": encoding}
    for columns, rows in (table, (cols("datetime"), [(v,) for v in folded])):
        results = [
            outcome(lambda e=enc, c=columns, r=rows: encode(e, c, r, **settings_))
            for enc, _ in _both()
        ]
        assert results[0] == results[1]
        if results[0][0] == "ok":
            decoded = [decode(dec, columns, results[0][1], **settings_) for _, dec in _both()]
            assert same(decoded[0], decoded[1])


# ------------------------------------------------------- accepted non-canonical inputs
NON_CANONICAL = [
    ("bigint", np.int64(-5)),
    ("int", np.int16(7)),
    ("tinyint", True),  # rejected: bool is not an integer
    ("double", 3),
    ("double", True),
    ("double", np.float32(1.5)),
    ("double", decimal.Decimal("1.25")),
    ("float", 1e300),  # rejected: too large for float32
    ("float", float("nan")),
    ("float", -0.0),
    ("string", b"caf\xc3\xa9"),
    ("string", bytearray(b"abc")),
    ("string", "\ud800"),  # rejected: a lone surrogate is not UTF-8
    ("string", 5),
    ("varchar(3)", "abcd"),
    ("varchar(3)", "\u00e9\u00e9\u00e9"),
    ("char(2)", b"abc"),
    ("binary", "caf\u00e9"),
    ("binary", memoryview(b"xy")),
    ("binary", b"\xff\xfe"),
    ("boolean", np.bool_(True)),
    ("boolean", 1),
    ("datetime", dt.date(2020, 2, 29)),
    ("datetime", dt.datetime(2020, 1, 1, 12, tzinfo=SHANGHAI)),
    ("datetime", pd.Timestamp("2020-01-01 00:00:00.0019")),
    ("datetime", dt.datetime(1969, 12, 31, 23, 59, 59, 999999)),
    ("datetime", "2020-01-01"),
    ("date", dt.datetime(2020, 1, 1, 23, 59)),
    ("date", pd.Timestamp("1900-03-01")),
    ("decimal(5,2)", decimal.Decimal("999.99")),
    ("decimal(5,2)", decimal.Decimal("1000")),
    ("decimal(5,2)", decimal.Decimal("-0E+5")),
    ("decimal(5,2)", decimal.Decimal("123.456")),
    ("decimal(5,2)", decimal.Decimal("NaN")),
    ("decimal(5,2)", decimal.Decimal("-Infinity")),
    ("decimal(5,2)", 12),
    ("decimal(5,2)", 1.5),
    ("decimal(5,2)", "1.5"),
    ("decimal(10,10)", decimal.Decimal("0.5")),
    ("decimal(10,10)", decimal.Decimal("1E-30")),
    ("decimal(10,10)", decimal.Decimal("1")),
    ("decimal", decimal.Decimal("1E+35")),
    ("decimal", decimal.Decimal("1E+36")),
    ("timestamp", dt.datetime(2020, 1, 1)),
    ("interval_day_time", dt.timedelta(days=-1, microseconds=1)),
    ("array<bigint>", (1, None, 2)),
    ("array<bigint>", np.array([1, 2])),
    ("map<string,bigint>", [("a", 1)]),
    ("struct<a:bigint,b:string>", (1, "x")),
    ("struct<a:bigint,b:string>", {"a": 1}),
]


@pytest.mark.parametrize(("typ", "value"), NON_CANONICAL)
@pytest.mark.parametrize("tz", [UTC, SHANGHAI])
def test_non_canonical_values_encode_or_fail_identically(typ, value, tz):
    columns = cols("bigint", typ)
    results = [outcome(lambda e=enc: encode(e, columns, [(1, value)], tz=tz)) for enc, _ in _both()]
    assert results[0] == results[1]
    if results[0][0] == "error":
        assert results[0][5] == "c1" and results[0][4] == 0


_SCHEMA = TableSchema.from_lists(["a", "b"], ["string", "string"])


@pytest.mark.parametrize(
    "row",
    [5, "ab", {"a": 1, "b": 2}, ["x", "y", "z"], ("x",), Record(schema=_SCHEMA, values=["x", "y"])],
    ids=["int", "str", "dict", "long", "short", "Record"],
)
def test_unusual_rows_behave_identically(row):
    """Rows are sequences; other things fail (or not) as the reference says. A Record
    iterates (name, value) pairs, so callers pass ``record.values``."""
    results = [
        outcome(lambda e=enc: encode(e, _SCHEMA.simple_columns, [row])) for enc, _ in _both()
    ]
    assert results[0] == results[1]


def test_row_shapes(impl):
    enc, dec = impl
    schema = TableSchema.from_lists(["a", "b"], ["bigint", "string"], ["pt"], ["string"])
    columns = schema.simple_columns
    record = Record(schema=schema, values=[1, "x", "p1"])
    # Lists, tuples, extra (partition) values and Record.values are all rows.
    body = encode(enc, columns, [[1, "x"], (1, "x"), (1, "x", "p1"), record.values])
    assert decode(dec, columns, body) == [[1, "x"]] * 4


# ------------------------------------------------------------------------- bad values
def _bad_value_cases() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for name in ("tinyint", "smallint", "int", "bigint"):
        typ = t.parse_type(name)
        cases += [(name, typ.min_value - 1), (name, typ.max_value + 1), (name, "1"), (name, 1.0)]
    cases += [
        ("double", "1.0"),
        ("float", "x"),
        ("string", b"\xff\xfe"),
        ("string", ["a"]),
        ("varchar(2)", "abc"),
        ("binary", 12),
        ("boolean", "true"),
        ("datetime", 1577836800),
        ("date", "2020-01-01"),
        ("decimal(4,2)", decimal.Decimal("100")),
        ("decimal(4,2)", decimal.Decimal("sNaN")),
        ("array<int>", [1, 2**40]),
        ("map<string,int>", {"a": "b"}),
        ("struct<a:int>", {"b": 1}),
        ("vector<float,2>", [1.0]),
        ("json", 1),
    ]
    return cases


@pytest.mark.parametrize(("typ", "value"), _bad_value_cases())
def test_bad_value_names_its_column(impl, typ, value):
    enc, _ = impl
    encoder = enc(cols("bigint", typ, "string"), tz=UTC)
    out = bytearray()
    encoder.encode((1, None, "ok"), out)
    size = len(out)
    with pytest.raises(RecordValidationError) as info:
        encoder.encode((2, value, "ok"), out)
    err = info.value
    assert err.column == "c1" and err.column_type == t.parse_type(typ).name and err.row == 1
    assert "'c1'" in str(err) and "row=1" in str(err)
    assert len(out) == size and encoder.count == 1  # nothing of the bad row was written


@pytest.mark.parametrize(("typ", "value"), _bad_value_cases())
def test_bad_value_errors_are_identical(typ, value):
    columns = cols("bigint", typ)
    results = [
        outcome(lambda e=enc: encode(e, columns, [(1, None), (1, value)])) for enc, _ in _both()
    ]
    assert results[0][0] == "error" and results[0] == results[1]


def test_not_null_and_row_length_errors(impl):
    enc, _ = impl
    columns = [Column("a", "bigint"), Column("b", "string", nullable=False)]
    encoder = enc(columns, tz=UTC)
    out = bytearray()
    with pytest.raises(RecordValidationError, match=r"column 'b' \(string\) is NOT NULL") as info:
        encoder.encode((1, None), out)
    assert (info.value.column, info.value.row) == ("b", 0)
    with pytest.raises(
        RecordValidationError, match="row has 1 values but the schema has 2"
    ) as info:
        encoder.encode((1,), out)
    assert info.value.row == 0 and info.value.value == [1]
    # A bad value is reported before a short row or a null in a NOT NULL column.
    with pytest.raises(RecordValidationError, match="column 'a'"):
        encoder.encode(("x",), out)
    assert out == bytearray() and encoder.count == 0


def test_encode_many_stops_at_the_bad_row(impl):
    enc, dec = impl
    columns = cols("bigint", "string")
    rows = [(i, str(i)) for i in range(5)] + [(5, 5)] + [(6, "6")]
    encoder = enc(columns, tz=UTC)
    out = bytearray()
    with pytest.raises(RecordValidationError) as info:
        encoder.encode_many(rows, out)
    assert (info.value.row, info.value.column) == (5, "c1")
    assert encoder.count == 5
    out += encoder.footer()
    assert decode(dec, columns, bytes(out)) == [list(r) for r in rows[:5]]


def test_output_that_cannot_grow_counts_nothing(impl):
    """An exported bytearray cannot grow: the call fails (the reference may wrap the
    BufferError in a RecordValidationError) and nothing is written or counted."""
    enc, _ = impl
    encoder = enc(cols("bigint"), tz=UTC)
    out = bytearray()
    with memoryview(out):
        for call in (
            lambda: encoder.encode((1,), out),
            lambda: encoder.encode((None,), out),
            lambda: encoder.encode_many([(1,)], out),
            lambda: encoder.encode_arrow(pa.record_batch([pa.array([1])], names=["c0"]), out),
        ):
            with pytest.raises((BufferError, RecordValidationError)):
                call()
    assert encoder.count == 0 and out == bytearray()
    assert encoder.footer() == encode(enc, cols("bigint"), [])


def test_non_bytearray_output_is_rejected():
    encoder = _classes("c")[0](cols("bigint"), tz=UTC)
    with pytest.raises(TypeError):
        encoder.encode((1,), b"")


# ---------------------------------------------------------------------------- streams
def _small_body() -> tuple[list[Column], list[tuple], bytes, list[int]]:
    """A body of 3 records of the typical types, and the offsets where records start."""
    columns = cols("bigint", "double", "string", "boolean", "datetime", "decimal(18,4)")
    rows = [
        (1, 1.5, "héllo", True, dt.datetime(2020, 1, 1, 12), decimal.Decimal("1.2345")),
        (None, None, None, None, None, None),
        (-(2**63), -0.0, "", False, dt.datetime(1900, 1, 1), decimal.Decimal("-0.0001")),
    ]
    encoder = record_codec.PyRecordEncoder(columns, tz=UTC)
    out = bytearray()
    starts = []
    for row in rows:
        starts.append(len(out))
        encoder.encode(row, out)
    starts.append(len(out))  # the footer
    return columns, rows, bytes(out + encoder.footer()), starts


def _read_all(dec_cls: type, columns: list[Column], data: bytes, **kw: Any) -> Callable:
    return lambda: [list(r) for r in dec_cls(columns, io.BytesIO(data), tz=UTC, **kw)]


@pytest.mark.parametrize("require_footer", [True, False])
def test_truncated_stream_at_every_offset(require_footer):
    columns, rows, body, starts = _small_body()
    for cut in range(len(body)):
        results = [
            outcome(_read_all(dec, columns, body[:cut], require_footer=require_footer, read_size=5))
            for _, dec in _both()
        ]
        assert results[0] == results[1], cut
        complete = sum(1 for s in starts[1:] if s <= cut)  # records that end by the cut
        if not require_footer and cut in starts:
            assert results[0] == ("ok", [list(r) for r in rows[:complete]])
            continue
        kind, cls, message, offset, row, _ = results[0]
        assert cls is StreamTruncatedError, (cut, message)
        assert (offset, row) == (cut, complete)
        where = "before the footer" if cut in starts else "inside a record"
        assert f"ended {where} after {complete} rows" in message


def test_flipped_bit_anywhere_is_an_error():
    """Every single-bit flip raises, except in bits that carry nothing, which read the
    original rows: the wire-type bits of the magic tags (known by field number alone) and
    bits 32-34 of a 5-byte CRC varint (a CRC has 32 bits; readers mask the rest, as they
    must to accept pyodps's sign-extended 10-byte form)."""
    columns, rows, body, starts = _small_body()
    ignored = set()
    for tag in (b"\x80\xc0\xff\x7f", b"\xf0\xff\xff\x7f", b"\xf8\xff\xff\x7f"):
        for p in (p for p in range(len(body)) if body.startswith(tag, p)):
            ignored.update((p, bit) for bit in range(3))
            crc = body[p + 4 : p + 9]
            if tag != b"\xf0\xff\xff\x7f" and len(crc) == 5 and all(b & 0x80 for b in crc[:4]):
                ignored.update((p + 8, bit) for bit in (4, 5, 6))
    assert len(ignored) >= 3 * (len(rows) + 2)
    mismatches = 0
    for pos in range(len(body)):
        for bit in range(8):
            damaged = bytearray(body)
            damaged[pos] ^= 1 << bit
            results = [outcome(_read_all(dec, columns, bytes(damaged))) for _, dec in _both()]
            assert results[0] == results[1], (pos, bit)
            if (pos, bit) in ignored:
                assert results[0] == ("ok", [list(r) for r in rows])
                continue
            assert results[0][0] == "error", (pos, bit, results[0])
            kind, cls, message, offset, row, _ = results[0]
            assert kind == "error" and issubclass(cls, DataStreamError), (pos, bit, results[0])
            # The error is at or after the record (or footer) holding the flip: usually at
            # its start, at the body's end when a length ran past it, or later when the
            # flip still let that record parse (a CRC varint swallowing the next byte).
            record = max(i for i, s in enumerate(starts) if s <= pos)
            assert offset >= starts[record] and row >= record, (pos, bit, message)
            exact = (len(body) if cls is StreamTruncatedError else starts[record], record)
            mismatches += (offset, row) != exact
            assert f"offset={offset}" in message and f"row={row}" in message
    assert mismatches < len(body) // 10


def test_decoder_raises_instead_of_returning_wrong_rows(impl):
    """Good rows before a damaged record come out; the damaged one raises, every time."""
    enc, dec = impl
    columns, rows, body, starts = _small_body()
    damaged = bytearray(body)
    damaged[starts[2] + 3] ^= 0x10  # inside the third record's first value
    decoder = dec(columns, io.BytesIO(bytes(damaged)), tz=UTC)
    assert decoder.read_rows(2) == [rows[0], rows[1]]
    for _ in range(2):  # asking again raises again; it never skips ahead
        with pytest.raises(ChecksumError) as info:
            decoder.read_rows(10)
        assert (info.value.offset, info.value.row) == (starts[2], 2)
    assert decoder.count == 2 and not decoder.finished
    with pytest.raises(ChecksumError):
        list(dec(columns, io.BytesIO(bytes(damaged)), tz=UTC))


# Hand-made bodies for the decoder's own checks.
def _varint(value: int) -> bytes:
    return record_codec.varint(value)


def _record(
    fields: list[tuple[int, int, bytes, bytes]], crc_form: Callable = _varint
) -> tuple[bytes, int]:
    """A record of (field, wire type, wire bytes, CRC bytes) with a correct CRC, and its CRC."""
    wire = b"".join(_varint(f << 3 | w) + data for f, w, data, _ in fields)
    crc = crc32c(b"".join(struct.pack("<i", f) + c for f, _, _, c in fields))
    return wire + _varint(record_codec.END_RECORD << 3) + crc_form(crc), crc


def _body(
    records: list[tuple[bytes, int]], count: int | None = None, checksum: int | None = None
) -> bytes:
    crcs = [crc for _, crc in records]
    out = b"".join(data for data, _ in records)
    n = len(records) if count is None else count
    out += _varint(record_codec.META_COUNT << 3) + _varint(record_codec.zigzag(n))
    stream = crc32c(b"".join(struct.pack("<I", c) for c in crcs))
    return (
        out
        + _varint(record_codec.META_CHECKSUM << 3)
        + _varint(stream if checksum is None else checksum)
    )


def _ten_bytes(value: int) -> bytes:
    """A CRC as pyodps's compiled writer sends it: sign-extended to 10 bytes."""
    return _varint(value - (1 << 32) + (1 << 64) if value >= 1 << 31 else value)


def _str_field(field: int, payload: bytes) -> tuple:
    return (field, 2, _varint(len(payload)) + payload, payload)


def _int_field(field: int, value: int, wire: bytes | None = None) -> tuple:
    z = (value << 1) ^ (value >> 70)
    return (field, 0, wire or _varint(z), struct.pack("<q", value))


STREAM_CASES = {
    "good": (["bigint", "string"], [_record([_int_field(1, 5), _str_field(2, b"ok")])]),
    "ten_byte_crcs": (
        ["bigint", "string"],
        [_record([_int_field(1, i), _str_field(2, b"x" * i)], _ten_bytes) for i in range(40)],
    ),
    "field_zero_skipped": (
        ["bigint"],
        [(b"\x00" + _record([_int_field(1, 1)])[0], _record([_int_field(1, 1)])[1])],
    ),
    "fields_out_of_order_and_repeated": (
        ["bigint", "string"],
        [_record([_str_field(2, b"a"), _int_field(1, 1), _int_field(1, 2)])],
    ),
    "invalid_utf8": (
        ["string"],
        [
            _record(
                [
                    _str_field(1, b"ok"),
                ]
            )
        ]
        + [_record([_str_field(1, b"\xff")])],
    ),
    "invalid_decimal": (["decimal(10,2)"], [_record([_str_field(1, b"1.x")])]),
    "wrong_wire_type": (["bigint"], [_record([(1, 2, b"\x01a", b"a")])]),
    "unknown_field": (["bigint"], [_record([(3, 0, b"\x02", b"")])]),
    "huge_field": (["bigint"], [(b"\xff" * 9 + b"\x7f" + b"\x00", 0)]),
    "eleven_byte_varint": (["bigint"], [_record([_int_field(1, 0, b"\x80" * 10 + b"\x00")])]),
    "int_beyond_int64": (["bigint"], [_record([(1, 0, b"\xff" * 9 + b"\x03", b"\x00" * 8)])]),
    "datetime_out_of_range": (["datetime"], [_record([_int_field(1, 2**62)])]),
    "date_out_of_range": (["date"], [_record([_int_field(1, -(10**7))])]),
    "bad_record_crc": (["bigint"], [(_record([_int_field(1, 1)])[0][:-1] + b"\x00", 0)]),
    "float_nan_payload": (["float"], [_record([(1, 5, b"\x01\x00\xc0\x7f", b"\x01\x00\xc0\x7f")])]),
    "double_nan_payload": (
        ["double"],
        [
            _record(
                [(1, 1, b"\x01\x00\x00\x00\x00\x00\xf8\xff", b"\x01\x00\x00\x00\x00\x00\xf8\xff")]
            )
        ],
    ),
    "string_length_past_the_end": (["string"], [(b"\x0a\xff\xff\x03ab", 0)]),
}


@pytest.mark.parametrize("case", sorted(STREAM_CASES))
@pytest.mark.parametrize("read_size", [1, 65536])
def test_hand_made_streams_decode_identically(case, read_size):
    types, records = STREAM_CASES[case]
    body = _body(records)
    results = [
        outcome(_read_all(dec, cols(*types), body, read_size=read_size)) for _, dec in _both()
    ]
    assert same(list(results[0][:2]), list(results[1][:2])) and results[0][2:] == results[1][2:]
    if case in ("good", "ten_byte_crcs", "field_zero_skipped", "float_nan_payload"):
        assert results[0][0] == "ok"
    elif case == "fields_out_of_order_and_repeated":
        assert results[0] == ("ok", [[2, "a"]])
    elif case != "double_nan_payload":
        assert results[0][0] == "error" and issubclass(results[0][1], DataStreamError), results[0]


EDGE_MILLIS = [
    -62135596800001,
    -62135596800000,
    -62135596000000,
    0,
    -1,
    253402300799999,
    253402300800000,
    253402214400000,
    2**62,
]


@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_datetimes_at_the_range_ends_decode_identically(tz):
    """Instants near year 1 and 9999 may leave the datetime range once moved to tz."""
    for millis in EDGE_MILLIS:
        body = _body([_record([_int_field(1, millis)])])
        results = [
            outcome(lambda d=dec, b=body: decode(d, cols("datetime"), b, tz=tz))
            for _, dec in _both()
        ]
        assert results[0] == results[1], millis
        if results[0][0] == "ok":
            assert results[0][1][0][0].fold == results[1][1][0][0].fold


def test_footer_checks(impl):
    _, dec = impl
    records = [_record([_int_field(1, i)]) for i in range(3)]
    columns = cols("bigint")
    with pytest.raises(DataStreamError, match="footer counts 2 rows but the body has 3"):
        _read_all(dec, columns, _body(records, count=2))()
    with pytest.raises(ChecksumError, match="stream checksum") as info:
        _read_all(dec, columns, _body(records, checksum=12345))()
    assert (info.value.row, info.value.offset) == (3, sum(len(r) for r, _ in records))
    # A footer's metrics block is read and checked.
    metrics = b'{"ServerIOCost": 1}'
    crc = crc32c(metrics, crc32c(struct.pack("<i", 1)))
    body = _body(records)
    cut = body.rindex(_varint(record_codec.META_CHECKSUM << 3))
    block = b"\x0a" + _varint(len(metrics)) + metrics + _varint(record_codec.END_METRICS << 3)
    decoder = dec(columns, io.BytesIO(body[:cut] + block + _varint(crc) + body[cut:]))
    assert decoder.read_rows(10) == [(0,), (1,), (2,)] and decoder.metrics == {"ServerIOCost": 1}
    with pytest.raises(ChecksumError, match="metrics CRC mismatch"):
        list(dec(columns, io.BytesIO(body[:cut] + block + _varint(crc ^ 1) + body[cut:])))


def test_decoder_attributes(impl):
    _, dec = impl
    columns, rows, body, starts = _small_body()
    decoder = dec(columns, io.BytesIO(body), tz=UTC, read_size=4)
    assert iter(decoder) is decoder and decoder.columns == columns
    assert decoder.read_row() == list(rows[0]) and decoder.offset == starts[1]
    assert decoder.read_rows(0) == [] and decoder.count == 1
    assert next(decoder) == list(rows[1])
    assert decoder.read_rows(5) == [rows[2]]
    assert decoder.finished and decoder.offset == len(body) and decoder.metrics is None
    assert decoder.read_row() is None and decoder.read_rows(3) == []


# ------------------------------------------------------------------------------ Arrow
def arrow_type(typ: t.DataType) -> pa.DataType:
    """The session's Arrow type of an ODPS type (nested types map element-wise)."""
    simple = {
        "tinyint": pa.int8(),
        "smallint": pa.int16(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "binary": pa.binary(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("ms"),
        "date": pa.date32(),
        "timestamp": pa.timestamp("ns"),
        "timestamp_ntz": pa.timestamp("ns"),
    }
    if typ.name in simple:
        return simple[typ.name]
    if isinstance(typ, t._StringType):
        return pa.string()
    if isinstance(typ, t.Decimal):
        return pa.decimal128(min(typ.precision, 38), min(typ.scale, 18))
    if isinstance(typ, t.Array):
        return pa.list_(arrow_type(typ.value_type))
    if isinstance(typ, t.Map):
        return pa.map_(arrow_type(typ.key_type), arrow_type(typ.value_type))
    if isinstance(typ, t.Struct):
        return pa.struct([(n, arrow_type(ft)) for n, ft in typ.field_types.items()])
    raise AssertionError(typ)


ARROW_PRIMITIVES = [
    p
    for p in PRIMITIVES
    if p not in ("interval_day_time", "interval_year_month", "json") and not p.startswith("vector")
]


def arrow_types_(depth: int = 2) -> st.SearchStrategy[t.DataType]:
    prim = st.sampled_from(ARROW_PRIMITIVES).map(t.parse_type)
    if depth == 0:
        return prim
    inner = arrow_types_(depth - 1)
    return st.one_of(
        prim,
        prim,
        inner.map(t.Array),
        st.tuples(st.sampled_from(["bigint", "string"]).map(t.parse_type), inner).map(
            lambda kv: t.Map(*kv)
        ),
        st.lists(inner, min_size=1, max_size=2).map(
            lambda fs: t.Struct([(f"f{i}", ft) for i, ft in enumerate(fs)])
        ),
    )


def batch_of(columns: list[Column], rows: list[tuple], types: list | None = None) -> pa.RecordBatch:
    types = types or [arrow_type(c.type) for c in columns]
    arrays = [pa.array([r[i] for r in rows], typ) for i, typ in enumerate(types)]
    return pa.record_batch(arrays, names=[c.name for c in columns])


def via_pylist(enc_cls: type, columns: list[Column], batch: pa.RecordBatch, **kw: Any) -> tuple:
    """The definition of encode_arrow: to_pylist, then one encode() per row."""
    encoder = enc_cls(columns, **kw)
    out = bytearray()
    result = outcome(
        lambda: encoder.encode_many(zip(*[c.to_pylist() for c in batch.columns], strict=True), out)
    )
    return result[:1] + result[2:], bytes(out), encoder.count


def via_arrow(enc_cls: type, columns: list[Column], batch: pa.RecordBatch, **kw: Any) -> tuple:
    encoder = enc_cls(columns, **kw)
    out = bytearray()
    result = outcome(lambda: encoder.encode_arrow(batch, out))
    return result[:1] + result[2:], bytes(out), encoder.count


@SETTINGS
@given(table=tables(arrow_types_()), data=st.data())
def test_encode_arrow_equals_row_encoding(table, data):
    columns, rows = table
    batch = batch_of(columns, rows)
    if len(rows) > 1 and data.draw(st.booleans()):  # a slice: buffers with an offset
        batch = batch.slice(1)
    want = via_pylist(record_codec.PyRecordEncoder, columns, batch, tz=UTC)
    for enc, _ in _both():
        assert via_arrow(enc, columns, batch, tz=UTC) == want


def _wall_clock_millis() -> st.SearchStrategy[int]:
    """Naive wall-clock times, many of them near DST changes (ambiguous or non-existent)."""
    transitions = [
        dt.datetime(1986, 5, 4, 2, 30),  # Shanghai: DST began (gap)
        dt.datetime(1991, 9, 15, 1, 30),  # Shanghai: DST ended (ambiguous)
        dt.datetime(2021, 3, 28, 2, 30),  # Berlin: gap
        dt.datetime(2021, 10, 31, 2, 30),  # Berlin: ambiguous
        dt.datetime(2021, 3, 14, 2, 30),  # New York: gap
        dt.datetime(2021, 11, 7, 1, 30),  # New York: ambiguous
        dt.datetime(1900, 1, 1),  # local mean time
    ]
    epoch = dt.datetime(1970, 1, 1)
    near = st.tuples(st.sampled_from(transitions), st.integers(-7200_000, 7200_000)).map(
        lambda p: (p[0] - epoch) // dt.timedelta(milliseconds=1) + p[1]
    )
    anywhere = st.integers(-(2**41), 2**42)
    return st.one_of(near, anywhere)


@SETTINGS
@given(
    millis=st.lists(st.one_of(st.none(), _wall_clock_millis()), max_size=30),
    tz=st.sampled_from(ZONES),
)
def test_encode_arrow_datetimes_in_any_zone(millis, tz):
    columns = cols("datetime")
    for arrow_tz in (None, "Asia/Shanghai"):  # naive: wall clock in tz; aware: an instant
        batch = pa.record_batch([pa.array(millis, pa.timestamp("ms", tz=arrow_tz))], names=["c0"])
        want = via_pylist(record_codec.PyRecordEncoder, columns, batch, tz=tz)
        for enc, _ in _both():
            assert via_arrow(enc, columns, batch, tz=tz) == want


DST_CASES = [
    (SHANGHAI, dt.datetime(1986, 5, 4, 2, 30)),
    (SHANGHAI, dt.datetime(1991, 9, 15, 1, 30)),
    (BERLIN, dt.datetime(2021, 3, 28, 2, 30)),
    (BERLIN, dt.datetime(2021, 10, 31, 2, 30)),
]


@pytest.mark.parametrize(("tz", "wall"), DST_CASES)
def test_encode_arrow_dst_edges_match_replace_tzinfo(impl, tz, wall):
    """Ambiguous wall times take the first instant and times in a gap the offset before
    the gap, as ``wall.replace(tzinfo=tz)`` (fold 0) says, for rows and Arrow alike."""
    enc, dec = impl
    columns = cols("datetime")
    rows = [(wall,), (wall + dt.timedelta(minutes=45),), (wall + dt.timedelta(hours=3),)]
    encoder = enc(columns, tz=tz)
    out = bytearray()
    encoder.encode_arrow(batch_of(columns, rows), out)
    body = bytes(out + encoder.footer())
    assert body == encode(enc, columns, rows, tz=tz)
    instants = [row[0] for row in decode(dec, columns, body, tz=UTC)]
    assert instants == [w.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None) for (w,) in rows]


ARROW_VARIANTS = [
    ("bigint", pa.int32(), [1, None, -(2**31)]),
    ("bigint", pa.int8(), [-128, 127]),
    ("int", pa.int64(), [2**31 - 1, -(2**31)]),
    ("int", pa.int64(), [1, 2**31]),  # out of range in row 1
    ("tinyint", pa.int16(), [127, 128]),
    ("smallint", pa.int32(), [None, -32769]),
    ("double", pa.float32(), [1.5, float("nan"), None, float("-inf")]),
    ("float", pa.float64(), [0.1, 1e300, -0.0]),
    ("float", pa.float64(), [float("nan"), 3.0]),
    ("string", pa.large_string(), ["a", None, "ü" * 200]),
    ("string", pa.binary(), [b"ok", b"\xff"]),
    ("varchar(2)", pa.string(), ["ab", "\u00e9\u00e9", "abc"]),
    ("char(2)", pa.large_string(), ["\U0001f600\U0001f600", "abc"]),
    ("binary", pa.string(), ["caf\u00e9", None]),
    ("binary", pa.large_binary(), [b"\x00\xff", b""]),
    ("datetime", pa.timestamp("s"), [0, 1]),
    ("datetime", pa.timestamp("ms", tz="+05:30"), [0, -1, None]),
    ("datetime", pa.timestamp("ms"), [-62135596800000, 253402300799999]),  # the ends of datetime
    ("datetime", pa.timestamp("ms"), [253402300800000]),  # year 10000: to_pylist fails
    ("date", pa.date32(), [-719162, 2932896, None]),
    ("date", pa.date32(), [2932897]),
    ("date", pa.date64(), [86400000]),
    ("decimal(18,4)", pa.decimal128(18, 4), [decimal.Decimal("0.0000"), decimal.Decimal("-1.5")]),
    ("decimal(4,2)", pa.decimal128(10, 2), [decimal.Decimal("99.99"), decimal.Decimal("100.00")]),
    ("decimal(10,10)", pa.decimal128(10, 10), [decimal.Decimal("1E-10"), decimal.Decimal(0)]),
    ("decimal(38,8)", pa.decimal128(38, 8), [decimal.Decimal("-" + "9" * 30 + "." + "9" * 8)]),
    ("decimal(20,0)", pa.decimal128(20, 0), [decimal.Decimal("12345678901234567890")]),
    ("decimal(38,38)", pa.decimal128(38, 38), [decimal.Decimal("1E-38"), decimal.Decimal("-0.5")]),
    ("decimal(38,18)", pa.decimal256(40, 18), [decimal.Decimal("1.5")]),
    ("timestamp", pa.timestamp("ns"), [0, -1, None, 2**63 - 1]),
    ("timestamp", pa.timestamp("ns", tz="Europe/Berlin"), [-(10**9) - 1]),
    ("timestamp_ntz", pa.timestamp("ns"), [-(10**9) - 1, 5]),
    ("timestamp_ntz", pa.timestamp("ns", tz="Asia/Shanghai"), [0]),
    ("timestamp", pa.timestamp("us"), [1]),
    ("array<bigint>", pa.list_(pa.int64()), [[1, None], None, []]),
    ("map<string,double>", pa.map_(pa.string(), pa.float64()), [[("a", 1.0)], None]),
    ("interval_day_time", pa.duration("ns"), [5, None]),
]


@pytest.mark.parametrize(("typ", "arrow", "items"), ARROW_VARIANTS)
@pytest.mark.parametrize("tz", [UTC, BERLIN])
@pytest.mark.parametrize("nullable", [True, False])
def test_encode_arrow_column_variants(typ, arrow, items, tz, nullable):
    columns = [Column("id", "bigint"), Column("v", typ, nullable=nullable)]
    batch = pa.record_batch(
        [pa.array(range(len(items)), pa.int64()), pa.array(items, arrow)], names=["id", "v"]
    )
    for sliced in (batch, batch.slice(1)):
        want = via_pylist(record_codec.PyRecordEncoder, columns, sliced, tz=tz)
        for enc, _ in _both():
            assert via_arrow(enc, columns, sliced, tz=tz) == want


FAST_ARROW = [
    ("tinyint", pa.int8()),
    ("bigint", pa.int16()),
    ("int", pa.int64()),
    ("double", pa.float32()),
    ("float", pa.float64()),
    ("string", pa.string()),
    ("varchar(4)", pa.large_string()),
    ("binary", pa.binary()),
    ("binary", pa.large_string()),
    ("boolean", pa.bool_()),
    ("datetime", pa.timestamp("ms")),
    ("datetime", pa.timestamp("ms", tz="Asia/Shanghai")),
    ("date", pa.date32()),
    ("decimal(18,4)", pa.decimal128(18, 4)),
    ("decimal(10,2)", pa.decimal128(38, 9)),
    ("timestamp", pa.timestamp("ns")),
    ("timestamp_ntz", pa.timestamp("ns")),
]
SLOW_ARROW = [
    ("bigint", pa.uint8()),
    ("string", pa.binary()),  # needs the UTF-8 check of bytes values
    ("datetime", pa.timestamp("us")),
    ("date", pa.date64()),
    ("decimal(18,4)", pa.decimal256(18, 4)),
    ("timestamp_ntz", pa.timestamp("ns", tz="UTC")),
    ("array<bigint>", pa.list_(pa.int64())),
    ("json", pa.string()),
]


@pytest.mark.parametrize(("typ", "arrow"), FAST_ARROW + SLOW_ARROW)
def test_encode_arrow_reads_hot_columns_from_the_buffers(typ, arrow):
    """The hot types are read from the Arrow buffers, the others through to_pylist."""
    encoder = _classes("c")[0](cols(typ), tz=BERLIN if typ == "datetime" else UTC)
    batch = pa.record_batch([pa.array([None], arrow)], names=["c0"])
    want = "buffers" if (typ, arrow) in FAST_ARROW else "pylist"
    assert encoder._arrow_sources(batch) == [want]


def test_encode_arrow_decimals_follow_the_context_capitals():
    columns = cols("decimal(20,10)")
    batch = pa.record_batch(
        [pa.array([decimal.Decimal("1E-10")], pa.decimal128(20, 10))], names=["c0"]
    )
    with decimal.localcontext() as ctx:
        ctx.capitals = 0
        want = via_pylist(record_codec.PyRecordEncoder, columns, batch, tz=UTC)
        assert b"1e-10" in want[1]
        assert via_arrow(_classes("c")[0], columns, batch, tz=UTC) == want


def test_encode_arrow_errors_name_column_and_row(impl):
    enc, dec = impl
    columns = [Column("id", "bigint"), Column("n", "int", nullable=False)]
    batch = pa.record_batch(
        [pa.array([1, 2, 3, 4], pa.int64()), pa.array([1, 2, 2**40, 4], pa.int64())],
        names=["id", "n"],
    )
    encoder = enc(columns, tz=UTC)
    out = bytearray()
    with pytest.raises(RecordValidationError, match="out of range for int") as info:
        encoder.encode_arrow(batch, out)
    assert (info.value.column, info.value.row) == ("n", 2) and encoder.count == 2
    assert decode(dec, columns, bytes(out + encoder.footer())) == [[1, 1], [2, 2]]
    nulls = pa.record_batch([pa.array([1, 2]), pa.array([5, None], pa.int32())], names=["id", "n"])
    with pytest.raises(RecordValidationError, match="NOT NULL") as info:
        encoder.encode_arrow(nulls, bytearray())
    assert (info.value.column, info.value.row) == ("n", 1)
    short = pa.record_batch([pa.array([1])], names=["id"])
    with pytest.raises(RecordValidationError, match="row has 1 values"):
        encoder.encode_arrow(short, bytearray())


def test_encode_arrow_accepts_a_table(impl):
    enc, _ = impl
    columns = cols("bigint", "string")
    rows = [(i, str(i)) for i in range(10)]
    table = pa.Table.from_batches([batch_of(columns, rows[:4]), batch_of(columns, rows[4:])])
    assert via_arrow(enc, columns, table, tz=UTC)[1:] == (records(enc, columns, rows), 10)


def test_encode_arrow_extra_columns_and_empty_batches(impl):
    enc, _ = impl
    columns = cols("bigint", "string")
    batch = pa.record_batch(
        [pa.array([1, 2]), pa.array(["a", "b"]), pa.array(["p", "p"])], names=["a", "b", "pt"]
    )
    assert via_arrow(enc, columns, batch, tz=UTC)[1] == records(enc, columns, [(1, "a"), (2, "b")])
    assert via_arrow(enc, columns, batch.slice(0, 0), tz=UTC) == (("ok",), b"", 0)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-1",
        "1.5",
        "123.4567",
        "1E+3",
        "-0E-7",
        "1.000E-7",
        "1E-38",
        "9" * 38,
        "0.000001",
        "-0.0000001",
    ],
)
def test_arrow_decimal_text_is_str_of_decimal(text):
    """The compiled writer formats decimal128 as Python's str(Decimal) does."""
    value = decimal.Decimal(text)
    scale = max(0, -value.as_tuple().exponent)
    columns = cols("decimal(38,38)" if scale == 38 else f"decimal(38,{scale})")
    batch = pa.record_batch([pa.array([value], pa.decimal128(38, scale))], names=["c0"])
    (kind, *_), body, _ = via_arrow(_classes("c")[0], columns, batch, tz=UTC)
    assert kind == "ok"
    stored = pa.array([value], pa.decimal128(38, scale)).to_pylist()[0]
    assert body[2 : 2 + body[1]] == str(stored).encode()
