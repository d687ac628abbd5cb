"""Tokens of ODPS SQL text, and splitting a script into statements.

ODPS SQL differs lexically from DuckDB's: strings may be quoted with ``'`` or ``"`` and use
backslash escapes, identifiers are quoted with backticks. The lexer keeps every token with
its text and position so that the translator can rewrite only what differs and the error
messages can point at ``[line,column]`` as the service does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Token", "tokenize", "split_statements", "line_col", "SqlSyntaxError"]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("<=", ">=", "<>", "!=", "==", "||", "->", "::")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "0": "\0", "Z": "\x1a"}


class SqlSyntaxError(ValueError):
    """Text that is not ODPS SQL; ``position`` is the offset of the problem."""

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class Token:
    """One lexical token.

    ``kind`` is ``word``, ``ident`` (backtick-quoted name), ``string`` (``value`` holds the
    decoded text), ``number``, ``op`` (operators and punctuation), ``space`` or ``comment``.
    """

    kind: str
    text: str
    pos: int
    value: str = ""

    @property
    def upper(self) -> str:
        """The token's text in upper case (keywords compare with this)."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str | None:
        """The identifier this token spells (a word or a backtick name), else None."""
        if self.kind == "word":
            return self.text
        if self.kind == "ident":
            return self.value
        return None

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.text in ops

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _read_string(text: str, pos: int) -> tuple[str, int]:
    """The decoded value of the string literal at ``pos`` and the offset after it."""
    quote = text[pos]
    out = []
    idx = pos + 1
    while idx < len(text):
        char = text[idx]
        if char == "\\" and idx + 1 < len(text):
            nxt = text[idx + 1]
            octal = text[idx + 1 : idx + 4]
            if len(octal) == 3 and all(c in "01234567" for c in octal):
                out.append(chr(int(octal, 8)))
                idx += 4
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            idx += 2
            continue
        if char == quote:
            if text.startswith(quote, idx + 1):  # a doubled quote stands for itself
                out.append(quote)
                idx += 2
                continue
            return "".join(out), idx + 1
        out.append(char)
        idx += 1
    raise SqlSyntaxError("unterminated string literal", pos)


def _read_backtick(text: str, pos: int) -> tuple[str, int]:
    out = []
    idx = pos + 1
    while True:
        end = text.find("`", idx)
        if end < 0:
            raise SqlSyntaxError("unterminated `quoted` name", pos)
        out.append(text[idx:end])
        if text.startswith("`", end + 1):
            out.append("`")
            idx = end + 2
            continue
        return "".join(out), end + 1


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, spaces and comments included (so the text can be rebuilt)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace():
            end = pos
            while end < len(text) and text[end].isspace():
                end += 1
            tokens.append(Token("space", text[pos:end], pos))
        elif text.startswith("--", pos):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            tokens.append(Token("comment", text[pos:end], pos))
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise SqlSyntaxError("unterminated comment", pos)
            end += 2
            tokens.append(Token("comment", text[pos:end], pos))
        elif char in "'\"":
            value, end = _read_string(text, pos)
            tokens.append(Token("string", text[pos:end], pos, value))
        elif char == "`":
            value, end = _read_backtick(text, pos)
            tokens.append(Token("ident", text[pos:end], pos, value))
        elif (match := _NUMBER.match(text, pos)) and (char.isdigit() or char == "."):
            end = match.end()
            tokens.append(Token("number", match.group(), pos))
        elif match := _WORD.match(text, pos):
            end = match.end()
            tokens.append(Token("word", match.group(), pos))
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, pos)), char)
            end = pos + len(op)
            tokens.append(Token("op", op, pos))
        pos = end
    return tokens


def split_statements(text: str) -> list[list[Token]]:
    """The statements of a script (split at ``;``), each without spaces and comments."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for token in tokenize(text):
        if token.kind in ("space", "comment"):
            continue
        if token.is_op(";"):
            if current:
                statements.append(current)
            current = []
        else:
            current.append(token)
    if current:
        statements.append(current)
    return statements


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of an offset, for ``[line,col]`` in error messages."""
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col
