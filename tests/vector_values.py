"""Converting the golden vectors' JSON values (see tests/vectors/README.md) to and from
the Python values our codecs use."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_provider_odps_tunnel.tunnel.codec import types as t
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column

NEG_NAN = struct.unpack("<d", b"\x00\x00\x00\x00\x00\x00\xf8\xff")[0]


def load_case(vectors: Path, name: str) -> tuple[dict, list[dict]]:
    meta = json.loads((vectors / f"{name}.schema.json").read_text())
    rows = [json.loads(line) for line in (vectors / f"{name}.jsonl").read_text().splitlines()]
    return meta, rows


def case_columns(meta: dict) -> list[Column]:
    return [Column(c["name"], c["type"]) for c in meta["columns"]]


def from_json(value: Any, typ: t.DataType) -> Any:
    if value is None:
        return None
    if typ in (t.float_, t.double):
        if isinstance(value, str):
            return {"NaN": math.nan, "-NaN": NEG_NAN, "Infinity": math.inf}.get(value, -math.inf)
        return float(value)
    if typ == t.binary:
        return bytes.fromhex(value)
    if isinstance(value, dict) and "bytes_hex" in value:
        return bytes.fromhex(value["bytes_hex"])
    if typ == t.datetime:
        return dt.datetime.fromisoformat(value)
    if typ == t.date:
        return dt.date.fromisoformat(value)
    if typ in (t.timestamp, t.timestamp_ntz):
        return pd.Timestamp(value)
    if typ == t.interval_day_time:
        return pd.Timedelta(value["seconds"] * 10**9 + value["nanos"], unit="ns")
    if typ == t.interval_year_month:
        return t.Monthdelta(months=value)
    if isinstance(typ, t.Decimal):
        return decimal.Decimal(value)
    if typ == t.json:
        return value["json"]
    if isinstance(typ, t.Array):
        return [from_json(v, typ.value_type) for v in value]
    if isinstance(typ, t.Map):
        return {from_json(k, typ.key_type): from_json(v, typ.value_type) for k, v in value}
    if isinstance(typ, t.Struct):
        return {k: from_json(value[k], ft) for k, ft in typ.field_types.items()}
    if isinstance(typ, t.Vector):
        return [float(v) for v in value]
    return value


def to_json(value: Any, typ: t.DataType) -> Any:
    if value is None:
        return None
    if typ in (t.float_, t.double):
        if math.isnan(value):
            return "-NaN" if math.copysign(1, value) < 0 else "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if typ == t.binary:
        return value.hex()
    if isinstance(value, bytes):
        return {"bytes_hex": value.hex()}
    if typ == t.datetime:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f").rjust(26, "0")
    if typ == t.date:
        return value.isoformat()
    if typ in (t.timestamp, t.timestamp_ntz):
        base = value.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{base}.{value.microsecond * 1000 + value.nanosecond:09d}"
    if typ == t.interval_day_time:
        seconds, nanos = divmod(value.value, 10**9)
        return {"seconds": seconds, "nanos": nanos}
    if typ == t.interval_year_month:
        return value.months
    if isinstance(typ, t.Decimal):
        return str(value)
    if typ == t.json:
        return {"json": value}
    if isinstance(typ, t.Array):
        return [to_json(v, typ.value_type) for v in value]
    if isinstance(typ, t.Map):
        return [[to_json(k, typ.key_type), to_json(v, typ.value_type)] for k, v in value.items()]
    if isinstance(typ, t.Struct):
        return {k: to_json(value[k], ft) for k, ft in typ.field_types.items()}
    return value


def minimal_crc_varints(data: bytes, rows: list[dict], footer_span: list[int]) -> bytes:
    """Rewrite every record CRC and the stream checksum as a minimal (<= 5 byte) varint.

    Works from the byte spans the vectors record, not from our decoder, so the expected
    bytes do not depend on the code under test.
    """
    end_record = bytes.fromhex("80c0ff7f")
    checksum_tag = bytes.fromhex("f8ffff7f")
    out = bytearray()
    for row in rows:
        start, end = row["span_c"]
        record = data[start:end]
        cut = record.rindex(end_record) + len(end_record)
        out += record[:cut] + _minimal(record[cut:])
    start, end = footer_span
    footer = data[start:end]
    cut = footer.rindex(checksum_tag) + len(checksum_tag)
    out += footer[:cut] + _minimal(footer[cut:])
    return bytes(out)


def _minimal(varint_bytes: bytes) -> bytes:
    value = 0
    for shift, byte in enumerate(varint_bytes):
        value |= (byte & 0x7F) << (7 * shift)
    value &= 0xFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
