"""Where upload data comes from: files in object storage, or a Python callable.

A source is cut into ``SourcePiece`` objects, small JSON-able references that travel
through XCom instead of data: a whole file, some row groups of a Parquet file, or one part
of a callable. Files are reached through Airflow's ``ObjectStoragePath``, so any
filesystem with an Airflow connection works (local, S3, GCS, OSS via fsspec ...), and
every file read is reported to Airflow's hook-lineage collector as an input.

Formats: Parquet (``.parquet``, ``.pq``), CSV (``.csv``), JSON lines (``.jsonl``,
``.ndjson``, ``.json``) and Arrow IPC files or streams (``.arrow``, ``.feather``, ``.ipc``).
CSV and JSON lines are parsed with the target table's column types; CSV files have a header
row, and an empty CSV field is NULL (the ``tunnel upload`` command's default).

A callable source is called as ``source_callable(part, parts)`` and yields
``pyarrow.RecordBatch``, ``pyarrow.Table`` or pandas ``DataFrame`` objects; ``part`` runs
over ``0 .. parts-1``. It must yield the same rows for the same part every time it is
called, because a retried task calls it again.

The operators that load data take these as the same keyword arguments, defined once here:
``LoadSource`` holds them (their defaults and documentation), and the mixins
``FileSourceMixin`` and ``LoadSourceMixin`` set them on an operator, whose ``__init__``
lists them and passes them on (see ``operators.base``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pyarrow as pa
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.operators.base import OperatorOptions, option

__all__ = [
    "SOURCE_FORMATS",
    "SOURCE_CHOICE_ERROR",
    "SourceCallable",
    "SourcePiece",
    "LoadSource",
    "FileSourceMixin",
    "LoadSourceMixin",
    "list_source_pieces",
    "callable_pieces",
    "source_pieces_for",
    "read_piece",
    "read_pieces",
    "keep_table_columns",
]

#: A callable source: ``(part, parts) -> iterable of RecordBatch | Table | DataFrame``.
SourceCallable = Callable[[int, int], Iterable[Any]]

SOURCE_FORMATS = ("parquet", "csv", "jsonl", "arrow")

_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
_GLOB_CHARS = frozenset("*?[")
DEFAULT_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class SourcePiece:
    """One unit of input, as a reference.

    Either a file (``uri``, the ``conn_id`` to reach it, its ``format``, and for a large
    Parquet file the ``row_groups`` this piece covers) or part ``part`` of ``parts`` of a
    callable.
    ``nbytes`` is the piece's size in storage (0 when unknown) and ``rows`` its row count
    when the file's metadata tells it cheaply.
    """

    uri: str | None = None
    conn_id: str | None = None
    format: str | None = None
    row_groups: tuple[int, ...] | None = None
    part: int | None = None
    parts: int | None = None
    nbytes: int = 0
    rows: int | None = None

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.part is None):
            raise ValueError("a source piece is either a file (uri) or a callable part")
        if self.uri is not None and self.format not in SOURCE_FORMATS:
            raise ValueError(f"unknown source format {self.format!r}; use one of {SOURCE_FORMATS}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.row_groups is not None:
            data["row_groups"] = list(self.row_groups)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def of(cls, value: SourcePiece | dict[str, Any]) -> SourcePiece:
        if isinstance(value, SourcePiece):
            return value
        data = dict(value)
        if data.get("row_groups") is not None:
            data["row_groups"] = tuple(data["row_groups"])
        return cls(**data)

    def fingerprint(self) -> str:
        """A stable digest of what this piece refers to."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        if self.part is not None:
            return f"callable part {self.part} of {self.parts}"
        groups = (
            f" row groups {self.row_groups[0]}..{self.row_groups[-1]}" if self.row_groups else ""
        )
        return f"{self.uri}{groups}"


def _storage_path(uri: str, conn_id: str | None) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri, conn_id=conn_id)


def _format_of(path: Any, source_format: str | None) -> str:
    if source_format:
        if source_format not in SOURCE_FORMATS:
            raise ValueError(
                f"unknown source format {source_format!r}; use one of {SOURCE_FORMATS}"
            )
        return source_format
    name = path.name.lower()
    for suffix in (s for s in _SUFFIXES if name.endswith(s)):
        return _SUFFIXES[suffix]
    raise ValueError(
        f"cannot tell the format of {path} from its name; pass source_format "
        f"(one of {SOURCE_FORMATS})"
    )


