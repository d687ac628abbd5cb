"""How a failed statement is reported: the service's ``ODPS-xxxxxxx`` error text.

A failed SQL task's result is a line such as ``ODPS-0130131:[1,15] Table not found - table
p.t cannot be resolved``; pyodps maps the code onto its exception classes
(``ODPS-0130131`` → ``NoSuchTable``, ``ODPS-0130161`` → ``ParseError``), so the codes below
are the service's.
"""

from __future__ import annotations

__all__ = ["SqlError"]


class SqlError(Exception):
    """A statement that failed; :meth:`text` is the task result the service would give."""

    def __init__(self, code: str, kind: str, detail: str, position: tuple[int, int] = (1, 1)):
        super().__init__(f"{code}: {kind} - {detail}")
        self.code = code
        self.kind = kind
        self.detail = detail
        self.position = position

    def text(self) -> str:
        line, col = self.position
        return f"{self.code}:[{line},{col}] {self.kind} - {self.detail}"

    @classmethod
    def parse(cls, detail: str) -> SqlError:
        return cls("ODPS-0130161", "Parse exception", detail)

    @classmethod
    def semantic(cls, detail: str) -> SqlError:
        return cls("ODPS-0130071", "Semantic analysis exception", detail)

    @classmethod
    def table_not_found(cls, name: str) -> SqlError:
        return cls("ODPS-0130131", "Table not found", f"table {name} cannot be resolved")

    @classmethod
    def runtime(cls, detail: str) -> SqlError:
        return cls("ODPS-0123131", "Runtime error", detail)
