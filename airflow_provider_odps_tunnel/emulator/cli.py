"""The ``odps-tunnel-emulator`` command: ``serve`` a data directory, or administer it.

``serve`` (also what the command does without a subcommand) prints the endpoints, projects
and key pair and serves until interrupted; its options are the fields of
``EmulatorConfig`` (limits, rate limits, request log), and the serving itself is
:func:`.server.serve`. The admin subcommands (``create-project``, ``create-table``,
``drop-table``, ``create-partition``, ``drop-partition``, ``list-partitions``) work on the
data directory directly and may be used while a server runs on it. This module only
parses arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_odps_tunnel.tunnel.codec.schema import TableSchema, parse_columns

from .catalog import Catalog
from .errors import EmulatorError
from .server import SERVE_OPTIONS, serve
from .state import EmulatorConfig

__all__ = ["main", "build_parser"]


def _serve(args: argparse.Namespace) -> int:
    config = EmulatorConfig(
        data_dir=Path(args.data_dir),
        port=args.port,
        auth=not args.no_auth,
        request_log=not args.no_request_log,
        request_log_stderr=args.request_log_stderr,
        download_metrics=not args.no_download_metrics,
        idempotent_commit=args.idempotent_commit,
        upsert_partial_update=args.upsert_partial_update,
        **{name: getattr(args, name) for name in SERVE_OPTIONS},
    )
    serve(
        config,
        log_level=args.log_level,
        configure_logging=True,
        announce=True,
        ready_file=args.ready_file,
    )
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
        prog="odps-tunnel-emulator",
        description="A local MaxCompute (ODPS) tunnel emulator.",
        epilog="Without a subcommand, the options are those of `serve`, and it serves:\n"
        "  odps-tunnel-emulator --data-dir DIR [--port PORT] [serve options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", required=True, help="directory holding all state")
        p.add_argument("--project", default="test_project", help="project (default test_project)")

    serving = sub.add_parser("serve", help="serve the tunnel and the service endpoint")
    common(serving)
    serving.add_argument("--host", default="127.0.0.1")
    serving.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serving.add_argument("--access-id", default="test-access-id")
    serving.add_argument("--secret-access-key", default="test-secret")
    serving.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    serving.add_argument("--log-level", default="info")
    serving.add_argument(
        "--session-lifetime", type=float, default=24 * 3600.0, help="seconds (default 24 h)"
    )
    serving.add_argument(
        "--max-field-size", type=int, default=8 * 1024 * 1024, help="bytes of one value"
    )
    serving.add_argument("--preview-limit", type=int, default=10000, help="rows of a preview")
    serving.add_argument(
        "--instance-result-limit",
        type=int,
        default=10000,
        help="rows of a limited instance download",
    )
    serving.add_argument(
        "--session-rate-limit",
        metavar="COUNT/SECONDS",
        help="sessions created per table and kind, e.g. 500/300 (default: no limit)",
    )
    serving.add_argument(
        "--commit-rate-limit",
        metavar="COUNT/SECONDS",
        help="commits per table, e.g. 75/15 (default: no limit)",
    )
    serving.add_argument(
        "--instance-wait",
        type=float,
        default=30.0,
        help="seconds a SQL submission waits for its job before answering",
    )
    serving.add_argument(
        "--upsert-commit-delay",
        type=float,
        default=0.0,
        help="seconds (emulator clock) an upsert commit reports 'committing' (default 0: off)",
    )
    serving.add_argument(
        "--upsert-hasher",
        choices=("default", "legacy"),
        default="default",
        help="hasher of new upsert sessions (default: default)",
    )
    serving.add_argument(
        "--upsert-partial-update",
        action="store_true",
        help="upsert sessions take partial updates (__value_cols; default: refused)",
    )
    serving.add_argument(
        "--upsert-idle-timeout",
        type=float,
        default=0.0,
        help="seconds (emulator clock) without requests after which a normal upsert session "
        "expires (default 0: never)",
    )
    serving.add_argument(
        "--quotas",
        metavar="NAME,...",
        help="the tunnel quotas that exist; another quotaName is QuotaNotExist "
        "(default: any quota name is accepted)",
    )
    serving.add_argument(
        "--protected-projects",
        metavar="NAME,...",
        help="projects with project protection: instance-tunnel downloads of results only "
        "in the limited mode, else NoPermission (default: none)",
    )
    serving.add_argument(
        "--download-init-delay",
        type=float,
        default=0.0,
        help="seconds (emulator clock) an asyncmode download session is 'initiating' "
        "(default 0: ready at once)",
    )
    serving.add_argument(
        "--no-download-metrics",
        action="store_true",
        help="no metrics block in record download bodies (default: sent at version 6+)",
    )
    serving.add_argument(
        "--idempotent-commit",
        action="store_true",
        help="answer a repeated upload commit with the session, not StatusConflict",
    )
    serving.add_argument(
        "--upload-bandwidth",
        metavar="RATE",
        help="cap per request body, e.g. 8MB (bytes/s; KB, MB, KiB, MiB...; default: no cap)",
    )
    serving.add_argument(
        "--download-bandwidth",
        metavar="RATE",
        help="cap per response body, e.g. 8MB (default: no cap)",
    )
    serving.add_argument(
        "--stream-limit",
        type=int,
        metavar="N",
        help="data bodies (block PUTs, downloads) in flight at once per table or project; "
        "more are answered 429 FlowExceeded (default: no limit)",
    )
    serving.add_argument(
        "--stream-limit-scope",
        choices=("table", "project"),
        default="table",
        help="what --stream-limit counts per (default: table)",
    )
    serving.add_argument(
        "--request-latency",
        type=float,
        default=0.0,
        help="seconds added before answering each request (default 0: none)",
    )
    serving.add_argument(
        "--no-request-log", action="store_true", help="do not write requests.jsonl"
    )
    serving.add_argument(
        "--request-log-stderr", action="store_true", help="also print the request log"
    )
    serving.add_argument("--ready-file", help=argparse.SUPPRESS)

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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")  # options without a subcommand: serve
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
