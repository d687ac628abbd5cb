"""Where upload data comes from: files in object storage, or a Python callable.

A source is cut into ``SourcePiece`` objects, small JSON-able references that travel
through XCom instead of data: a whole file, some row groups of a Parquet file, or one part
of a callable. Files are reached through Airflow's ``ObjectStoragePath``, so any
filesystem with an Airflow connection works (local, S3, GCS, OSS via fsspec ...), and
every file read is reported to Airflow's hook-lineage collector as an input.

Formats: Parquet (``.parquet``, ``.pq``), ORC (``.orc``), CSV (``.csv``), JSON lines
(``.jsonl``, ``.ndjson``, ``.json``) and Arrow IPC files or streams (``.arrow``,
``.feather``, ``.ipc``). CSV and JSON lines may be compressed (``.gz``, ``.bz2``, ``.zst``
after the format's suffix, or ``source_compression``) and are read as a stream. They are
parsed with the target table's column types; by default a CSV file has a header row, and an
empty CSV field is NULL (the ``tunnel upload`` command's default); ``csv_options`` changes
both, and the delimiter, quoting, escaping, rows to skip and encoding (``CsvOptions``).
A ``column_mapping`` renames source columns to table columns before the rows are written.

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
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import pyarrow as pa
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_odps_tunnel.operators.base import OperatorOptions, option

__all__ = [
    "SOURCE_FORMATS",
    "SOURCE_COMPRESSIONS",
    "SOURCE_CHOICE_ERROR",
    "CsvOptions",
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
    "rename_columns",
    "listing_fingerprint",
]

#: A callable source: ``(part, parts) -> iterable of RecordBatch | Table | DataFrame``.
SourceCallable = Callable[[int, int], Iterable[Any]]

SOURCE_FORMATS = ("parquet", "csv", "jsonl", "arrow", "orc")
#: Stream compressions of text sources (pyarrow's codec names), by file suffix.
SOURCE_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_TEXT_FORMATS = ("csv", "jsonl")

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
    ".orc": "orc",
}
_GLOB_CHARS = frozenset("*?[")
DEFAULT_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class SourcePiece:
    """One unit of input, as a reference.

    Either a file (``uri``, the ``conn_id`` to reach it, its ``format``, the stream
    ``compression`` of a text file, and for a large Parquet file the ``row_groups`` this
    piece covers) or part ``part`` of ``parts`` of a callable.
    ``nbytes`` is the piece's size in storage (0 when unknown), ``rows`` its row count
    when the file's metadata tells it cheaply, and ``version`` what the storage says about
    the file's content (its ETag, else its modification time), so a replaced file of the
    same name and size is a different piece.
    """

    uri: str | None = None
    conn_id: str | None = None
    format: str | None = None
    row_groups: tuple[int, ...] | None = None
    part: int | None = None
    parts: int | None = None
    nbytes: int = 0
    rows: int | None = None
    compression: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.part is None):
            raise ValueError("a source piece is either a file (uri) or a callable part")
        if self.uri is not None and self.format not in SOURCE_FORMATS:
            raise ValueError(f"unknown source format {self.format!r}; use one of {SOURCE_FORMATS}")
        if self.compression is not None:
            if self.compression not in SOURCE_COMPRESSIONS.values():
                raise ValueError(
                    f"unknown source compression {self.compression!r} of {self.uri}; use one "
                    f"of {sorted(set(SOURCE_COMPRESSIONS.values()))}"
                )
            if self.format not in _TEXT_FORMATS:
                raise ValueError(
                    f"{self.uri}: only CSV and JSON lines files are read compressed, not "
                    f"{self.format} (whose codecs are inside the file)"
                )

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


def _compression_of(path: Any, source_compression: str | None) -> tuple[str, str | None]:
    """The file's name without a compression suffix, and its stream compression: the one
    given (``"none"`` for none), else the suffix's."""
    name = path.name.lower()
    suffix = next((s for s in SOURCE_COMPRESSIONS if name.endswith(s)), None)
    stem = name[: -len(suffix)] if suffix else name
    if source_compression:
        return stem, None if source_compression == "none" else source_compression
    return stem, SOURCE_COMPRESSIONS[suffix] if suffix else None


def _version_of(info: Any) -> str | None:
    """A file's content version from its listing entry: the ETag where the storage has one
    (S3, GCS, OSS), else the modification time."""
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key) if hasattr(info, "get") else None
        if value is not None:
            return str(value)
    return None


