"""Resource paths of the tunnel (protocol §1.2) and the table reference sessions take.

Names are quoted as the service expects (``+`` quoting, then ``%20`` for spaces), so a
resource is ready to append to an endpoint and, unquoted, to sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

__all__ = [
    "quote_name",
    "project_resource",
    "TableRef",
    "instance_resource",
    "volume_resource",
]


def quote_name(name: str) -> str:
    """A path segment: URL-quoted, with spaces as ``%20``."""
    return quote_plus(str(name), safe="").replace("+", "%20")


def project_resource(project: str) -> str:
    return f"/projects/{quote_name(project)}"


def instance_resource(project: str, instance_id: str) -> str:
    return f"{project_resource(project)}/instances/{quote_name(instance_id)}"


def volume_resource(project: str, volume: str) -> str:
    return f"{project_resource(project)}/volumes/{quote_name(volume)}"


@dataclass(frozen=True)
class TableRef:
    """A table by project, schema (namespace, optional) and name."""

    project: str
    name: str
    schema: str | None = None

    @classmethod
    def of(cls, table: Any, project: str, schema: str | None = None) -> TableRef:
        """Accept ``"t"``, ``"proj.t"``, ``"proj.schema.t"``, a ``TableRef`` or a table object.

        Table objects are duck-typed (pyodps ``Table``): ``name``, and optionally
        ``project.name`` and ``get_schema().name`` or ``schema_name``.
        """
        if isinstance(table, TableRef):
            return table
        if isinstance(table, str):
            parts = table.split(".")
            if len(parts) == 1:
                return cls(project, parts[0], schema)
            if len(parts) == 2:
                return cls(parts[0], parts[1], schema)
            if len(parts) == 3:
                return cls(parts[0], parts[2], parts[1])
            raise ValueError(f"invalid table name {table!r}")
        name = getattr(table, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"expected a table name or table object, got {type(table).__name__}")
        owner = getattr(table, "project", None)
        table_project = getattr(owner, "name", owner) if owner is not None else None
        table_schema = getattr(table, "schema_name", None)
        if table_schema is None and callable(getattr(table, "get_schema", None)):
            found = table.get_schema()
            table_schema = getattr(found, "name", found)
        return cls(
            table_project if isinstance(table_project, str) else project,
            name,
            table_schema if isinstance(table_schema, str) else schema,
        )

    def resource(self) -> str:
        """``/projects/{p}[/schemas/{s}]/tables/{t}``."""
        schema = f"/schemas/{quote_name(self.schema)}" if self.schema else ""
        return f"{project_resource(self.project)}{schema}/tables/{quote_name(self.name)}"

    def preview_resource(self) -> str:
        """The preview path, which always has the schema form (``default`` when none)."""
        schema = quote_name(self.schema or "default")
        return (
            f"{project_resource(self.project)}/schemas/{schema}/tables/"
            f"{quote_name(self.name)}/preview"
        )

    def __str__(self) -> str:
        return ".".join(p for p in (self.project, self.schema, self.name) if p)
