"""Projects, tables, partitions and volumes under the data directory, and their commits.

Layout (one directory per object; every JSON file is replaced atomically, see ``fsutil``)::

    projects/<project>/project.json
    projects/<project>/tables/<table>/table.json           schema, primary key, buckets, id
    projects/<project>/tables/<table>/partitions/<key>.json  one manifest per partition
    projects/<project>/tables/<table>/data/<uuid>.arrow      data files (immutable, ``datafiles``)
    projects/<project>/volumes/<volume>/...                   volume files
    projects/<project>/schemas/<schema>/schema.json           a schema other than ``default``
    projects/<project>/schemas/<schema>/tables/<table>/...    its tables, laid out as above

Tables live in schemas (the service's three-tier model, project.schema.table). The schema
``default`` always exists and holds the tables directly under the project, so a project
that never uses schemas looks as it always did; every table method takes ``schema_name``
(None or ``default``: the default schema).

A partition's committed contents are exactly the files its manifest lists (a table without
partition columns has one manifest, ``_.json``). A commit writes new data files first, then
publishes a new manifest by atomic rename, so a crash at any instant leaves the old or the
new contents. Manifests also remember the sessions they applied, which makes a commit that
is retried after a crash idempotent. Data files never change; a file is deleted only when no
manifest and no live session (see ``sessions``) references it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from airflow_provider_odps_tunnel.tunnel.codec.partition import PartitionSpec
from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from . import columnar, datafiles
from .errors import EmulatorError
from .fsutil import TMP_SUFFIX, atomic_write_json, fsync_dir, read_json

__all__ = ["Catalog", "TableInfo", "DataFile", "Snapshot", "DEFAULT_BUCKETS", "DEFAULT_SCHEMA"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# Manifests remember this many applied session ids (idempotent commit retries).
_APPLIED_MEMORY = 1000
# Bucket count of a primary-key table created without one (the service's default).
DEFAULT_BUCKETS = 16
# The schema every project has; tables named without a schema are in it.
DEFAULT_SCHEMA = "default"
PART_SUFFIX = ".part"


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise EmulatorError.invalid_argument(
            f"invalid {kind} name {name!r}: use letters, digits and '_' (at most 128)"
        )
    return name


@dataclass(frozen=True)
class DataFile:
    """One immutable data file of a table and its row count."""

    name: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataFile:
        return cls(data["name"], int(data["rows"]))


@dataclass
class Snapshot:
    """The committed contents of one partition at one manifest version."""

    version: int
    files: list[DataFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass
class TableInfo:
    """A table's metadata as stored in ``table.json``."""

    project: str
    name: str
    table_id: str
    schema: TableSchema
    primary_key: list[str]
    buckets: int | None
    created: float
    path: Path
    lifecycle: int | None = None
    comment: str = ""
    #: Bumped by every schema change (``ALTER TABLE ... ADD COLUMNS``); stream sessions
    #: are bound to the version they were created at.
    schema_version: int = 0
    #: The schema (namespace) holding the table: ``default`` unless created in another.
    schema_name: str = DEFAULT_SCHEMA

    @property
    def partitioned(self) -> bool:
        return bool(self.schema.partitions)

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def transactional(self) -> bool:
        return bool(self.primary_key)

    def arrow_schema(self) -> pa.Schema:
        """The storage schema of the data columns."""
        return columnar.storage_schema(self.schema.simple_columns)