def _is_data_file(path: Any) -> bool:
    """Files a directory listing includes: not hidden, not markers like ``_SUCCESS``."""
    return not path.name.startswith((".", "_")) and path.is_file()


def _expand(source: str, conn_id: str | None) -> list[Any]:
    """The files a source string names: a file, every data file below a directory, or the
    matches of a glob pattern (``*``, ``?``, ``[..]``, ``**``)."""
    if any(c in _GLOB_CHARS for c in source):
        scheme, sep, rest = source.rpartition("://")
        parts = rest.split("/")
        first = next(i for i, p in enumerate(parts) if any(c in _GLOB_CHARS for c in p))
        base = "/".join(parts[:first]) or "/"
        pattern = "/".join(parts[first:])
        root = _storage_path(f"{scheme}{sep}{base}", conn_id)
        return [p for p in root.glob(pattern) if _is_data_file(p)]
    path = _storage_path(source, conn_id)
    if path.is_dir():
        return [p for p in path.rglob("*") if _is_data_file(p)]
    if not path.exists():
        raise FileNotFoundError(f"source {source} does not exist")
    return [path]


def list_source_pieces(
    sources: str | Sequence[str],
    *,
    conn_id: str | None = None,
    source_format: str | None = None,
    split_bytes: int | None = None,
) -> list[SourcePiece]:
    """The pieces of ``sources`` (files, directories or glob patterns), sorted by URI.

    A Parquet file larger than ``split_bytes`` is cut into pieces of whole row groups of
    about ``split_bytes`` each, so that one large file can still feed several blocks.
    """
    if isinstance(sources, str):
        sources = [sources]
    files: dict[str, Any] = {}
    for source in sources:
        for path in _expand(source, conn_id):
            files.setdefault(str(path), path)
    pieces: list[SourcePiece] = []
    for uri in sorted(files):
        path = files[uri]
        fmt = _format_of(path, source_format)
        size = int(path.stat().st_size)
        if fmt == "parquet" and split_bytes and size > 2 * split_bytes:
            pieces.extend(_parquet_pieces(path, uri, conn_id, size, split_bytes))
        else:
            pieces.append(SourcePiece(uri=uri, conn_id=conn_id, format=fmt, nbytes=size))
    return pieces


