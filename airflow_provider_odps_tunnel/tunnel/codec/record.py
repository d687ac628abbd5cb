"""Rows as :class:`Record` objects, with validation that names the offending column."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import RecordValidationError
from .schema import Column, TableSchema

__all__ = ["Record", "PyRecordIterator"]


class Record:
    """One row: values by position or by (case-insensitive) column name.

    Every assignment is validated against the column's type; a bad value raises
    :class:`RecordValidationError` naming the column, its type and the value. Iterating
    yields ``(name, value)`` pairs, as pyodps does.
    """

    # ``values`` is a plain slot, not a property: reading it is the commonest access and
    # costs no Python call. Assignments go through __setattr__ (a column of that name, or an
    # error), and __delattr__ refuses, so it stays the record's list.
    __slots__ = {
        "values": "The values in column order: the record's own list, as pyodps's.",
        "_columns": "The columns, shared with the schema or reader that made the record.",
        "_index": "Lower-case column name to position.",
        "_n_data": "How many leading columns are data columns (the rest are partitions).",
    }

    def __init__(
        self,
        columns: Sequence[Column] | None = None,
        schema: TableSchema | None = None,
        values: Sequence[Any] | None = None,
    ):
        if columns is None:
            if schema is None:
                raise ValueError("a Record needs columns or a schema")
            columns = schema.columns  # shared with the schema, never mutated here
            index = schema._index
            n_data = len(schema.simple_columns)
        else:
            columns = list(columns)
            index = {c.name.lower(): i for i, c in enumerate(columns)}
            n_data = len(columns)
        set_attr = object.__setattr__
        set_attr(self, "_n_data", n_data)
        set_attr(self, "_columns", columns)
        set_attr(self, "_index", index)
        if values is None or len(values) != len(columns):
            set_attr(self, "values", [None] * len(columns))
            if values is not None:
                self._set_values(values)
            return
        try:
            # One pass of the columns' validators; the slow path below names the culprit.
            set_attr(
                self,
                "values",
                [c.type.validate(v) for c, v in zip(columns, values, strict=True)],
            )
        except (TypeError, ValueError):
            set_attr(self, "values", [None] * len(columns))
            self._set_values(values)

    @classmethod
    def _trusted(cls, columns: list[Column], index: dict[str, int], values: list) -> Record:
        """A record around values a decoder already produced, skipping validation."""
        rec = object.__new__(cls)
        object.__setattr__(rec, "_columns", columns)
        object.__setattr__(rec, "_index", index)
        object.__setattr__(rec, "values", values)
        object.__setattr__(rec, "_n_data", len(columns))
        return rec

    def _set_values(self, values: Sequence[Any]) -> None:
        # Rows may leave out the partition columns, which come last.
        if len(values) not in (len(self._columns), self._n_data):
            raise RecordValidationError(
                f"expected {len(self._columns)} values, got {len(values)}", value=list(values)
            )
        for i, value in enumerate(values):
            self._set(i, value)

    def _set(self, i: int, value: Any) -> None:
        col = self._columns[i]
        try:
            self.values[i] = col.type.validate(value)
        except (TypeError, ValueError) as exc:
            raise RecordValidationError(
                f"column {col.name!r} ({col.type}): {exc}; value {value!r}",
                column=col.name,
                column_type=col.type.name,
                value=value,
            ) from None

    def _position(self, key: int | str) -> int:
        if isinstance(key, int):
            if not -len(self.values) <= key < len(self.values):
                raise IndexError(f"column index {key} out of range ({len(self.values)} columns)")
            return key % len(self.values)
        try:
            return self._index[key.lower()]
        except KeyError:
            names = [c.name for c in self._columns]
            raise KeyError(f"no column named {key!r}; columns are {names}") from None

    def __getitem__(self, key: int | str | slice | list) -> Any:
        if isinstance(key, slice):
            return self.values[key]
        if isinstance(key, list):
            return [self[k] for k in key]
        return self.values[self._position(key)]

    def __setitem__(self, key: int | str, value: Any) -> None:
        self._set(self._position(key), value)

    def __getattr__(self, name: str) -> Any:
        index = object.__getattribute__(self, "_index")
        if name.lower() in index:
            return self.values[index[name.lower()]]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.lower() in self._index:
            self[name] = value
        else:
            raise AttributeError(f"no column named {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r} of a Record")

    def get_by_name(self, name: str) -> Any:
        return self[name]

    def set_by_name(self, name: str, value: Any) -> None:
        self[name] = value

    @property
    def columns(self) -> list[Column]:
        return self._columns

    @property
    def n_columns(self) -> int:
        return len(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(zip((c.name for c in self._columns), self.values, strict=True))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and self._columns == other._columns
            and self.values == other.values
        )

    def __hash__(self) -> int:
        return hash(tuple(map(repr, self.values)))

    def __repr__(self) -> str:
        body = ", ".join(f"{c.name}={v!r}" for c, v in zip(self._columns, self.values, strict=True))
        return f"Record({body})"


class PyRecordIterator:
    """The rows of a batch (tuples, in column order) as :class:`Record` objects, made one
    per ``next()``; the reference of the compiled ``CRecordIterator`` (``record_codec.
    RecordIterator`` is whichever is built).

    Each record is ``Record._trusted(columns, index, list(row))``, made only when it is
    asked for: a consumer that drops each record before taking the next keeps one alive,
    rather than a batch the cyclic collector would walk. ``rest()`` hands out the remaining
    rows as they are (the tuple path of a reader).
    """

    __slots__ = ("_rows", "_pos", "_columns", "_index")

    def __init__(self, rows: list[tuple], columns: list[Column], index: dict[str, int]):
        self._rows = rows
        self._pos = 0
        self._columns = columns
        self._index = index

    def __iter__(self) -> PyRecordIterator:
        return self

    def __next__(self) -> Record:
        pos = self._pos
        if pos >= len(self._rows):
            raise StopIteration
        row = self._rows[pos]
        self._rows[pos] = None  # not kept alive by the batch once handed out
        self._pos = pos + 1
        return Record._trusted(self._columns, self._index, list(row))

    def __length_hint__(self) -> int:
        """Rows not handed out yet."""
        return len(self._rows) - self._pos

    def rest(self) -> list[tuple]:
        """The rows not handed out yet, as they were given; the iterator is then exhausted."""
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows
