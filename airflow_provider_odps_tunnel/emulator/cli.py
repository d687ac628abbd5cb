"""The ``odps-tunnel-emulator`` command: ``serve`` a data directory, or administer it.

``serve`` prints the endpoints, projects and key pair and serves until interrupted; its
options are the fields of ``EmulatorConfig`` (limits, rate limits, request log). The admin
subcommands (``create-project``, ``create-table``, ``drop-table``, ``create-partition``,
``drop-partition``, ``list-partitions``) work on the data directory directly and may be used
while a server runs on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_odps_tunnel.tunnel.codec.schema import Column, TableSchema

from .catalog import Catalog
from .errors import EmulatorError

if TYPE_CHECKING:
    from .state import EmulatorConfig

__all__ = ["main", "parse_columns", "option_args"]

# EmulatorConfig field -> serve flag, for the options that take a value.
_VALUE_OPTIONS = {
    "host": "--host",
    "project": "--project",
    "access_id": "--access-id",
    "secret_access_key": "--secret-access-key",
    "session_lifetime": "--session-lifetime",
    "max_field_size": "--max-field-size",
    "preview_limit": "--preview-limit",
    "instance_result_limit": "--instance-result-limit",
    "session_rate_limit": "--session-rate-limit",
    "commit_rate_limit": "--commit-rate-limit",
    "instance_wait": "--instance-wait",
    "upsert_commit_delay": "--upsert-commit-delay",
}


def option_args(config: EmulatorConfig) -> list[str]:
    """``serve`` flags reproducing ``config`` (used to start a child-process emulator)."""
    args: list[str] = []
    for name, value in config.options().items():
        if name in _VALUE_OPTIONS and value is not None:
            args += [_VALUE_OPTIONS[name], str(value)]
    if not config.auth:
        args.append("--no-auth")
    if not config.request_log:
        args.append("--no-request-log")
    if config.request_log_stderr:
        args.append("--request-log-stderr")
    return args


def parse_columns(text: str) -> list[Column]:
    """Columns from ``'a bigint, b decimal(18,4), c map<string,bigint>'``."""
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import EmulatorApp
    from .server import _bind, configure_logging
    from .state import EmulatorConfig, EmulatorState

    configure_logging(args.log_level)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    config = EmulatorConfig(
        data_dir=Path(args.data_dir).resolve(),
        port=port,
        auth=not args.no_auth,
        request_log=not args.no_request_log,
        request_log_stderr=args.request_log_stderr,
        **{name: getattr(args, name) for name in _VALUE_OPTIONS},
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    state = EmulatorState(config)
    state.port = port
    server = uvicorn.Server(
        uvicorn.Config(
            EmulatorApp(state),
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=120,
        )
    )

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if not server.started:
            return
        info = {
            "endpoint": f"http://{args.host}:{port}/api",
            "tunnel_endpoint": f"http://{args.host}:{port}",
            "projects": state.catalog.list_projects(),
            "access_id": config.access_id,
            "secret_access_key": config.secret_access_key,
            "auth": config.auth,
            "data_dir": str(config.data_dir),
            "request_log": str(state.request_log.path) if state.request_log.path else "off",
        }
        print("odps-tunnel-emulator serving")
        for key, value in info.items():
            print(f"  {key}: {value}")
        sys.stdout.flush()
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({**info, "port": port}))

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])
    state.close()
    return 0


def _catalog(args: argparse.Namespace) -> Catalog:
    return Catalog(args.data_dir)


def _create_table(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    catalog.create_project(args.project)
    schema = TableSchema(
        parse_columns(args.schema), parse_columns(args.partitions) if args.partitions else []
    )
    primary_key = [k.strip() for k in args.primary_key.split(",")] if args.primary_key else None
    catalog.create_table(
        args.project,
        args.name,
        schema,
        primary_key=primary_key,
        buckets=args.buckets,
        if_not_exists=args.if_not_exists,
    )
    print(f"created table {args.project}.{args.name}: {schema!r}")
    return 0


def _run_admin(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.command == "create-project":
        catalog.create_project(args.name)
        print(f"created project {args.name}")
    elif args.command == "drop-table":
        catalog.drop_table(args.project, args.name, if_exists=args.if_exists)
        print(f"dropped table {args.project}.{args.name}")
    elif args.command == "create-partition":
        spec = catalog.create_partition(
            args.project, args.name, args.partition, if_not_exists=args.if_not_exists
        )
        print(f"created partition {spec.to_param()} of {args.project}.{args.name}")
    elif args.command == "drop-partition":
        catalog.drop_partition(args.project, args.name, args.partition, if_exists=args.if_exists)
        print(f"dropped partition {args.partition} of {args.project}.{args.name}")
    elif args.command == "list-partitions":
        for spec in catalog.list_partitions(args.project, args.name):
            print(spec.to_param())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odps-tunnel-emulator", description="A local MaxCompute (ODPS) tunnel emulator."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="directory holding all state")
        p.add_argument("--project", default="test_project", help="project (default test_project)")

    serve = sub.add_parser("serve", help="serve the tunnel and the service endpoint")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--access-id", default="test-access-id")
    serve.add_argument("--secret-access-key", default="test-secret")
    serve.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--session-lifetime", type=float, default=24 * 3600.0, help="seconds (default 24 h)"
    )
    serve.add_argument(
        "--max-field-size", type=int, default=8 * 1024 * 1024, help="bytes of one value"
    )
    serve.add_argument("--preview-limit", type=int, default=10000, help="rows of a preview")
    serve.add_argument(
        "--instance-result-limit",
        type=int,
        default=10000,
        help="rows of a limited instance download",
    )
    serve.add_argument(
        "--session-rate-limit",
        metavar="COUNT/SECONDS",
        help="sessions created per table and kind, e.g. 500/300 (default: no limit)",
    )
    serve.add_argument(
        "--commit-rate-limit",
        metavar="COUNT/SECONDS",
        help="commits per table, e.g. 75/15 (default: no limit)",
    )
    serve.add_argument(
        "--instance-wait",
        type=float,
        default=30.0,
        help="seconds a SQL submission waits for its job before answering",
    )
    serve.add_argument(
        "--upsert-commit-delay",
        type=float,
        default=0.0,
        help="seconds (emulator clock) an upsert commit reports 'committing' (default 0: off)",
    )
    serve.add_argument("--no-request-log", action="store_true", help="do not write requests.jsonl")
    serve.add_argument(
        "--request-log-stderr", action="store_true", help="also print the request log"
    )
    serve.add_argument("--ready-file", help=argparse.SUPPRESS)

    project = sub.add_parser("create-project", help="create a project")
    project.add_argument("name")
    project.add_argument("--data-dir", required=True)

    table = sub.add_parser("create-table", help="create a table")
    common(table)
    table.add_argument("name")
    table.add_argument("--schema", required=True, help="'a bigint, b string'")
    table.add_argument("--partitions", help="partition columns, e.g. 'pt string'")
    table.add_argument("--primary-key", help="comma-separated primary key (upsert tables)")
    table.add_argument("--buckets", type=int, help="hash buckets of a primary-key table")
    table.add_argument("--if-not-exists", action="store_true")

    drop = sub.add_parser("drop-table", help="drop a table")
    common(drop)
    drop.add_argument("name")
    drop.add_argument("--if-exists", action="store_true")

    for name, helptext, flag in (
        ("create-partition", "create a partition", "--if-not-exists"),
        ("drop-partition", "drop a partition", "--if-exists"),
    ):
        p = sub.add_parser(name, help=helptext)
        common(p)
        p.add_argument("name", help="table")
        p.add_argument("partition", help="e.g. 'pt=20240101,region=eu'")
        p.add_argument(flag, action="store_true")

    listing = sub.add_parser("list-partitions", help="list a table's partitions")
    common(listing)
    listing.add_argument("name", help="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "create-table":
            return _create_table(args)
        return _run_admin(args)
    except (EmulatorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
