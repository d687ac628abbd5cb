"""SQL instances: the jobs ``POST /projects/{p}/instances`` submits, run and remembered.

An instance is stored as ``instances/<id>/instance.json`` (written atomically at every
change) next to its result files. Its SQL tasks run one after the other on the embedded
engine; each task ends ``Success`` with its text result (a query's CSV, else ``OK``) or
``Failed`` with the service's error text, which is what pyodps turns into its exceptions.
The last query's result stays for the instance tunnel. Instances that were running when the
emulator stopped are marked failed when it starts again.

A running instance can be stopped (pyodps's ``Instance.stop``): it ends ``Terminated`` at
once, its unfinished tasks ``Cancelled``; a statement already inside DuckDB runs to its end,
but its outcome is discarded (no result for the instance tunnel; a write it made stays).
The task setting ``emulator.hold.seconds`` keeps a task ``Running`` until that many seconds
of the emulator's clock after the submission before its SQL runs, so a test can see an
instance run, stop it, or release it by advancing the clock, without waiting for a slow
query.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from .errors import EmulatorError
from .fsutil import atomic_write_json, read_json
from .sql import SqlEngine, SqlError

__all__ = ["InstanceStore", "parse_job", "hold_seconds", "OWNER", "HOLD_KEY"]

logger = logging.getLogger("odps_tunnel_emulator.sql")

OWNER = "ALIYUN$emulator@example.com"
RUNNING, TERMINATED = "Running", "Terminated"
SUCCESS, FAILED, WAITING, CANCELLED = "Success", "Failed", "Waiting", "Cancelled"
#: Task setting: seconds (emulator clock) a task stays ``Running`` before its SQL runs.
HOLD_KEY = "emulator.hold.seconds"
#: How often a held task looks at the emulator's clock (seconds of real time).
_HOLD_CHECK = 0.05
STOPPED_TEXT = "ODPS-0110061:Instance stopped - the instance was terminated by a stop request"


def hold_seconds(settings: dict[str, Any] | None) -> float:
    """A task's ``emulator.hold.seconds`` setting (0 when absent or not a number)."""
    if not isinstance(settings, dict):
        return 0.0
    try:
        seconds = float(settings.get(HOLD_KEY, 0))
    except (TypeError, ValueError):
        return 0.0
    return seconds if 0 < seconds < float("inf") else 0.0


def new_instance_id() -> str:
    """An id in the service's style: a UTC timestamp followed by random characters."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + uuid.uuid4().hex[:14]


def parse_job(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The ``<Job>`` XML text and its tasks (name, type, query, settings) of a submission."""
    try:
        return _parse_job(body)
    except RecursionError:  # deep element nesting, or deep JSON in the settings
        raise EmulatorError("InvalidXmlRequest", "the instance body is nested too deeply") from None