class Catalog:
    """The metadata and committed data of one data directory.

    Every method reads the disk afresh (nothing is cached), so a Catalog in a test process
    and the emulator's own may work on the same directory. ``checkpoint`` is called with
    a name at the crash-relevant instants of a commit ("commit:staged" once the new
    manifest is durable but not yet published); the fault injector pauses there.
    """

    def __init__(self, data_dir: str | Path, checkpoint: Callable[[str], None] | None = None):
        self.root = Path(data_dir).resolve()
        self.checkpoint = checkpoint or (lambda name: None)
        self.pinned_files: Callable[[str], set[str]] = lambda table_id: set()
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        (self.root / "projects").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ projects
    def _project_dir(self, project: str) -> Path:
        return self.root / "projects" / project

    def create_project(self, name: str, if_not_exists: bool = True) -> None:
        """Create a project; an existing one is fine unless ``if_not_exists`` is False."""
        _check_name("project", name)
        path = self._project_dir(name)
        if (path / "project.json").exists():
            if not if_not_exists:
                raise EmulatorError("ObjectAlreadyExists", f"project {name} already exists", 409)
            return
        atomic_write_json(path / "project.json", {"name": name, "created": time.time()})

    def project_created(self, name: str) -> float:
        """When a project was created; ``NoSuchProject`` if it does not exist."""
        return float(read_json(self._require_project(name) / "project.json")["created"])

    def project_properties(self, name: str) -> dict[str, str]:
        """A project's properties (``odps.sql.timezone``, ...); ``NoSuchProject`` if none."""
        return dict(read_json(self._require_project(name) / "project.json").get("properties", {}))

    def set_project_property(self, name: str, key: str, value: str) -> None:
        """Set one project property (the service's ``setproject key=value``)."""
        path = self._require_project(name) / "project.json"
        with self._locks_guard:
            data = read_json(path)
            data.setdefault("properties", {})[key] = value
            atomic_write_json(path, data)

    def project_exists(self, name: str) -> bool:
        return (self._project_dir(name) / "project.json").exists()

    def list_projects(self) -> list[str]:
        base = self.root / "projects"
        return sorted(p.name for p in base.iterdir() if (p / "project.json").exists())

    def _require_project(self, project: str) -> Path:
        path = self._project_dir(project)
        if not (path / "project.json").exists():
            raise EmulatorError.no_such_project(project)
        return path

    # ------------------------------------------------------------------ schemas
    @staticmethod
    def _is_default(schema_name: str | None) -> bool:
        return schema_name is None or schema_name.lower() == DEFAULT_SCHEMA

    def _schema_path(self, project: str, schema_name: str) -> Path:
        return (
            self._require_project(project) / "schemas" / _check_name("schema", schema_name).lower()
        )

    def _schema_root(self, project: str, schema_name: str | None) -> Path:
        """The directory holding the schema's ``tables``.

        A missing schema is 404 ``NoSuchObject``, not ``NoSuchSchema``: pyodps tests a
        schema's (and a table's) existence by catching ``NoSuchObject``, and keeps
        ``NoSuchSchema`` for an unknown stream schema version.
        """
        if self._is_default(schema_name):
            return self._require_project(project)
        path = self._schema_path(project, schema_name)
        if not (path / "schema.json").exists():
            raise EmulatorError(
                "NoSuchObject", f"The schema does not exist: {project}.{schema_name}", 404
            )
        return path

    def create_schema(
        self, project: str, name: str, if_not_exists: bool = False, comment: str = ""
    ) -> None:
        """Create a schema in a project (``ObjectAlreadyExists`` unless ``if_not_exists``)."""
        path = self._schema_path(project, name)
        if self._is_default(name) or (path / "schema.json").exists():
            if if_not_exists:
                return
            raise EmulatorError(
                "ObjectAlreadyExists", f"schema {project}.{name} already exists", 409
            )
        meta = {"name": name.lower(), "created": time.time(), "comment": comment or ""}
        atomic_write_json(path / "schema.json", meta)

    def schema_meta(self, project: str, name: str) -> dict[str, Any]:
        """A schema's ``name``, ``created`` time and ``comment`` (404 if it is missing)."""
        if self._is_default(name):
            created = self.project_created(project)
            return {"name": DEFAULT_SCHEMA, "created": created, "comment": ""}
        return read_json(self._schema_root(project, name) / "schema.json")

    def schema_exists(self, project: str, name: str) -> bool:
        try:
            self._schema_root(project, name)
        except EmulatorError:
            return False
        return True

    def list_schemas(self, project: str) -> list[str]:
        """The project's schemas, ``default`` included, sorted."""
        base = self._require_project(project) / "schemas"
        found = [p.name for p in base.glob("*") if (p / "schema.json").exists()]
        return sorted({DEFAULT_SCHEMA, *found})

    def drop_schema(self, project: str, name: str, if_exists: bool = False) -> None:
        """Drop an empty schema (the default schema and a schema with tables cannot be)."""
        if self._is_default(name):
            raise EmulatorError.invalid_argument("the default schema cannot be dropped")
        if not self.schema_exists(project, name):
            if if_exists:
                return
            self._schema_root(project, name)  # raises NoSuchObject
        if self.list_tables(project, schema_name=name):
            raise EmulatorError(
                "InvalidParameter",
                f"schema {project}.{name} is not empty: drop its tables first",
                400,
            )
        shutil.rmtree(self._schema_path(project, name))

    # ------------------------------------------------------------------ tables
    def _table_dir(self, project: str, table: str, schema_name: str | None = None) -> Path:
        # Every lookup checks the name: it becomes a path on disk.
        root = self._schema_root(project, schema_name)
        return root / "tables" / _check_name("table", table).lower()

    def create_table(
        self,
        project: str,
        table: str,
        schema: TableSchema,
        primary_key: list[str] | None = None,
        buckets: int | None = None,
        if_not_exists: bool = False,
        lifecycle: int | None = None,
        comment: str = "",
        schema_name: str | None = None,
    ) -> TableInfo:
        """Create a table (in the schema ``schema_name``, default ``default``). A primary key
        makes it a transactional (upsert) table whose rows are spread over ``buckets`` hash
        buckets (default 16). ``lifecycle`` (days) and ``comment`` are metadata only:
        nothing ever expires."""
        _check_name("table", table)
        path = self._table_dir(project, table, schema_name)
        if (path / "table.json").exists():
            if if_not_exists:
                return self.get_table(project, table, schema_name)
            raise EmulatorError(
                "ObjectAlreadyExists", f"table {project}.{table} already exists", 409
            )
        if not schema.simple_columns:
            raise EmulatorError.invalid_argument("a table needs at least one data column")
        primary_key = list(primary_key or [])
        for key in primary_key:
            if key not in schema or schema.is_partition(key):
                raise EmulatorError.invalid_argument(f"primary key {key!r} is not a data column")
        if buckets is not None and not primary_key:
            raise EmulatorError.invalid_argument("buckets need a primary key")
        if primary_key and buckets is None:
            buckets = DEFAULT_BUCKETS
        if buckets is not None and not 1 <= buckets <= 4096:
            raise EmulatorError.invalid_argument(f"bucket count {buckets} is not in 1..4096")
        # Primary-key columns are NOT NULL, as the service makes them.
        for col in schema.simple_columns:
            if col.name in primary_key:
                col.nullable = False
        meta = {
            "name": table,
            "table_id": uuid.uuid4().hex,
            "schema": schema.to_json(),
            "primary_key": [schema.get_column(k).name for k in primary_key],
            "buckets": buckets,
            "created": time.time(),
            "lifecycle": lifecycle,
            "comment": comment or "",
        }
        (path / "data").mkdir(parents=True, exist_ok=True)
        (path / "partitions").mkdir(exist_ok=True)
        fsync_dir(path)
        if not schema.partitions:
            atomic_write_json(path / "partitions" / "_.json", _manifest(PartitionSpec(), 0, []))
        atomic_write_json(path / "table.json", meta)  # the table exists from here on
        return self._load_table(project, path, schema_name)

    def _load_table(self, project: str, path: Path, schema_name: str | None = None) -> TableInfo:
        meta = read_json(path / "table.json")
        return TableInfo(
            project=project,
            name=meta["name"],
            table_id=meta["table_id"],
            schema=TableSchema.from_json(meta["schema"]),
            primary_key=list(meta.get("primary_key") or []),
            buckets=meta.get("buckets"),
            created=float(meta["created"]),
            path=path,
            lifecycle=meta.get("lifecycle"),
            comment=meta.get("comment") or "",
            schema_version=int(meta.get("schema_version") or 0),
            schema_name=DEFAULT_SCHEMA if self._is_default(schema_name) else schema_name.lower(),
        )

    def add_columns(
        self, project: str, table: str, columns: list[Column], schema_name: str | None = None
    ) -> TableInfo:
        """``ALTER TABLE ... ADD COLUMNS``: append data columns (NULL in existing rows) and
        bump the table's schema version.

        Data files stay immutable: every committed file is copied with the new columns
        (all NULL) and the manifests are republished with the copies before the schema
        changes, so a crash leaves the old schema over files that merely carry unread extra
        columns. Primary-key tables are refused (their upsert files are not rewritten).
        """
        info = self.get_table(project, table, schema_name)
        if info.transactional:
            raise EmulatorError.invalid_argument(
                f"the emulator cannot add columns to the primary-key table {project}.{table}"
            )
        try:
            schema = TableSchema(info.schema.simple_columns + columns, info.schema.partitions)
        except ValueError as exc:
            raise EmulatorError.invalid_argument(str(exc)) from None
        added = columnar.storage_schema(columns)
        with self.table_lock(info):
            specs = self.partitions(info) if info.partitioned else [PartitionSpec()]
            for spec in specs:
                files = self.snapshot(info, spec).files
                self.publish(info, spec, [self._with_nulls(info, f, added) for f in files], None)
            meta = read_json(info.path / "table.json")
            meta["schema"] = schema.to_json()
            meta["schema_version"] = info.schema_version + 1
            atomic_write_json(info.path / "table.json", meta)
            self._collect_garbage(info)
        return self.get_table(project, table, schema_name)

    def _with_nulls(self, info: TableInfo, data_file: DataFile, added: pa.Schema) -> DataFile:
        """A registered copy of ``data_file`` with the ``added`` columns, all NULL."""
        data = datafiles.read_table(info.data_dir / data_file.name)
        for field_ in added:
            data = data.append_column(field_, pa.nulls(data.num_rows, field_.type))
        out = self.new_data_file(info)
        datafiles.write_table(out, data)
        return DataFile(self.register(info, out), data_file.rows)

    def get_table(self, project: str, table: str, schema_name: str | None = None) -> TableInfo:
        """The table's metadata; ``NoSuchTable`` if it does not exist."""
        path = self._table_dir(project, table, schema_name)
        if not (path / "table.json").exists():
            raise EmulatorError.no_such_table(project, table)
        return self._load_table(project, path, schema_name)

    def list_tables(self, project: str, schema_name: str | None = None) -> list[str]:
        """The (lower-case) names of the tables of a project's schema, sorted."""
        base = self._schema_root(project, schema_name) / "tables"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "table.json").exists())

    def table_exists(self, project: str, table: str, schema_name: str | None = None) -> bool:
        try:
            self.get_table(project, table, schema_name)
        except EmulatorError:
            return False
        return True

    def get_schema(self, project: str, table: str, schema_name: str | None = None) -> TableSchema:
        return self.get_table(project, table, schema_name).schema

    def drop_table(
        self, project: str, table: str, if_exists: bool = False, schema_name: str | None = None
    ) -> None:
        """Drop a table and its data. The directory is first renamed away (atomic)."""
        path = self._table_dir(project, table, schema_name)
        if not (path / "table.json").exists():
            if if_exists:
                return
            raise EmulatorError.no_such_table(project, table)
        trash = self.root / "trash"
        trash.mkdir(exist_ok=True)
        target = trash / uuid.uuid4().hex
        path.rename(target)
        fsync_dir(path.parent)
        shutil.rmtree(target, ignore_errors=True)

    # ------------------------------------------------------------------ partitions
    def normalize_spec(self, info: TableInfo, spec: Any) -> PartitionSpec:
        """``spec`` (text, mapping or PartitionSpec) in the table's partition column order.

        A table without partition columns takes only an empty spec; a partitioned table
        needs a value for every partition column.
        """
        try:
            given = spec if isinstance(spec, PartitionSpec) else PartitionSpec(spec or None)
        except (TypeError, ValueError) as exc:
            raise EmulatorError("InvalidPartitionSpec", str(exc), 400) from None
        names = info.schema.partition_names
        if not names:
            if given:
                raise EmulatorError(
                    "InvalidPartitionSpec", f"table {info.name} is not partitioned", 400
                )
            return PartitionSpec()
        if not given:
            raise EmulatorError(
                "MissingPartitionSpec",
                f"You need to specify a partitionspec along with the specified table "
                f"{info.name} (partition columns: {', '.join(names)})",
                400,
            )
        lower = {k.lower(): v for k, v in given.items()}
        if set(lower) != {n.lower() for n in names}:
            raise EmulatorError(
                "InvalidPartitionSpec",
                f"partition spec {given.to_param()} does not name exactly the partition "
                f"columns of {info.name}: {', '.join(names)}",
                400,
            )
        return PartitionSpec({n: lower[n.lower()] for n in names})

    @staticmethod
    def _manifest_path(info: TableInfo, spec: PartitionSpec) -> Path:
        key = quote(spec.to_param(), safe="") if spec else "_"
        return info.path / "partitions" / f"{key}.json"

    def partition_exists(self, info: TableInfo, spec: PartitionSpec) -> bool:
        return self._manifest_path(info, spec).exists()

    def create_partition(
        self,
        project: str,
        table: str,
        spec: Any,
        if_not_exists: bool = False,
        schema_name: str | None = None,
    ) -> PartitionSpec:
        info = self.get_table(project, table, schema_name)
        spec = self.normalize_spec(info, spec)
        with self.table_lock(info):
            if self.partition_exists(info, spec):
                if if_not_exists:
                    return spec
                raise EmulatorError(
                    "ObjectAlreadyExists", f"partition {spec} of {table} already exists", 409
                )
            atomic_write_json(self._manifest_path(info, spec), _manifest(spec, 0, []))
        return spec

    def drop_partition(
        self,
        project: str,
        table: str,
        spec: Any,
        if_exists: bool = False,
        schema_name: str | None = None,
    ) -> None:
        info = self.get_table(project, table, schema_name)
        spec = self.normalize_spec(info, spec)
        with self.table_lock(info):
            path = self._manifest_path(info, spec)
            if not path.exists():
                if if_exists:
                    return
                raise EmulatorError.no_such_partition(info.name, spec.to_param())
            path.unlink()
            fsync_dir(path.parent)
            self._collect_garbage(info)

    def list_partitions(
        self, project: str, table: str, schema_name: str | None = None
    ) -> list[PartitionSpec]:
        return self.partitions(self.get_table(project, table, schema_name))

    def partitions(self, info: TableInfo) -> list[PartitionSpec]:
        """The partitions of a table, in value order (none for a table without partitions)."""
        if not info.partitioned:
            return []
        specs = [
            PartitionSpec(read_json(p)["partition"])
            for p in (info.path / "partitions").glob("*.json")
        ]
        return sorted(specs, key=lambda s: s.values())

    # ------------------------------------------------------------------ snapshots and commits
    @contextmanager
    def table_lock(self, info: TableInfo) -> Iterator[None]:
        """Serialises commits, file registration and garbage collection of one table."""
        with self._locks_guard:
            lock = self._locks.setdefault(info.table_id, threading.RLock())
        with lock:
            yield

    def _read_manifest(self, info: TableInfo, spec: PartitionSpec) -> dict[str, Any] | None:
        path = self._manifest_path(info, spec)
        try:
            return read_json(path)
        except FileNotFoundError:
            return None

    def snapshot(self, info: TableInfo, spec: PartitionSpec) -> Snapshot:
        """The committed contents of a partition; ``NoSuchPartition`` if it is missing."""
        manifest = self._read_manifest(info, spec)
        if manifest is None:
            raise EmulatorError.no_such_partition(info.name, spec.to_param())
        return Snapshot(manifest["version"], [DataFile.from_json(f) for f in manifest["files"]])

    def applied(self, info: TableInfo, spec: PartitionSpec, session_id: str) -> bool:
        """Whether a commit of ``session_id`` already reached this partition's manifest."""
        manifest = self._read_manifest(info, spec)
        return manifest is not None and session_id in manifest.get("sessions", [])

    def publish(
        self,
        info: TableInfo,
        spec: PartitionSpec,
        files: list[DataFile],
        session_id: str | None,
        create: bool = False,
    ) -> None:
        """Make ``files`` the partition's contents, atomically. Caller holds the table lock.

        ``create`` allows the partition not to exist yet (it then comes into existence with
        these files, in the same rename).
        """
        manifest = self._read_manifest(info, spec)
        if manifest is None and not create:
            raise EmulatorError.no_such_partition(info.name, spec.to_param())
        version = manifest["version"] + 1 if manifest else 1
        sessions = list(manifest.get("sessions", [])) if manifest else []
        if session_id is not None:
            sessions = (sessions + [session_id])[-_APPLIED_MEMORY:]
        new = _manifest(spec, version, files, sessions)
        if manifest is not None:
            new["created"] = manifest.get("created", new["created"])
        atomic_write_json(
            self._manifest_path(info, spec),
            new,
            before_rename=lambda: self.checkpoint("commit:staged"),
        )
        self.checkpoint("commit:published")

    def append(
        self,
        info: TableInfo,
        spec: PartitionSpec,
        files: list[DataFile],
        session_id: str | None,
        overwrite: bool = False,
        create: bool = False,
    ) -> bool:
        """Commit ``files`` to a partition (appended, or replacing it with ``overwrite``).

        Returns False when ``session_id`` was already applied (a retried commit): nothing
        changes then. Stream writes pass no session id: each of them is its own commit.
        """
        with self.table_lock(info):
            if session_id is not None and self.applied(info, spec, session_id):
                if overwrite:  # a crash may have come between the publish and the clean-up
                    self._collect_garbage(info)
                return False
            manifest = self._read_manifest(info, spec)
            current = [DataFile.from_json(f) for f in manifest["files"]] if manifest else []
            self.publish(
                info, spec, files if overwrite else current + files, session_id, create=create
            )
            if overwrite:
                self._collect_garbage(info)
            return True

    def new_data_file(self, info: TableInfo) -> Path:
        """A fresh path for a data file being written (``.part`` until registered)."""
        return info.data_dir / f"{uuid.uuid4().hex}{datafiles.SUFFIX}{PART_SUFFIX}"

    def register(self, info: TableInfo, part_path: Path) -> str:
        """Publish a written ``.part`` file under its final name; caller holds the lock."""
        final = part_path.with_name(part_path.name[: -len(PART_SUFFIX)])
        part_path.rename(final)
        fsync_dir(final.parent)
        return final.name

    def delete_files(self, info: TableInfo, names: list[str]) -> None:
        """Delete uncommitted data files (a replaced block, an aborted session)."""
        with self.table_lock(info):
            referenced = self._referenced(info)
            for name in names:
                if name not in referenced:
                    (info.data_dir / name).unlink(missing_ok=True)

    def _referenced(self, info: TableInfo) -> set[str]:
        names = set(self.pinned_files(info.table_id))
        for path in (info.path / "partitions").glob("*.json"):
            names.update(f["name"] for f in read_json(path)["files"])
        return names

    def _collect_garbage(self, info: TableInfo) -> None:
        """Delete data files no manifest and no live session references."""
        referenced = self._referenced(info)
        for path in info.data_dir.glob("*"):
            if datafiles.is_data_file(path.name) and path.name not in referenced:
                path.unlink(missing_ok=True)

    def collect_garbage(self, project: str, table: str, schema_name: str | None = None) -> None:
        info = self.get_table(project, table, schema_name)
        with self.table_lock(info):
            self._collect_garbage(info)

    def recover(self) -> None:
        """At server start: drop half-written files left by a crash."""
        shutil.rmtree(self.root / "trash", ignore_errors=True)
        for pattern in ("projects/*/tables/*/data/*", "projects/*/schemas/*/tables/*/data/*"):
            for path in self.root.glob(pattern + PART_SUFFIX):
                path.unlink(missing_ok=True)
        for path in self.root.rglob(".*" + TMP_SUFFIX):
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    def read_snapshot(
        self, info: TableInfo, snapshot: Snapshot, columns: list[str] | None = None
    ) -> pa.Table:
        """All rows of a snapshot as one Arrow table (data columns, or ``columns``)."""
        schema = info.arrow_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        tables = [datafiles.read_table(info.data_dir / f.name, schema) for f in snapshot.files]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def read_table(
        self, project: str, table: str, partition: Any = None, schema_name: str | None = None
    ) -> pa.Table:
        """The committed rows of a table (for assertions in tests).

        Partitioned tables get their partition columns appended (as strings); without
        ``partition`` every partition is read, in partition order.
        """
        info = self.get_table(project, table, schema_name)
        if not info.partitioned:
            return self.read_snapshot(info, self.snapshot(info, PartitionSpec()))
        specs = (
            [self.normalize_spec(info, partition)]
            if partition is not None
            else self.partitions(info)
        )
        parts = []
        for spec in specs:
            data = self.read_snapshot(info, self.snapshot(info, spec))
            for name, value in spec.items():
                data = data.append_column(name, pa.array([value] * data.num_rows, pa.string()))
            parts.append(data)
        if not parts:
            schema = info.arrow_schema()
            for name in info.schema.partition_names:
                schema = schema.append(pa.field(name, pa.string()))
            return schema.empty_table()
        return pa.concat_tables(parts)

    def partition_stats(self, info: TableInfo, spec: PartitionSpec) -> dict[str, Any]:
        """Created and modified times, rows, bytes and file count of one partition."""
        manifest = self._read_manifest(info, spec)
        if manifest is None:
            raise EmulatorError.no_such_partition(info.name, spec.to_param())
        size = 0
        for f in manifest["files"]:
            with contextlib.suppress(FileNotFoundError):
                size += (info.data_dir / f["name"]).stat().st_size
        return {
            "created": float(manifest.get("created", manifest["modified"])),
            "modified": float(manifest["modified"]),
            "rows": sum(f["rows"] for f in manifest["files"]),
            "size": size,
            "files": len(manifest["files"]),
        }

    def table_stats(self, info: TableInfo) -> tuple[int, int]:
        """(committed rows, bytes of committed data files) over all partitions."""
        rows = size = 0
        for path in (info.path / "partitions").glob("*.json"):
            for f in read_json(path)["files"]:
                rows += f["rows"]
                with contextlib.suppress(FileNotFoundError):
                    size += (info.data_dir / f["name"]).stat().st_size
        return rows, size

    # ------------------------------------------------------------------ volumes
    def volume_dir(self, project: str, volume: str) -> Path:
        """The directory of an existing volume; ``NoSuchVolume`` otherwise."""
        path = self._require_project(project) / "volumes" / volume
        if not (path / "volume.json").exists():
            raise EmulatorError("NoSuchVolume", f"The volume does not exist: {volume}", 404)
        return path

    def create_volume(
        self,
        project: str,
        volume: str,
        if_not_exists: bool = False,
        volume_type: str = "old",
        comment: str = "",
    ) -> None:
        """Create a volume: ``volume_type`` ``old`` (partitioned) or ``new`` (file system)."""
        _check_name("volume", volume)
        if volume_type not in ("old", "new"):
            raise EmulatorError.invalid_argument(f"unsupported volume type {volume_type!r}")
        path = self._require_project(project) / "volumes" / volume
        if (path / "volume.json").exists():
            if if_not_exists:
                return
            raise EmulatorError("ObjectAlreadyExists", f"volume {volume} already exists", 409)
        meta = {"name": volume, "created": time.time(), "type": volume_type, "comment": comment}
        atomic_write_json(path / "volume.json", meta)

    def list_volumes(self, project: str) -> list[str]:
        """Names of the project's volumes, sorted."""
        root = self._require_project(project) / "volumes"
        return sorted(p.parent.name for p in root.glob("*/volume.json"))

    def drop_volume(self, project: str, volume: str, if_exists: bool = False) -> None:
        try:
            path = self.volume_dir(project, volume)
        except EmulatorError:
            if if_exists:
                return
            raise
        shutil.rmtree(path)


def _manifest(
    spec: PartitionSpec, version: int, files: list[DataFile], sessions: list[str] | None = None
) -> dict[str, Any]:
    now = time.time()
    return {
        "partition": dict(spec.items()),
        "version": version,
        "files": [f.to_json() for f in files],
        "sessions": sessions or [],
        "created": now,
        "modified": now,
    }
