"""The ``odps-tunnel-emulator`` admin subcommands and the schema text they take."""

from __future__ import annotations

from airflow_provider_odps_tunnel.emulator import Catalog
from airflow_provider_odps_tunnel.emulator.cli import main, parse_columns


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