def _format_of(path: Any, source_format: str | None, name: str | None = None) -> str:
    if source_format:
        if source_format not in SOURCE_FORMATS:
            raise ValueError(
                f"unknown source format {source_format!r}; use one of {SOURCE_FORMATS}"
            )
        return source_format
    name = name or path.name.lower()
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
    source_compression: str | None = None,
) -> list[SourcePiece]:
    """The pieces of ``sources`` (files, directories or glob patterns), sorted by URI.

    A Parquet file larger than ``split_bytes`` is cut into pieces of whole row groups of
    about ``split_bytes`` each, so that one large file can still feed several blocks.
    A text file's compression is ``source_compression``, or taken from its suffix.
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
        stem, compression = _compression_of(path, source_compression)
        fmt = _format_of(path, source_format, stem)
        info = path.stat()
        size = int(info.st_size)
        if fmt == "parquet" and split_bytes and size > 2 * split_bytes and not compression:
            pieces.extend(_parquet_pieces(path, uri, conn_id, size, split_bytes))
        else:
            pieces.append(
                SourcePiece(
                    uri=uri,
                    conn_id=conn_id,
                    format=fmt,
                    nbytes=size,
                    compression=compression,
                    version=_version_of(info),
                )
            )
    return pieces


def listing_fingerprint(pieces: Iterable[SourcePiece]) -> str:
    """A digest of a source listing (names, sizes, content versions, row groups): equal
    fingerprints mean the same files, unchanged."""
    text = json.dumps([p.to_dict() for p in pieces], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
                    version=_version_of(path.stat()),
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
    csv_options: CsvOptions | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of ``piece`` as record batches, streamed (never the whole file at once).

    ``schema`` (the target table's Arrow schema, its fields named as in the source) gives
    CSV and JSON lines their column types; columns absent from it are parsed by inference.
    """
    if piece.part is not None:
        if source_callable is None:
            raise ValueError("a callable source piece needs the source_callable")
        yield from _as_batches(source_callable(piece.part, piece.parts or 1))
        return
    path = _storage_path(piece.uri, piece.conn_id)
    with path.open("rb") as raw:
        fh = pa.CompressedInputStream(raw, piece.compression) if piece.compression else raw
        if piece.format == "parquet":
            yield from _read_parquet(fh, piece.row_groups, batch_rows)
        elif piece.format == "orc":
            yield from _read_orc(fh)
        elif piece.format == "csv":
            yield from _read_csv(fh, schema, batch_rows, csv_options or CsvOptions())
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


