"""pyodps's record-reader surface, shared by every reader that yields :class:`Record` objects.

A reader provides ``read()`` (the next record or None) and ``columns`` (its output
columns); :class:`RecordReaderAPI` adds what pyodps's readers inherit from
``AbstractRecordReader``: iteration (``next(reader)``, ``reader.next()``, ``reads()``),
slicing (``reader[5]``, ``reader[10:20:2]``), ``to_result_frame(...)`` and
``to_pandas(start, count, ...)``. Slices and ``start`` count from where the reader is
now, as in pyodps: skipped rows are read and dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..codec.record import Record
from ..codec.schema import Column, TableSchema

__all__ = ["RecordReaderAPI", "SliceIterator", "ResultFrame"]


class ResultFrame:
    """Rows read into memory, as pyodps's ``ResultFrame``: ``values`` is a pandas
    ``DataFrame`` (what ``to_pandas()`` returns), ``schema`` and ``columns`` describe it."""

    def __init__(self, rows: list[tuple], columns: list[Column]):
        import pandas as pd

        self.columns = list(columns)
        self.schema = TableSchema(self.columns)
        self.values = pd.DataFrame(rows, columns=[c.name for c in self.columns])

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[list]:
        for row in self.values.itertuples(index=False):
            yield list(row)

    def __repr__(self) -> str:
        return repr(self.values)


class SliceIterator:
    """The records of ``reader[a:b:c]``; ``to_pandas()`` reads the same rows as a frame."""

    def __init__(self, reader: RecordReaderAPI, start: int, end: int | None, step: int):
        self._reader = reader
        self._start, self._end, self._step = start, end, step
        self._it = reader._iter(start, end, step)

    def __iter__(self) -> Iterator[Record]:
        return self._it

    def __next__(self) -> Record:
        return next(self._it)

    def to_pandas(self) -> Any:
        return self._reader.to_pandas(start=self._start, end=self._end, step=self._step)


class RecordReaderAPI:
    """Iteration, slicing and frames on top of ``read()`` and ``columns``."""

    columns: list[Column]

    def read(self) -> Record | None:  # pragma: no cover - every reader defines it
        raise NotImplementedError

    def __iter__(self) -> RecordReaderAPI:
        return self

    def __next__(self) -> Record:
        record = self.read()
        if record is None:
            raise StopIteration
        return record

    next = __next__

    def reads(self) -> RecordReaderAPI:
        """The reader as an iterator of records (pyodps's spelling of ``iter(reader)``)."""
        return self.__iter__()

    def __getitem__(self, item: int | slice) -> Record | SliceIterator:
        """``reader[i]``: the i-th record from here; ``reader[a:b:c]``: those records.

        Negative indexes and steps are refused (a reader only moves forward).
        """
        if isinstance(item, int):
            start, end, step = item, item + 1, 1
        elif isinstance(item, slice):
            start, end, step = item.start or 0, item.stop, item.step or 1
        else:
            raise ValueError("Reader only supports index and slice operation.")
        count = None if end is None else math.ceil((end - start) / step)
        if start < 0 or step < 0 or (count is not None and count <= 0):
            raise ValueError("start, count, or step cannot be negative")
        slice_iter = SliceIterator(self, start, end, step)
        if isinstance(item, int):
            try:
                return next(slice_iter)
            except StopIteration:
                raise IndexError(f"Index out of range: {item}") from None
        return slice_iter

    def _iter(
        self, start: int | None = None, end: int | None = None, step: int | None = None
    ) -> Iterator[Record]:
        """Records ``start`` to ``end`` (exclusive) every ``step``, counted from here."""
        start, step = start or 0, step or 1
        for _ in range(start):
            if self.read() is None:
                return
        position = start
        while end is None or position < end:
            record = self.read()
            if record is None:
                return
            if (position - start) % step == 0:
                yield record
            position += 1

    def _frame_rows(self, start: int | None, end: int | None, step: int | None) -> Iterator[tuple]:
        """Rows for a frame; readers with a faster whole-body path override this."""
        return (tuple(record.values) for record in self._iter(start, end, step))

    def to_result_frame(
        self,
        unknown_as_string: bool = True,
        as_type: Any = None,
        start: int | None = None,
        count: int | None = None,
        columns: list[str] | None = None,
        **iter_kw: Any,
    ) -> ResultFrame:
        """Rows from ``start`` (counted from here) as a :class:`ResultFrame`.

        ``count`` rows at most, or up to ``end=``, every ``step=`` rows; ``columns``
        keeps those columns. ``unknown_as_string`` and ``as_type`` only matter to pyodps's
        CSV readers and are accepted for the same calls to work.
        """
        step = iter_kw.get("step") or 1
        if "end" in iter_kw:
            end = iter_kw["end"]
        else:
            end = None if count is None else (start or 0) + count * step
        out_columns = list(self.columns)
        rows = list(self._frame_rows(start, end, step))
        if columns:
            positions = [_position(out_columns, name) for name in columns]
            out_columns = [out_columns[i] for i in positions]
            rows = [tuple(row[i] for i in positions) for row in rows]
        return ResultFrame(rows, out_columns)

    def to_pandas(self, start: int | None = None, count: int | None = None, **kw: Any) -> Any:
        """Rows from ``start`` (counted from here) as a pandas ``DataFrame``; the same
        keywords as :meth:`to_result_frame`."""
        return self.to_result_frame(start=start, count=count, **kw).values


def _position(columns: list[Column], name: str) -> int:
    for i, col in enumerate(columns):
        if col.name.lower() == name.lower():
            return i
    raise ValueError(f"column {name!r} is not among the reader's columns")
