"""Source listing and reading: formats, directories, globs, Parquet splits, callables."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.operators.sources import (
    DEFAULT_BATCH_ROWS,
    SOURCE_CHOICE_ERROR,
    LoadSource,
    SourcePiece,
    callable_pieces,
    keep_table_columns,
    list_source_pieces,
    read_piece,
    read_pieces,
    source_pieces_for,
)

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
TABLE = pa.table({"id": [1, 2, 3], "name": ["a", "b", None], "score": [0.5, 1.5, 2.5]})


def _read(pieces, **kwargs) -> pa.Table:
    return pa.Table.from_batches(list(read_pieces(pieces, **kwargs)))


@pytest.fixture
def formats_dir(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    pq.write_table(TABLE, d / "a.parquet")
    (d / "b.csv").write_text("id,name,score\n1,a,0.5\n2,b,1.5\n3,,2.5\n")
    (d / "c.jsonl").write_text("\n".join(json.dumps(r) for r in TABLE.to_pylist()) + "\n")
    with ipc.new_file(d / "sub" / "d.arrow", TABLE.schema) as w:
        w.write_table(TABLE)
    with ipc.new_stream(d / "sub" / "e.ipc", TABLE.schema) as w:
        w.write_table(TABLE)
    (d / "_SUCCESS").write_text("")
    (d / ".hidden.csv").write_text("x\n")
    return d


def test_a_directory_lists_every_data_file_sorted(formats_dir):
    pieces = list_source_pieces(formats_dir.as_uri())
    names = [p.uri.rsplit("/", 1)[-1] for p in pieces]
    assert names == ["a.parquet", "b.csv", "c.jsonl", "d.arrow", "e.ipc"]
    assert [p.format for p in pieces] == ["parquet", "csv", "jsonl", "arrow", "arrow"]
    assert all(p.nbytes > 0 for p in pieces)


@pytest.mark.parametrize("name", ["a.parquet", "b.csv", "c.jsonl", "sub/d.arrow", "sub/e.ipc"])
def test_each_format_reads_the_same_rows(formats_dir, name):
    (piece,) = list_source_pieces(str(formats_dir / name))
    data = _read([piece], schema=SCHEMA)
    assert data.select(["id", "name", "score"]).to_pylist() == TABLE.to_pylist()


def test_globs_and_lists_of_sources(formats_dir):
    pieces = list_source_pieces(
        [f"{formats_dir.as_uri()}/**/*.arrow", str(formats_dir / "a.parquet")]
    )
    assert [p.uri.rsplit("/", 1)[-1] for p in pieces] == ["a.parquet", "d.arrow"]
    assert list_source_pieces(f"{formats_dir.as_uri()}/*.none") == []


def test_unknown_suffix_and_missing_files_are_errors(tmp_path):
    (tmp_path / "data.txt").write_text("id\n1\n")
    with pytest.raises(ValueError, match="source_format"):
        list_source_pieces(str(tmp_path / "data.txt"))
    (piece,) = list_source_pieces(str(tmp_path / "data.txt"), source_format="csv")
    assert _read([piece]).column("id").to_pylist() == [1]
    with pytest.raises(FileNotFoundError):
        list_source_pieces(str(tmp_path / "missing.parquet"))
    with pytest.raises(ValueError, match="format"):
        list_source_pieces(str(tmp_path / "data.txt"), source_format="xml")


def test_a_large_parquet_file_is_split_by_row_groups(tmp_path):
    big = pa.table({"id": list(range(100_000)), "pad": ["x" * 20] * 100_000})
    pq.write_table(big, tmp_path / "big.parquet", row_group_size=10_000, compression="none")
    size = (tmp_path / "big.parquet").stat().st_size
    pieces = list_source_pieces(str(tmp_path / "big.parquet"), split_bytes=size // 5)
    assert len(pieces) > 1
    groups = [g for p in pieces for g in p.row_groups]
    assert groups == list(range(10))
    assert sum(p.rows for p in pieces) == 100_000
    data = _read(pieces)
    assert data.column("id").to_pylist() == list(range(100_000))


def test_callable_sources_yield_batches_tables_and_frames():
    def source(part, parts):
        yield pa.record_batch({"id": [part]})
        yield pa.table({"id": [part + 10]})
        yield pd.DataFrame({"id": [part + 100]})

    pieces = callable_pieces(2)
    data = _read(pieces, source_callable=source)
    assert data.column("id").to_pylist() == [0, 10, 100, 1, 11, 101]
    with pytest.raises(ValueError, match="source_callable"):
        list(read_piece(pieces[0]))
    with pytest.raises(TypeError, match="DataFrame"):
        list(read_piece(pieces[0], source_callable=lambda part, parts: [[1, 2]]))
    with pytest.raises(ValueError):
        callable_pieces(0)


def test_pieces_are_json_references():
    piece = SourcePiece(uri="s3://b/k.parquet", conn_id="aws", format="parquet", row_groups=(1, 2))
    assert SourcePiece.of(json.loads(json.dumps(piece.to_dict()))) == piece
    assert piece.fingerprint() == SourcePiece.of(piece.to_dict()).fingerprint()
    assert "row groups 1..2" in piece.describe()
    with pytest.raises(ValueError):
        SourcePiece()
    with pytest.raises(ValueError):
        SourcePiece(uri="x", format="xml")


def test_keep_table_columns_drops_extra_columns_ignoring_case():
    batch = pa.record_batch({"ID": [1], "Name": ["a"], "extra": [True]})
    (kept,) = keep_table_columns([batch], SCHEMA)
    assert kept.schema.names == ["ID", "Name"]


def test_text_formats_take_the_column_types_of_the_table(tmp_path):
    (tmp_path / "codes.csv").write_text("code,n\n007,1\n042,\n")
    (tmp_path / "codes.jsonl").write_text('{"code": "007", "n": 1}\n')
    schema = pa.schema([("code", pa.string()), ("n", pa.int64())])
    for name in ("codes.csv", "codes.jsonl"):
        (piece,) = list_source_pieces(str(tmp_path / name))
        data = _read([piece], schema=schema)
        assert data.column("code").to_pylist()[0] == "007"
    (piece,) = list_source_pieces(str(tmp_path / "codes.csv"))
    assert _read([piece], schema=schema).column("n").to_pylist() == [1, None]


def test_source_pieces_for_lists_files_or_callable_parts(formats_dir, tmp_path):
    pieces = source_pieces_for(str(formats_dir), "fs", None, None, None)
    assert [p.format for p in pieces] == ["parquet", "csv", "jsonl", "arrow", "arrow"]
    assert {p.conn_id for p in pieces} == {"fs"}
    # A callable ignores the files' options; its parts default to one.
    assert source_pieces_for(None, None, None, len, None) == callable_pieces(1)
    assert source_pieces_for(None, None, None, len, 3) == callable_pieces(3)
    for bad in [(None, None, None, None, 2), (str(formats_dir), None, None, len, None)]:
        with pytest.raises(AirflowFailException) as err:
            source_pieces_for(*bad)
        assert str(err.value) == SOURCE_CHOICE_ERROR
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirflowFailException, match="no source files found"):
        source_pieces_for(str(tmp_path / "empty"), None, None, None, None)


def test_load_source_takes_what_an_operator_holds_and_defaults_the_rest():
    writer = SimpleNamespace(source_callable=len, ignore_extra_columns=True, batch_rows=5)
    assert LoadSource.of(writer) == LoadSource(
        source_callable=len, ignore_extra_columns=True, batch_rows=5
    )
    assert LoadSource.of(object()) == LoadSource()
    assert LoadSource().batch_rows == DEFAULT_BATCH_ROWS
    # parts: 1 by default with a callable; a plan (no callable) counts its source_parts,
    # which may come rendered from a template as text.
    assert LoadSource(source_callable=len).parts == 1
    assert LoadSource(source_parts="4").parts == 4
    assert LoadSource(source="x").parts is None


def test_load_source_plans_files_or_parts_and_rejects_both_or_neither(formats_dir, tmp_path):
    assert len(LoadSource(source=str(formats_dir)).plan_pieces(split_bytes=1 << 20)) == 5
    assert LoadSource(source_parts=2).plan_pieces(split_bytes=1) == callable_pieces(2)
    assert LoadSource(source_callable=len).plan_pieces(split_bytes=1) == callable_pieces(1)
    for bad in [LoadSource(), LoadSource(source=str(formats_dir), source_parts=2)]:
        with pytest.raises(AirflowFailException) as err:
            bad.plan_pieces(split_bytes=1)
        assert str(err.value) == SOURCE_CHOICE_ERROR
    (tmp_path / "empty").mkdir()
    empty = LoadSource(source=str(tmp_path / "empty"))
    assert empty.plan_pieces(split_bytes=1, allow_empty=True) == []
    with pytest.raises(AirflowFailException, match="no source files found"):
        empty.plan_pieces(split_bytes=1)


def test_load_source_reads_with_its_callable_batch_size_and_column_handling():
    def rows(part, parts):
        yield pa.table({"id": [part, part], "extra": [True, False]})

    schema = pa.schema([("id", pa.int64())])
    pieces = callable_pieces(2)
    data = pa.Table.from_batches(list(LoadSource(source_callable=rows).read(pieces, schema)))
    assert data.schema.names == ["id", "extra"]  # the table's writer reports the extra column
    kept = LoadSource(source_callable=rows, ignore_extra_columns=True).read(pieces, schema)
    data = pa.Table.from_batches(list(kept))
    assert (data.schema.names, data.column("id").to_pylist()) == (["id"], [0, 0, 1, 1])
