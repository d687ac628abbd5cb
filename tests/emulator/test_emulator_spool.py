"""A body still being received when the server stops must not leave its worker waiting."""

from __future__ import annotations

import threading

from airflow_provider_odps_tunnel.emulator.errors import EmulatorError
from airflow_provider_odps_tunnel.emulator.ingest import Spool, abort_spools


def test_aborting_open_spools_releases_a_waiting_reader(tmp_path):
    spool = Spool(tmp_path / "body")
    spool.write(b"partial body")
    outcome: list[BaseException | bytes] = []

    def worker() -> None:
        try:
            while spool.read(4):
                pass
        except EmulatorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    thread.join(timeout=0.2)
    assert thread.is_alive()  # waiting for bytes that will never come
    abort_spools({spool})
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and outcome[0].code == "IncompleteBody"
    spool.close()


def test_a_finished_body_reads_to_the_end(tmp_path):
    spool = Spool(tmp_path / "body")
    spool.write(b"abc")
    spool.finish(ok=True)
    assert spool.read() == b"abc" and spool.read() == b""
    spool.close()
    assert not spool.path.exists()  # staging files do not outlive their request
