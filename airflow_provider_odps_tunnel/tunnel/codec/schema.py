"""Columns and table schemas, and the schema JSON the tunnel service exchanges."""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Sequence
from typing import Any

from .types import DataType, parse_type

__all__ = ["Column", "TableSchema", "parse_columns"]


class Column:
    """A named, typed column; ``nullable`` is False for NOT NULL and primary-key columns."""

    __slots__ = ("name", "type", "comment", "nullable")

    def __init__(
        self,
        name: str,
        type: str | DataType,  # noqa: A002 - the API's parameter name
        comment: str = "",
        nullable: bool = True,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"column name must be a non-empty string, got {name!r}")
        self.name = name
        self.type = parse_type(type)
        self.comment = comment or ""
        self.nullable = nullable

    def __repr__(self) -> str:
        null = "" if self.nullable else " not null"
        return f"<column {self.name} {self.type}{null}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Column)
            and self.name == other.name
            and self.type == other.type
            and self.nullable == other.nullable
        )

    def __hash__(self) -> int:
        return hash((self.name, self.type.name))

    def to_json(self, column_id: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.name,
            "comment": self.comment,
            "nullable": self.nullable,
            "isNullable": self.nullable,
        }
        if column_id is not None:
            out["column_id"] = str(column_id)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Column:
        nullable = data.get("isNullable", data.get("nullable", True))
        if isinstance(nullable, str):
            nullable = nullable.lower() != "false"
        return cls(data["name"], data["type"], data.get("comment") or "", bool(nullable))


class TableSchema:
    """The data columns and partition columns of a table.

    ``columns`` is the data columns followed by the partition columns, as in pyodps;
    ``simple_columns`` are the data columns alone, which are what the wire carries.
    """

    def __init__(
        self,
        columns: Sequence[Column] | None = None,
        partitions: Sequence[Column] | None = None,
    ):
        self.simple_columns: list[Column] = list(columns or [])
        self.partitions: list[Column] = list(partitions or [])
        self.columns: list[Column] = self.simple_columns + self.partitions
        self._index: dict[str, int] = {}
        for idx, col in enumerate(self.columns):
            key = col.name.lower()
            if key in self._index:
                raise ValueError(f"duplicate column name {col.name!r}")
            self._index[key] = idx

    @classmethod
    def from_lists(
        cls,
        names: Sequence[str],
        types: Sequence[str | DataType],
        partition_names: Sequence[str] | None = None,
        partition_types: Sequence[str | DataType] | None = None,
    ) -> TableSchema:
        """Build a schema from parallel lists of names and types."""
        if len(names) != len(types):
            raise ValueError(f"{len(names)} names but {len(types)} types")
        partition_names = list(partition_names or [])
        partition_types = list(partition_types or ["string"] * len(partition_names))
        if len(partition_names) != len(partition_types):
            raise ValueError("partition_names and partition_types differ in length")
        return cls(
            [Column(n, t) for n, t in zip(names, types, strict=True)],
            [Column(n, t) for n, t in zip(partition_names, partition_types, strict=True)],
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def types(self) -> list[DataType]:
        return [c.type for c in self.columns]

    @property
    def partition_names(self) -> list[str]:
        return [c.name for c in self.partitions]

    def __len__(self) -> int:
        return len(self.columns)

    def __iter__(self):
        return iter(self.columns)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TableSchema)
            and self.simple_columns == other.simple_columns
            and self.partitions == other.partitions
        )

    def __repr__(self) -> str:
        cols = ", ".join(f"{c.name} {c.type}" for c in self.simple_columns)
        parts = ", ".join(f"{c.name} {c.type}" for c in self.partitions)
        return f"TableSchema({cols}" + (f"; partitioned by {parts})" if parts else ")")

    def get_column_index(self, name: str) -> int:
        """Index of a column (case-insensitive); ``KeyError`` names the unknown column."""
        try:
            return self._index[name.lower()]
        except KeyError:
            raise KeyError(f"no column named {name!r}; columns are {self.names}") from None

    def get_column(self, name: str | int) -> Column:
        if isinstance(name, int):
            return self.columns[name]
        return self.columns[self.get_column_index(name)]

    def is_partition(self, name: str) -> bool:
        return self.get_column_index(name) >= len(self.simple_columns)

    def select(self, names: Iterable[str]) -> TableSchema:
        """A schema of the named data columns, in the order given."""
        cols = [self.get_column(n) for n in names]
        return TableSchema([c for c in cols if c not in self.partitions])

    def to_json(self) -> dict[str, Any]:
        """The tunnel's schema object (protocol §4.1): ``columns`` and ``partitionKeys``."""
        return {
            "columns": [c.to_json(i + 1) for i, c in enumerate(self.simple_columns)],
            "partitionKeys": [c.to_json() for c in self.partitions],
        }

    def to_json_string(self) -> str:
        return _json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | bytes) -> TableSchema:
        if isinstance(data, str | bytes):
            data = _json.loads(data)
        return cls(
            [Column.from_json(c) for c in data.get("columns") or []],
            [Column.from_json(c) for c in data.get("partitionKeys") or []],
        )


def parse_columns(text: str) -> list[Column]:
    """Columns from DDL-like text: ``'a bigint, b decimal(18,4), c map<string,bigint>'``.

    Commas inside ``<>`` and ``()`` do not split; a name may be back-quoted. Empty items are
    skipped; an item without a type raises ``ValueError``.
    """
    columns, depth, start = [], 0, 0
    for idx, char in enumerate(text + ","):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            item = text[start:idx].strip()
            start = idx + 1
            if not item:
                continue
            name, _, type_text = item.partition(" ")
            if not type_text.strip():
                raise ValueError(f"column {item!r} needs a name and a type")
            columns.append(Column(name.strip("`"), type_text.strip()))
    return columns