def _parse_job(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise EmulatorError("InvalidXmlRequest", f"the instance body is not XML: {exc}") from None
    job = root if root.tag == "Job" else root.find("Job")
    tasks_node = job.find("Tasks") if job is not None else None
    if job is None or tasks_node is None or not len(tasks_node):
        raise EmulatorError.invalid_argument("the instance body has no <Job><Tasks>")
    tasks = []
    for node in tasks_node:
        settings: dict[str, Any] = {}
        for prop in node.iterfind("Config/Property"):
            if prop.findtext("Name") == "settings":
                try:
                    settings = json.loads(prop.findtext("Value") or "{}")
                except ValueError:
                    settings = {}
        tasks.append(
            {
                "name": node.findtext("Name") or "AnonymousSQLTask",
                "type": node.tag,
                "query": node.findtext("Query") or "",
                "settings": settings,
            }
        )
    return ElementTree.tostring(job, encoding="unicode"), tasks


class InstanceStore:
    """The instances of one data directory; :meth:`run` executes one (blocking)."""

    def __init__(self, root: Path, engine: SqlEngine, clock: Callable[[], float] = time.time):
        self.dir = root / "instances"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.clock = clock
        # Guards instance files against a stop racing the runner; one event per live run.
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._recover()

    def _path(self, instance_id: str) -> Path:
        return self.dir / instance_id / "instance.json"

    def result_dir(self, instance_id: str) -> Path:
        """Where an instance's result files live."""
        return self.dir / instance_id

    def _save(self, instance: dict[str, Any]) -> None:
        atomic_write_json(self._path(instance["id"]), instance)

    def _recover(self) -> None:
        for path in self.dir.glob("*/instance.json"):
            instance = read_json(path)
            if instance["status"] != RUNNING:
                continue
            for task in instance["tasks"]:
                if task["status"] in (RUNNING, WAITING):
                    task.update(status=FAILED, end=time.time())
                    task["result"] = "ODPS-0010000:System internal error - the emulator stopped"
            instance.update(status=TERMINATED, end=time.time())
            self._save(instance)

    def create(self, project: str, job_xml: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Record a submitted job (status ``Running``, tasks ``Waiting``)."""
        now = time.time()
        instance = {
            "id": new_instance_id(),
            "project": project,
            "owner": OWNER,
            "status": RUNNING,
            "start": now,
            "end": None,
            "job": job_xml,
            "tasks": [
                {**t, "status": WAITING, "result": "", "start": None, "end": None} for t in tasks
            ],
            "result": None,
            # Holds count from here, on the emulator's clock.
            "submitted_clock": self.clock(),
        }
        with self._lock:
            self._save(instance)
            self._stops[instance["id"]] = threading.Event()
        return instance

    def get(self, project: str, instance_id: str) -> dict[str, Any]:
        """An instance of ``project``; ``NoSuchObject`` (404) if there is none."""
        path = self._path(instance_id)
        if not instance_id.isalnum() or not path.exists():
            raise EmulatorError("NoSuchObject", f"The instance does not exist: {instance_id}", 404)
        instance = read_json(path)
        if instance["project"] != project:
            raise EmulatorError("NoSuchObject", f"The instance does not exist: {instance_id}", 404)
        return instance

    def stop(self, project: str, instance_id: str) -> dict[str, Any]:
        """Stop a running instance: ``Terminated`` now, unfinished tasks ``Cancelled``.

        An instance that already ended is left as it is (stopping is idempotent).
        Returns the instance as it is afterwards.
        """
        with self._lock:
            instance = self.get(project, instance_id)
            if instance["status"] != RUNNING:
                return instance
            now = time.time()
            for task in instance["tasks"]:
                if task["status"] in (RUNNING, WAITING):
                    task.update(status=CANCELLED, result=STOPPED_TEXT, end=now)
                    task["start"] = task["start"] or now
            instance.update(status=TERMINATED, end=now)
            self._save(instance)
            self._stops.setdefault(instance_id, threading.Event()).set()
        logger.info("instance %s stopped", instance_id)
        return instance

    def _stopped(self, instance_id: str) -> bool:
        event = self._stops.get(instance_id)
        return event is not None and event.is_set()

    def _save_unless_stopped(self, instance: dict[str, Any]) -> bool:
        """Persist the runner's view of ``instance``; False (nothing written) once stopped."""
        with self._lock:
            if self._stopped(instance["id"]):
                return False
            self._save(instance)
            return True

    def _hold(self, instance: dict[str, Any], settings: dict[str, Any] | None) -> None:
        """Keep a task running until ``emulator.hold.seconds`` (emulator clock) after the
        instance was submitted, or until the instance is stopped."""
        seconds = hold_seconds(settings)
        if seconds <= 0:
            return
        until = instance.get("submitted_clock", self.clock()) + seconds
        event = self._stops.get(instance["id"]) or threading.Event()
        while self.clock() < until and not event.wait(_HOLD_CHECK):
            pass

    def run(self, instance_id: str) -> None:
        """Run every task of an instance in order; a failed task ends the instance.

        A stop (:meth:`stop`) ends the run at the next task boundary, and the outcome of
        a statement that was running is dropped.
        """
        try:
            self._run(instance_id)
        finally:
            with self._lock:
                self._stops.pop(instance_id, None)

    def _run(self, instance_id: str) -> None:
        instance = read_json(self._path(instance_id))
        failed = False
        for task in instance["tasks"]:
            if self._stopped(instance_id):
                return
            task["start"] = time.time()
            if failed:
                task.update(status=FAILED, result="ODPS-0010000:a previous task failed")
            elif task["type"] != "SQL":
                task.update(
                    status=FAILED,
                    result=f"ODPS-0130161:[1,1] Parse exception - the emulator runs SQL tasks "
                    f"only, not {task['type']}",
                )
            else:
                task["status"] = RUNNING
                if not self._save_unless_stopped(instance):
                    return
                self._hold(instance, task.get("settings"))
                if self._stopped(instance_id):
                    return
                try:
                    outcome = self.engine.run(
                        instance["project"],
                        task["query"],
                        self.result_dir(instance_id),
                        task.get("settings"),
                    )
                except SqlError as exc:
                    task.update(status=FAILED, result=exc.text())
                except Exception as exc:  # noqa: BLE001 - reported as the service does
                    logger.exception("instance %s failed", instance_id)
                    task.update(
                        status=FAILED,
                        result=f"ODPS-0010000:System internal error - {type(exc).__name__}: {exc}",
                    )
                else:
                    task.update(status=SUCCESS, result=outcome.summary)
                    if outcome.query is not None:
                        task["has_result"] = True
                        instance["result"] = outcome.query.to_json()
            failed = failed or task["status"] == FAILED
            task["end"] = time.time()
        instance.update(status=TERMINATED, end=time.time())
        self._save_unless_stopped(instance)
