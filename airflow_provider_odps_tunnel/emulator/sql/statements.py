"""Parsing the statements the emulator runs into plain descriptions.

Only the parts of a statement the emulator acts on itself are parsed here: DDL, the head of
an INSERT (target table, partition clause, column list) and ``SET``. Queries stay token
lists for ``translate``. Anything else is :class:`SqlSyntaxError` (reported by the engine as
the service's ``ODPS-0130161`` parse error).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .lexer import SqlSyntaxError, Token

__all__ = [
    "TableName",
    "CreateTable",
    "DropTable",
    "SchemaDdl",
    "AlterColumns",
    "AlterPartitions",
    "Truncate",
    "Insert",
    "Query",
    "SetOption",
    "Statement",
    "parse_statement",
]

_QUERY_STARTS = ("SELECT", "WITH", "VALUES", "FROM")


@dataclass(frozen=True)
class TableName:
    """``[project.]table`` or ``project.schema.table`` as written (the project defaults to
    the instance's, the schema to ``default``)."""

    project: str | None
    name: str
    schema: str | None = None

    def qualified(self, default_project: str) -> str:
        parts = (self.project or default_project, self.schema, self.name)
        return ".".join(p for p in parts if p)


@dataclass
class CreateTable:
    table: TableName
    schema: TableSchema | None = None
    primary_key: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    buckets: int | None = None
    if_not_exists: bool = False
    lifecycle: int | None = None
    comment: str = ""
    as_query: list[Token] | None = None
    like: TableName | None = None


@dataclass
class DropTable:
    table: TableName
    if_exists: bool = False


@dataclass
class SchemaDdl:
    """``CREATE SCHEMA [IF NOT EXISTS] [project.]s`` or ``DROP SCHEMA [IF EXISTS] [project.]s``
    (pyodps's fallback when the service has no schema REST API)."""

    create: bool
    project: str | None
    name: str
    tolerant: bool = False


@dataclass
class AlterPartitions:
    """``ALTER TABLE t ADD|DROP [IF [NOT] EXISTS] PARTITION (...) [, PARTITION (...)]``."""

    table: TableName
    add: bool
    specs: list[dict[str, str]]
    tolerant: bool = False


@dataclass
class AlterColumns:
    """``ALTER TABLE t ADD COLUMNS (name type [COMMENT '...'], ...)`` (bumps the schema version)."""

    table: TableName
    columns: list[Column]


@dataclass
class Truncate:
    table: TableName
    specs: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Insert:
    """``INSERT INTO|OVERWRITE [TABLE] t [PARTITION (...)] [(cols)] query``.

    ``partition`` maps each named partition column to its value, or to None for a dynamic
    partition column (its values are the query's trailing columns).
    """

    table: TableName
    overwrite: bool
    partition: dict[str, str | None] | None
    columns: list[str] | None
    query: list[Token]


@dataclass
class Query:
    tokens: list[Token]


@dataclass
class SetOption:
    """``SET key=value``: accepted and ignored (ODPS settings mean nothing here)."""

    text: str


Statement = (
    CreateTable
    | DropTable
    | SchemaDdl
    | AlterPartitions
    | AlterColumns
    | Truncate
    | Insert
    | Query
    | SetOption
)


class _Cursor:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.idx = 0

    def peek(self, ahead: int = 0) -> Token | None:
        at = self.idx + ahead
        return self.tokens[at] if at < len(self.tokens) else None

    def fail(self, message: str) -> SqlSyntaxError:
        token = self.peek()
        pos = token.pos if token else (self.tokens[-1].pos if self.tokens else 0)
        found = f"'{token.text}'" if token else "end of statement"
        return SqlSyntaxError(f"{message}, found {found}", pos)

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end of statement")
        self.idx += 1
        return token

    def accept(self, *words: str) -> bool:
        """Consume the keyword sequence ``words`` if it comes next."""
        for ahead, word in enumerate(words):
            token = self.peek(ahead)
            if token is None or not token.is_word(word):
                return False
        self.idx += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.fail(f"expected {' '.join(words)}")

    def accept_op(self, op: str) -> bool:
        token = self.peek()
        if token is not None and token.is_op(op):
            self.idx += 1
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            raise self.fail(f"expected '{op}'")

    def name(self) -> str:
        token = self.next()
        if token.name is None:
            self.idx -= 1
            raise self.fail("expected a name")
        return token.name

    def table_name(self) -> TableName:
        first = self.name()
        if self.accept_op("."):
            second = self.name()
            if self.accept_op("."):
                return TableName(first, self.name(), schema=second)
            return TableName(first, second)
        return TableName(None, first)

    def literal(self) -> str:
        token = self.next()
        if token.kind == "string":
            return token.value
        if token.kind in ("number", "word"):
            return token.text
        if token.is_op("-") and self.peek() is not None and self.peek().kind == "number":
            return "-" + self.next().text
        self.idx -= 1
        raise self.fail("expected a literal")

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            self.idx -= 1
            raise self.fail("expected an integer")
        return int(token.text)

    def rest(self) -> list[Token]:
        out = self.tokens[self.idx :]
        self.idx = len(self.tokens)
        return out

    def at_end(self) -> bool:
        return self.idx >= len(self.tokens)

    def end(self) -> None:
        if not self.at_end():
            raise self.fail("unexpected text")


def _partition_clause(cur: _Cursor, allow_dynamic: bool) -> dict[str, str | None]:
    """``PARTITION (k='v', k2)`` after the PARTITION keyword was consumed."""
    cur.expect_op("(")
    spec: dict[str, str | None] = {}
    while True:
        key = cur.name()
        if cur.accept_op("="):
            spec[key] = cur.literal()
        elif allow_dynamic:
            spec[key] = None
        else:
            raise cur.fail(f"partition column {key} needs a value")
        if not cur.accept_op(","):
            break
    cur.expect_op(")")
    return spec


def _static_specs(cur: _Cursor) -> list[dict[str, str]]:
    """One or more ``PARTITION (...)`` clauses, optionally comma-separated."""
    specs: list[dict[str, str]] = []
    while cur.accept("PARTITION"):
        specs.append(_partition_clause(cur, allow_dynamic=False))  # type: ignore[arg-type]
        cur.accept_op(",")
    if not specs:
        raise cur.fail("expected PARTITION")
    return specs


def _type_tokens(cur: _Cursor) -> str:
    """The text of a column type, up to the next top-level ``,``/``)`` or keyword."""
    parts: list[str] = []
    depth = 0
    while True:
        token = cur.peek()
        if token is None:
            raise cur.fail("unterminated column list")
        if depth == 0 and (
            token.is_op(",", ")") or token.is_word("NOT", "NULL", "COMMENT", "DEFAULT", "PRIMARY")
        ):
            break
        if token.is_op("(", "<"):
            depth += 1
        elif token.is_op(")", ">"):
            depth -= 1
        parts.append(token.text)
        cur.idx += 1
    if not parts:
        raise cur.fail("expected a column type")
    return " ".join(parts)


def _column_list(cur: _Cursor, primary_key: list[str] | None) -> list[Column]:
    """``(name type [NOT NULL] [COMMENT '...'], ..., [PRIMARY KEY (a, b)])``."""
    cur.expect_op("(")
    columns: list[Column] = []
    while True:
        if primary_key is not None and cur.accept("PRIMARY", "KEY"):
            cur.expect_op("(")
            primary_key.append(cur.name())
            while cur.accept_op(","):
                primary_key.append(cur.name())
            cur.expect_op(")")
        else:
            name = cur.name()
            type_text = _type_tokens(cur)
            nullable = True
            comment = ""
            while True:
                if cur.accept("NOT", "NULL"):
                    nullable = False
                elif cur.accept("NULL"):
                    nullable = True
                elif cur.accept("COMMENT"):
                    comment = cur.literal()
                elif primary_key is not None and cur.accept("PRIMARY", "KEY"):
                    primary_key.append(name)
                else:
                    break
            try:
                columns.append(Column(name, type_text, comment, nullable))
            except (TypeError, ValueError) as exc:
                raise cur.fail(f"invalid column {name}: {exc}") from None
        if not cur.accept_op(","):
            break
    cur.expect_op(")")
    return columns


def _properties(cur: _Cursor) -> dict[str, str]:
    cur.expect_op("(")
    props: dict[str, str] = {}
    while True:
        key = cur.literal()
        cur.expect_op("=")
        props[key.lower()] = cur.literal()
        if not cur.accept_op(","):
            break
    cur.expect_op(")")
    return props


def _create_table(cur: _Cursor) -> CreateTable:
    stmt = CreateTable(TableName(None, ""), if_not_exists=cur.accept("IF", "NOT", "EXISTS"))
    stmt.table = cur.table_name()
    if cur.accept("LIKE"):
        stmt.like = cur.table_name()
    columns: list[Column] = []
    partitions: list[Column] = []
    if cur.peek() is not None and cur.peek().is_op("("):
        columns = _column_list(cur, stmt.primary_key)
    while not cur.at_end():
        if cur.accept("COMMENT"):
            stmt.comment = cur.literal()
        elif cur.accept("PARTITIONED", "BY"):
            partitions = _column_list(cur, None)
        elif cur.accept("CLUSTERED", "BY") or cur.accept("RANGE", "CLUSTERED", "BY"):
            cur.expect_op("(")
            while not cur.accept_op(")"):
                cur.next()
            if cur.accept("SORTED", "BY"):
                cur.expect_op("(")
                while not cur.accept_op(")"):
                    cur.next()
            cur.expect("INTO")
            stmt.buckets = cur.integer()
            cur.expect("BUCKETS")
        elif cur.accept("TBLPROPERTIES"):
            stmt.properties.update(_properties(cur))
        elif cur.accept("LIFECYCLE"):
            stmt.lifecycle = cur.integer()
        elif cur.accept("AS"):
            stmt.as_query = cur.rest()
        else:
            raise cur.fail("unexpected text in CREATE TABLE")
    if stmt.as_query is None and stmt.like is None:
        if not columns:
            raise cur.fail("CREATE TABLE needs a column list, AS query or LIKE table")
        try:
            stmt.schema = TableSchema(columns, partitions)
        except ValueError as exc:
            raise SqlSyntaxError(str(exc), cur.tokens[0].pos) from None
    return stmt


def _insert(cur: _Cursor) -> Insert:
    if cur.accept("INTO"):
        overwrite = False
    elif cur.accept("OVERWRITE"):
        overwrite = True
    else:
        raise cur.fail("expected INTO or OVERWRITE")
    cur.accept("TABLE")
    table = cur.table_name()
    partition = _partition_clause(cur, allow_dynamic=True) if cur.accept("PARTITION") else None
    columns: list[str] | None = None
    token, after = cur.peek(), cur.peek(1)
    if (
        token is not None
        and token.is_op("(")
        and after is not None
        and after.name is not None
        and not after.is_word(*_QUERY_STARTS)
    ):
        cur.next()
        columns = [cur.name()]
        while cur.accept_op(","):
            columns.append(cur.name())
        cur.expect_op(")")
    query = cur.rest()
    if not query:
        raise cur.fail("INSERT needs a query or VALUES")
    return Insert(table, overwrite, partition, columns, query)


def parse_statement(tokens: list[Token]) -> Statement:
    """The description of one statement (tokens without spaces and comments)."""
    cur = _Cursor(tokens)
    first = cur.peek()
    if first is None:
        raise SqlSyntaxError("empty statement", 0)
    if first.is_word(*_QUERY_STARTS) or first.is_op("("):
        return Query(tokens)
    if cur.accept("SET"):
        return SetOption(" ".join(t.text for t in cur.rest()))
    if cur.accept("CREATE", "TABLE"):
        return _create_table(cur)
    for verb, tolerance in (("CREATE", ("IF", "NOT", "EXISTS")), ("DROP", ("IF", "EXISTS"))):
        if cur.accept(verb, "SCHEMA"):
            tolerant = cur.accept(*tolerance)
            named = cur.table_name()
            if named.schema is not None:
                raise cur.fail("a schema name is [project.]schema")
            cur.end()
            return SchemaDdl(verb == "CREATE", named.project, named.name, tolerant)
    if cur.accept("DROP", "TABLE"):
        stmt = DropTable(TableName(None, ""), if_exists=cur.accept("IF", "EXISTS"))
        stmt.table = cur.table_name()
        cur.end()
        return stmt
    if cur.accept("ALTER", "TABLE"):
        table = cur.table_name()
        if cur.accept("ADD", "COLUMNS"):
            stmt = AlterColumns(table, _column_list(cur, None))
        elif cur.accept("ADD"):
            tolerant = cur.accept("IF", "NOT", "EXISTS")
            stmt = AlterPartitions(table, True, _static_specs(cur), tolerant)
        elif cur.accept("DROP"):
            tolerant = cur.accept("IF", "EXISTS")
            stmt = AlterPartitions(table, False, _static_specs(cur), tolerant)
        else:
            raise cur.fail("only ALTER TABLE ... ADD/DROP PARTITION and ADD COLUMNS are supported")
        cur.end()
        return stmt
    if cur.accept("TRUNCATE", "TABLE"):
        table = cur.table_name()
        specs = _static_specs(cur) if not cur.at_end() else []
        cur.end()
        return Truncate(table, specs)
    if cur.accept("INSERT"):
        return _insert(cur)
    raise cur.fail(
        "unsupported statement (the emulator runs CREATE/DROP/ALTER/TRUNCATE TABLE, "
        "CREATE/DROP SCHEMA, INSERT, SELECT and SET)"
    )
