"""Partition specifications such as ``pt=20240101,region='eu'``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["PartitionSpec"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Characters that would break the ``partition=`` parameter or a storage path.
_FORBIDDEN_IN_VALUE = set(",='\"/\\\x00\n\r")
MAX_VALUE_LENGTH = 256


class PartitionSpec:
    """An ordered mapping of partition keys to values.

    Accepts text (``"pt=20240101,region='eu'"``, quotes optional; ``/`` also separates
    levels), a mapping, a list of ``k=v`` strings, or another spec. Keys must be identifiers
    and values non-empty; a bad spec raises ``ValueError`` saying which part is wrong.
    ``str(spec)`` is the quoted form pyodps prints; :meth:`to_param` is the unquoted form
    the tunnel's ``partition=`` parameter carries.
    """

    def __init__(self, spec: str | Mapping[str, Any] | list[str] | PartitionSpec | None = None):
        self.kv: dict[str, str] = {}
        if spec is None:
            return
        if isinstance(spec, PartitionSpec):
            self.kv = dict(spec.kv)
            return
        if isinstance(spec, Mapping):
            for key, value in spec.items():
                self._add(str(key), str(value), spec)
            return
        if isinstance(spec, str):
            parts = [p for p in re.split(r"[,/]", spec) if p.strip()] if spec.strip() else []
        elif isinstance(spec, list):
            parts = spec
        else:
            raise TypeError(f"cannot build a partition spec from {type(spec).__name__}")
        for part in parts:
            if part.count("=") != 1:
                raise ValueError(
                    f"invalid partition spec {spec!r}: {part.strip()!r} is not key=value"
                )
            key, value = part.split("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            self._add(key.strip(), value, spec)

    def _add(self, key: str, value: str, spec: Any) -> None:
        if not _KEY.match(key):
            raise ValueError(f"invalid partition spec {spec!r}: bad key {key!r}")
        if key.lower() in (k.lower() for k in self.kv):
            raise ValueError(f"invalid partition spec {spec!r}: duplicate key {key!r}")
        if not value:
            raise ValueError(f"invalid partition spec {spec!r}: empty value for {key!r}")
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"invalid partition spec {spec!r}: value of {key!r} is longer than "
                f"{MAX_VALUE_LENGTH} characters"
            )
        bad = sorted(set(value) & _FORBIDDEN_IN_VALUE)
        if bad or value in (".", ".."):
            raise ValueError(
                f"invalid partition spec {spec!r}: value of {key!r} contains {bad or value!r}"
            )
        self.kv[key] = value

    def __getitem__(self, key: str) -> str:
        return self.kv[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.kv.pop(key, None)
        self._add(key, str(value), self)

    def __contains__(self, key: object) -> bool:
        return key in self.kv

    def __len__(self) -> int:
        return len(self.kv)

    def __iter__(self) -> Iterator[str]:
        return iter(self.kv)

    def __bool__(self) -> bool:
        return bool(self.kv)

    @property
    def is_empty(self) -> bool:
        return not self.kv

    def keys(self) -> list[str]:
        return list(self.kv)

    def values(self) -> list[str]:
        return list(self.kv.values())

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(self.kv.items())

    def to_param(self) -> str:
        """The value of the tunnel's ``partition=`` query parameter: ``k1=v1,k2=v2``."""
        return ",".join(f"{k}={v}" for k, v in self.kv.items())

    def __str__(self) -> str:
        return ",".join(f"{k}='{v}'" for k, v in self.kv.items())

    def __repr__(self) -> str:
        return f"<PartitionSpec {self}>"

    def __eq__(self, other: object) -> bool:
        if other is None:
            return not self.kv
        if not isinstance(other, PartitionSpec):
            try:
                other = PartitionSpec(other)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return False
        return self.kv == other.kv

    def __hash__(self) -> int:
        return hash(tuple(self.kv.items()))