def rename_columns(
    batches: Iterable[pa.RecordBatch], mapping: dict[str, str]
) -> Iterator[pa.RecordBatch]:
    """Rename the columns of each batch as ``mapping`` (source column -> table column)
    says, source names matched ignoring case; other columns keep their names."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    for batch in batches:
        names = [lowered.get(n.lower(), n) for n in batch.schema.names]
        yield batch if names == batch.schema.names else batch.rename_columns(names)


@dataclass(frozen=True)
class CsvOptions:
    """How CSV files are read (the ``csv_options`` of a load, a dict of these keys).

    :param delimiter: the field separator.
    :param quote_char: the quoting character, or False for no quoting.
    :param escape_char: the escape character inside fields, or False for none.
    :param null_values: the strings that mean NULL (an empty field by default).
    :param header: whether the first row (after ``skip_rows``) names the columns; without
        one, ``column_names`` name them, or the table's columns in order.
    :param column_names: the column names of a file without a header.
    :param skip_rows: rows to skip at the start of each file, before the header.
    :param encoding: the text encoding of the files.
    """

    delimiter: str = ","
    quote_char: str | bool = '"'
    escape_char: str | bool = False
    null_values: tuple[str, ...] = ("",)
    header: bool = True
    column_names: tuple[str, ...] | None = None
    skip_rows: int = 0
    encoding: str = "utf8"

    @classmethod
    def of(cls, value: CsvOptions | dict[str, Any] | None) -> CsvOptions:
        """Accept the options or their dict form; unknown keys are an error naming them."""
        if value is None or isinstance(value, CsvOptions):
            return value or cls()
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown csv_options {sorted(unknown)}; use {sorted(cls.__dataclass_fields__)}"
            )
        data = dict(value)
        if isinstance(data.get("null_values"), str):
            data["null_values"] = (data["null_values"],)
        for key in ("null_values", "column_names"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


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
    source_compression: str | None = None,
) -> list[SourcePiece]:
    pieces = list_source_pieces(
        source,
        conn_id=conn_id,
        source_format=source_format,
        split_bytes=split_bytes,
        source_compression=source_compression,
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
    source_compression: str | None = None,
) -> list[SourcePiece]:
    """The pieces of an operator's source: files, or the parts of a callable."""
    _check_choice(source is not None, source_callable is not None)
    if source_callable is not None:
        return callable_pieces(source_parts or 1)
    return _files_of(source, source_conn_id, source_format, source_compression=source_compression)


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
    :param source_compression: the stream compression of CSV and JSON lines files
        (``"gzip"``, ``"bz2"``, ``"zstd"``, or ``"none"``); by default taken from each
        file's suffix (``.gz``, ``.bz2``, ``.zst``).
    :param csv_options: how CSV files are read, a dict of ``CsvOptions``' fields
        (delimiter, quote_char, escape_char, null_values, header, column_names, skip_rows,
        encoding).
    :param column_mapping: source column -> table column, for sources whose column names
        differ from the table's.
    """

    source: str | Sequence[str] | None = option(None, templated=True)
    source_conn_id: str | None = option(None, templated=True)
    source_format: str | None = option(None, templated=True)
    source_callable: SourceCallable | None = None
    source_parts: int | None = None
    ignore_extra_columns: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    source_compression: str | None = None
    csv_options: dict[str, Any] | None = None
    column_mapping: dict[str, str] | None = None

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
            self.source_compression,
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
            source_compression=self.source_compression,
        )

    def read(self, pieces: Iterable[SourcePiece], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """The rows of ``pieces`` for a table of Arrow ``schema``, streamed: read with the
        table's types (under the source's column names), renamed by ``column_mapping``,
        and without the columns the table lacks if ``ignore_extra_columns``."""
        mapping = self.column_mapping or {}
        back = {v.lower(): k for k, v in mapping.items()}
        source_schema = pa.schema([f.with_name(back.get(f.name.lower(), f.name)) for f in schema])
        options = CsvOptions.of(self.csv_options)
        if not options.header and options.column_names is None:
            options = replace(options, column_names=tuple(source_schema.names))
        batches = read_pieces(
            pieces,
            schema=source_schema,
            source_callable=self.source_callable,
            batch_rows=self.batch_rows,
            csv_options=options,
        )
        if mapping:
            batches = rename_columns(batches, mapping)
        return keep_table_columns(batches, schema) if self.ignore_extra_columns else batches


class FileSourceMixin(BaseOperator):
    """Sets the files of an operator's source: ``source``, ``source_conn_id``,
    ``source_format`` and ``source_compression`` (documented in ``LoadSource``).

    The operator's ``__init__`` lists them, with ``LoadSource``'s defaults, and passes each
    on. The mixin declares no ``template_fields``: the operator lists ``templated_options``
    (the first three) in its own.
    """

    #: The options of this mixin that every operator taking them templates.
    templated_options: ClassVar[tuple[str, ...]] = ("source", "source_conn_id", "source_format")

    def __init__(
        self,
        *,
        source: str | Sequence[str] | None,
        source_conn_id: str | None,
        source_format: str | None,
        source_compression: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.source_conn_id = source_conn_id
        self.source_format = source_format
        self.source_compression = source_compression


class LoadSourceMixin(FileSourceMixin):
    """Sets a whole source on an operator, files or a callable, and how its rows are read:
    the options of ``FileSourceMixin`` and ``source_callable``, ``source_parts``,
    ``batch_rows``, ``csv_options`` and ``column_mapping`` (documented in ``LoadSource``),
    listed and passed on by the operator's ``__init__`` as there. Its
    ``templated_options`` are ``FileSourceMixin``'s: the other options are not templated.
    """

    def __init__(
        self,
        *,
        source_callable: SourceCallable | None,
        source_parts: int | None,
        batch_rows: int,
        csv_options: dict[str, Any] | None,
        column_mapping: dict[str, str] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_callable = source_callable
        self.source_parts = source_parts
        self.batch_rows = batch_rows
        self.csv_options = csv_options
        self.column_mapping = column_mapping


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


def _read_csv(
    fh: Any, schema: pa.Schema | None, batch_rows: int, options: CsvOptions
) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        fh,
        read_options=pcsv.ReadOptions(
            block_size=max(1 << 20, batch_rows * 64),
            skip_rows=options.skip_rows,
            column_names=None if options.header else list(options.column_names or ()),
            encoding=options.encoding,
        ),
        parse_options=pcsv.ParseOptions(
            delimiter=options.delimiter,
            quote_char=options.quote_char,
            escape_char=options.escape_char,
        ),
        # By default an empty field is NULL, as with the MaxCompute CLI's null indicator.
        convert_options=pcsv.ConvertOptions(
            column_types=_column_types(schema),
            null_values=list(options.null_values),
            strings_can_be_null=True,
        ),
    )
    yield from reader


def _read_orc(fh: Any) -> Iterator[pa.RecordBatch]:
    import pyarrow.orc as orc

    orc_file = orc.ORCFile(fh)
    for stripe in range(orc_file.nstripes):
        yield orc_file.read_stripe(stripe)


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
