"""The emulator's SQL: ODPS SQL scripts run by an embedded DuckDB on the stored tables.

``lexer`` tokenizes ODPS SQL, ``statements`` parses what the emulator acts on itself (DDL,
INSERT heads, SET), ``translate`` rewrites queries as DuckDB text, ``views`` shows stored
tables to DuckDB, ``writes`` commits INSERT/CTAS/TRUNCATE like a tunnel commit, ``results``
keeps query results for the instance tunnel, and ``engine`` runs a script.
"""

from .engine import ScriptResult, SqlEngine
from .errors import SqlError

__all__ = ["SqlEngine", "ScriptResult", "SqlError"]