def _parquet_pieces(
    path: Any, uri: str, conn_id: str | None, size: int, split_bytes: int
) -> list[SourcePiece]:
    import pyarrow.parquet as pq

    with path.open("rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    groups = [
        (
            i,
            meta.row_group(i).num_rows,
            sum(
                meta.row_group(i).column(c).total_compressed_size
                for c in range(meta.row_group(i).num_columns)
            ),
        )
        for i in range(meta.num_row_groups)
    ]
    total_compressed = sum(g[2] for g in groups) or 1
    pieces: list[SourcePiece] = []
    current: list[tuple[int, int, int]] = []

    def flush() -> None:
        if current:
            compressed = sum(g[2] for g in current)
            pieces.append(
                SourcePiece(
                    uri=uri,
                    conn_id=conn_id,
                    format="parquet",
                    row_groups=tuple(g[0] for g in current),
                    nbytes=max(1, size * compressed // total_compressed),
                    rows=sum(g[1] for g in current),
                )
            )
            current.clear()

    for group in groups:
        current.append(group)
        if sum(g[2] for g in current) >= split_bytes:
            flush()
    flush()
    return pieces


def callable_pieces(parts: int) -> list[SourcePiece]:
    """The pieces of a callable source split into ``parts`` parts."""
    if parts < 1:
        raise ValueError("a callable source needs at least one part")
    return [SourcePiece(part=i, parts=parts) for i in range(parts)]


def read_piece(
    piece: SourcePiece,
    *,
    schema: pa.Schema | None = None,
    source_callable: SourceCallable | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """The rows of ``piece`` as record batches, streamed (never the whole file at once).

    ``schema`` (the target table's Arrow schema) gives CSV and JSON lines their column
    types; columns absent from it are parsed by inference.
    """
    if piece.part is not None:
        if source_callable is None:
            raise ValueError("a callable source piece needs the source_callable")
        yield from _as_batches(source_callable(piece.part, piece.parts or 1))
        return
    path = _storage_path(piece.uri, piece.conn_id)
    with path.open("rb") as fh:
        if piece.format == "parquet":
            yield from _read_parquet(fh, piece.row_groups, batch_rows)
        elif piece.format == "csv":
            yield from _read_csv(fh, schema, batch_rows)
        elif piece.format == "jsonl":
            yield from _read_jsonl(fh, schema, batch_rows)
        else:
            yield from _read_arrow(fh)


def read_pieces(pieces: Iterable[SourcePiece], **kwargs: Any) -> Iterator[pa.RecordBatch]:
    """The rows of several pieces, one after the other."""
    for piece in pieces:
        yield from read_piece(piece, **kwargs)


def keep_table_columns(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Drop the columns of each batch that the table does not have (matched ignoring case)."""
    wanted = {name.lower() for name in schema.names}
    for batch in batches:
        keep = [i for i, name in enumerate(batch.schema.names) if name.lower() in wanted]
        yield batch if len(keep) == batch.num_columns else batch.select(keep)


# -- the source options of the operators that load data ---------------------------------

#: The error of a source that is both files and a callable, or neither.
SOURCE_CHOICE_ERROR = (
    "give either source (files) or a callable source (source_callable with source_parts; "
    "an upload plan takes only source_parts)"
)


def _check_choice(files: bool, callable_source: bool) -> None:
    if files == callable_source:
        raise AirflowFailException(SOURCE_CHOICE_ERROR)


def _files_of(
    source: str | Sequence[str],
    conn_id: str | None,
    source_format: str | None,
    *,
    split_bytes: int | None = None,
    allow_empty: bool = False,
) -> list[SourcePiece]:
    pieces = list_source_pieces(
        source, conn_id=conn_id, source_format=source_format, split_bytes=split_bytes
    )
    if not pieces and not allow_empty:
        raise AirflowFailException(f"no source files found in {source!r}")
    return pieces


def source_pieces_for(
    source: str | Sequence[str] | None,
    source_conn_id: str | None,
    source_format: str | None,
    source_callable: SourceCallable | None,
    source_parts: int | None,
) -> list[SourcePiece]:
    """The pieces of an operator's source: files, or the parts of a callable."""
    _check_choice(source is not None, source_callable is not None)
    if source_callable is not None:
        return callable_pieces(source_parts or 1)
    return _files_of(source, source_conn_id, source_format)


@dataclass(frozen=True)
class LoadSource(OperatorOptions):
    """Where the rows of a load come from and how they are read: the source options of the
    operators that load data, defined once.

    ``ObjectStorageToOdpsOperator``, ``OdpsUpsertOperator`` and ``OdpsStreamUploadOperator``
    take the source as files or a callable (``LoadSourceMixin``); the block-upload chain
    splits it: ``OdpsPlanUploadOperator`` takes the files (``FileSourceMixin``) or
    ``source_parts``, and ``OdpsWriteBlocksOperator`` the callable and how to read. Each
    operator builds one from its rendered attributes (``LoadSource.of(self)``) when it runs.
    "(templated)" marks the options that every operator taking them templates.

    :param source: a file, a directory (every file below it but hidden ones and markers like
        ``_SUCCESS``), a glob pattern, or a list of them, as ``ObjectStoragePath`` URIs
        (``s3://...``, ``file:///...``) (templated).
    :param source_conn_id: the Airflow connection of the source's filesystem (templated).
    :param source_format: ``parquet``, ``csv``, ``jsonl`` or ``arrow``; by default taken
        from each file's suffix (templated).
    :param source_callable: instead of files, a callable ``(part, parts)`` yielding Arrow
        batches or tables or DataFrames; it must give the same rows for a part every time,
        since a retry calls it again.
    :param source_parts: the number of parts the callable is called for (1 by default).
        An upload plan, whose writers hold the callable, takes only this (templated there).
    :param ignore_extra_columns: drop source columns the table does not have instead of
        failing.
    :param batch_rows: rows per batch read from files.
    """

    source: str | Sequence[str] | None = option(None, templated=True)
    source_conn_id: str | None = option(None, templated=True)
    source_format: str | None = option(None, templated=True)
    source_callable: SourceCallable | None = None
    source_parts: int | None = None
    ignore_extra_columns: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS

    @property
    def parts(self) -> int | None:
        """The number of callable parts, None for files: ``source_parts``, which is 1 by
        default when the callable is given (an upload plan, whose writers hold the
        callable, gives only ``source_parts``)."""
        if self.source_callable is not None:
            return int(self.source_parts or 1)
        return None if self.source_parts is None else int(self.source_parts)

    def pieces(self) -> list[SourcePiece]:
        """The pieces to read one by one: each file, or each part of the callable."""
        return source_pieces_for(
            self.source,
            self.source_conn_id,
            self.source_format,
            self.source_callable,
            self.source_parts,
        )

    def plan_pieces(self, *, split_bytes: int, allow_empty: bool = False) -> list[SourcePiece]:
        """The pieces to plan blocks from: the files (a Parquet file larger than twice
        ``split_bytes`` cut by row groups) or ``parts`` callable parts. The callable itself
        may be elsewhere (an upload plan's writers hold it): ``source_parts`` alone names a
        callable source."""
        parts = self.parts
        _check_choice(self.source is not None, parts is not None)
        if parts is not None:
            return callable_pieces(parts)
        return _files_of(
            self.source,
            self.source_conn_id,
            self.source_format,
            split_bytes=split_bytes,
            allow_empty=allow_empty,
        )

    def read(self, pieces: Iterable[SourcePiece], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """The rows of ``pieces`` for a table of Arrow ``schema``, streamed."""
        batches = read_pieces(
            pieces,
            schema=schema,
            source_callable=self.source_callable,
            batch_rows=self.batch_rows,
        )
        return keep_table_columns(batches, schema) if self.ignore_extra_columns else batches


class FileSourceMixin(BaseOperator):
    """Sets the files of an operator's source: ``source``, ``source_conn_id`` and
    ``source_format`` (documented in ``LoadSource``).

    The operator's ``__init__`` lists them, with ``LoadSource``'s defaults, and passes each
    on. The mixin declares no ``template_fields``: the operator lists ``templated_options``
    (all three) in its own.
    """

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("source", "source_conn_id", "source_format")

    def __init__(
        self,
        *,
        source: str | Sequence[str] | None,
        source_conn_id: str | None,
        source_format: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.source_conn_id = source_conn_id
        self.source_format = source_format


class LoadSourceMixin(FileSourceMixin):
    """Sets a whole source on an operator, files or a callable: the options of
    ``FileSourceMixin`` and ``source_callable``, ``source_parts`` and ``batch_rows``
    (documented in ``LoadSource``), listed and passed on by the operator's ``__init__`` as
    there. Its ``templated_options`` are ``FileSourceMixin``'s: the callable's options are
    not templated.
    """

    def __init__(
        self,
        *,
        source_callable: SourceCallable | None,
        source_parts: int | None,
        batch_rows: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_callable = source_callable
        self.source_parts = source_parts
        self.batch_rows = batch_rows


def _as_batches(items: Iterable[Any]) -> Iterator[pa.RecordBatch]:
    for item in items:
        if isinstance(item, pa.RecordBatch):
            yield item
        elif isinstance(item, pa.Table):
            yield from item.to_batches()
        else:
            import pandas as pd

            if not isinstance(item, pd.DataFrame):
                raise TypeError(
                    "a source callable must yield pyarrow RecordBatch or Table or pandas "
                    f"DataFrame objects, not {type(item).__name__}"
                )
            yield from pa.Table.from_pandas(item, preserve_index=False).to_batches()


def _read_parquet(
    fh: Any, row_groups: tuple[int, ...] | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(fh)
    groups = list(row_groups) if row_groups is not None else None
    yield from parquet.iter_batches(batch_size=batch_rows, row_groups=groups)


def _column_types(schema: pa.Schema | None) -> dict[str, pa.DataType]:
    """Types a text parser can produce directly (nested and temporal ones are converted later)."""
    if schema is None:
        return {}
    simple = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string)
    return {f.name: f.type for f in schema if any(check(f.type) for check in simple)}


def _read_csv(fh: Any, schema: pa.Schema | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        fh,
        read_options=pcsv.ReadOptions(block_size=max(1 << 20, batch_rows * 64)),
        # An empty field is NULL, as with the MaxCompute CLI's default null indicator.
        convert_options=pcsv.ConvertOptions(
            column_types=_column_types(schema), strings_can_be_null=True
        ),
    )
    yield from reader


def _read_jsonl(fh: Any, schema: pa.Schema | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.json as pjson

    types = _column_types(schema)
    parse = pjson.ParseOptions(
        explicit_schema=pa.schema([pa.field(n, t) for n, t in types.items()]) if types else None
    )
    reader = pjson.open_json(
        fh,
        read_options=pjson.ReadOptions(block_size=max(1 << 20, batch_rows * 64)),
        parse_options=parse,
    )
    yield from reader


def _read_arrow(fh: Any) -> Iterator[pa.RecordBatch]:
    import pyarrow.ipc as ipc

    try:
        reader = ipc.open_file(fh)
    except pa.ArrowInvalid:
        fh.seek(0)
        yield from ipc.open_stream(fh)
        return
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)
