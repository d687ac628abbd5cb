"""Interoperability through the emulator: pyodps reads what we write and we read what
pyodps writes, on the record and the Arrow paths, with the typical column types."""

from __future__ import annotations

import pandas as pd

from airflow_provider_odps_tunnel.tunnel import TableTunnel

from .test_table_download import SCHEMA, rows

COLUMNS = ["id", "name", "score", "flag", "ts", "amount"]


def test_ours_write_records_pyodps_reads(tunnel, py_tunnel, emulator_table):
    table = emulator_table(SCHEMA, partitions="pt string")
    session = tunnel.create_upload_session(table, partition_spec="pt=a", create_partition=True)
    with session.open_record_writer(buffer_size=4096) as writer:
        for row in rows(500):
            writer.write(row)
    session.commit(writer.get_blocks_written())
    down = py_tunnel.create_download_session(table, partition_spec="pt=a")
    got = [list(r.values)[:6] for r in down.open_record_reader(0, down.count)]
    assert got == rows(500)


def test_pyodps_writes_records_ours_read(tunnel, py_tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    session = py_tunnel.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        for row in rows(500):
            writer.write(session.new_record(row))
    session.commit([0])
    down = tunnel.create_download_session(table)
    assert [r.values for r in down.open_record_reader(0, down.count)] == rows(500)


def test_ours_write_arrow_pyodps_reads(tunnel, py_tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    frame = pd.DataFrame(rows(500), columns=COLUMNS)
    session = tunnel.create_upload_session(table)
    with session.open_arrow_writer(compress=True) as writer:
        writer.write(frame)
    session.commit(writer.get_blocks_written())
    down = py_tunnel.create_download_session(table)
    got = down.open_arrow_reader(0, down.count).read().to_pandas()
    pd.testing.assert_frame_equal(got[COLUMNS[:4] + ["amount"]], frame[COLUMNS[:4] + ["amount"]])
    assert list(got["ts"]) == list(frame["ts"])


def test_pyodps_writes_arrow_ours_read(tunnel, py_tunnel, emulator_table):
    table = emulator_table(SCHEMA)
    frame = pd.DataFrame(rows(500), columns=COLUMNS)
    session = py_tunnel.create_upload_session(table)
    with session.open_arrow_writer(0) as writer:
        writer.write(frame)
    session.commit([0])
    down = tunnel.create_download_session(table)
    got = down.open_arrow_reader(0, down.count).to_pandas()
    pd.testing.assert_frame_equal(got[COLUMNS[:4] + ["amount"]], frame[COLUMNS[:4] + ["amount"]])
    assert list(got["ts"]) == list(frame["ts"])


def test_pyodps_entry_object_is_accepted(pyodps, emulator_table):
    table = emulator_table("a bigint")
    ours = TableTunnel(pyodps)
    session = ours.create_upload_session(table)
    with session.open_record_writer(0) as writer:
        writer.write([7])
    session.commit([0])
    assert TableTunnel(pyodps).tunnel_rest is ours.tunnel_rest  # one pool per entry object
    py_table = pyodps.get_table(table)
    down = ours.create_download_session(py_table)
    assert [r["a"] for r in down.open_record_reader(0, 1)] == [7]
