"""The ``odps-tunnel-emulator`` command: serving (with or without the ``serve``
subcommand), the admin subcommands and the schema text they take."""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from airflow_provider_odps_tunnel.emulator import Catalog, cli
from airflow_provider_odps_tunnel.emulator.cli import build_parser, main
from airflow_provider_odps_tunnel.tunnel.codec.schema import parse_columns


def test_parse_columns_keeps_nested_commas():
    cols = parse_columns("a bigint, b decimal(18,4), c map<string,array<int>>, `d` string")
    assert [(c.name, c.type.name) for c in cols] == [
        ("a", "bigint"),
        ("b", "decimal(18,4)"),
        ("c", "map<string,array<int>>"),
        ("d", "string"),
    ]


def test_admin_subcommands(tmp_path, capsys):
    data = str(tmp_path)
    assert main(["create-project", "p2", "--data-dir", data]) == 0
    assert (
        main(
            [
                "create-table",
                "orders",
                "--data-dir",
                data,
                "--project",
                "p2",
                "--schema",
                "id bigint, amount decimal(18,4)",
                "--partitions",
                "ds string",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "create-table",
                "kv",
                "--data-dir",
                data,
                "--project",
                "p2",
                "--schema",
                "k string, v bigint",
                "--primary-key",
                "k",
                "--buckets",
                "4",
            ]
        )
        == 0
    )
    assert (
        main(["create-partition", "orders", "ds=20240101", "--data-dir", data, "--project", "p2"])
        == 0
    )
    assert (
        main(["create-partition", "orders", "ds=20240102", "--data-dir", data, "--project", "p2"])
        == 0
    )
    capsys.readouterr()
    assert main(["list-partitions", "orders", "--data-dir", data, "--project", "p2"]) == 0
    assert capsys.readouterr().out.split() == ["ds=20240101", "ds=20240102"]
    assert (
        main(["drop-partition", "orders", "ds=20240101", "--data-dir", data, "--project", "p2"])
        == 0
    )
    catalog = Catalog(data)
    assert [s.to_param() for s in catalog.list_partitions("p2", "orders")] == ["ds=20240102"]
    info = catalog.get_table("p2", "kv")
    assert info.primary_key == ["k"] and info.buckets == 4
    assert main(["drop-table", "orders", "--data-dir", data, "--project", "p2"]) == 0
    assert not catalog.table_exists("p2", "orders")
    assert main(["drop-table", "orders", "--data-dir", data, "--project", "p2"]) == 1
    assert "does not exist" in capsys.readouterr().err


def _command() -> list[str]:
    """The installed console script (next to this interpreter), else ``python -m``."""
    script = Path(sys.executable).with_name("odps-tunnel-emulator")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "airflow_provider_odps_tunnel.emulator"]


def _announced(proc: subprocess.Popen, timeout: float) -> dict[str, str]:
    """The ``key: value`` lines the server prints once it accepts connections.

    Waits on the child's stdout (select, bounded by ``timeout``), never sleeps."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    out = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not re.search(rb"\n  request_log: [^\n]*\n", out):  # its last line
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no announcement within {timeout}s; output: {out!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"exited with {proc.wait()}; output: {out!r}")
            out += chunk
    _, marker, text = out.decode().partition("odps-tunnel-emulator serving\n")
    assert marker, out
    pairs = (line.strip().partition(": ") for line in text.splitlines() if line.startswith("  "))
    return {key: value for key, _, value in pairs}


def _health(endpoint: str, attempts: int = 5) -> dict:
    """GET the admin health resource, retrying (a bounded number of times) until it answers."""
    url = urlsplit(endpoint)
    error: Exception | None = None
    for _ in range(attempts):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            conn.request("GET", "/__emulator__/health")
            resp = conn.getresponse()
            return {"status_code": resp.status, **json.loads(resp.read())}
        except OSError as exc:
            error = exc
        finally:
            conn.close()
    raise AssertionError(f"{endpoint} did not answer: {error}")


def test_command_without_subcommand_serves(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*_command(), "--data-dir", str(data), "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,
    )
    try:
        info = _announced(proc, timeout=60)
        port = urlsplit(info["tunnel_endpoint"]).port
        assert info["endpoint"] == f"http://127.0.0.1:{port}/api"
        assert info["access_id"] == "test-access-id" and info["data_dir"] == str(data.resolve())
        assert "test_project" in info["projects"]
        assert _health(info["tunnel_endpoint"]) == {
            "status_code": 200,
            "status": "ok",
            "port": port,
        }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a graceful stop, not death by the signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_no_subcommand_means_serve(monkeypatch):
    served = {}
    monkeypatch.setattr(
        cli, "serve", lambda config, **kwargs: served.update(config=config, **kwargs)
    )
    assert main(["--data-dir", "d", "--port", "8765", "--no-auth"]) == 0
    assert served["config"].port == 8765 and served["config"].auth is False
    assert served["announce"] is True
    assert build_parser().parse_args(["serve", "--data-dir", "d"]).command == "serve"
