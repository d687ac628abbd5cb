"""SQL instances on the service endpoint: submit a SQL task, poll it, read its result.

``ODPS.run_sql`` posts a ``<Instance><Job>`` XML document with one SQL task to
``POST /projects/{p}/instances`` and returns an :class:`Instance` named by the
``Location`` the service answers. The instance is polled with ``GET .../instances/{id}``
(``<Status>``: ``Running``, ``Suspended``, ``Terminated``), its tasks with ``?taskstatus``
and, when one failed, its error text with ``?result``. A query's rows are read through the
instance tunnel (:class:`~.instance_tunnel.InstanceTunnel`). ``PUT .../instances/{id}`` with
``<Instance><Status>Terminated</Status></Instance>`` stops a running instance, and the
LogView address is built as pyodps builds its legacy one: the host the service names
(``GET /logview/host``), a bearer token it signs for reading this one instance
(``POST .../authorization?sign_bearer_token``), and the endpoint, project and instance id.

Submission is not retried after a request was sent (a second POST would run the SQL
twice); throttling and connection failures before sending are, by the rest layer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from .codec.datetimes import system_zone_name
from .errors import TaskFailed, TunnelError, TunnelTimeoutError
from .instance_tunnel import InstanceTunnel
from .options import options
from .sessions.instance_download import InstanceDownloadSession
from .sessions.table_download import OnException
from .transport.resources import instance_resource, project_resource
from .transport.retry import INSTANCE_POLL, Backoff, poll

if TYPE_CHECKING:
    from .transport.connection import Connection

__all__ = [
    "Instance",
    "SQLTaskError",
    "run_sql",
    "execute_sql",
    "build_sql_job",
    "logview_host",
]

log = logging.getLogger(__name__)

RUNNING, SUSPENDED, TERMINATED = "Running", "Suspended", "Terminated"
TASK_SUCCESS = "Success"
#: The LogView host pyodps falls back to when the service names none.
DEFAULT_LOGVIEW_HOST = "http://logview.aliyun.com"
#: How long a LogView token lets its holder read the instance (pyodps's default).
LOGVIEW_HOURS = 24 * 30
#: First pause between two status polls, and the longest (seconds); doubled each poll.
POLL_INTERVAL = INSTANCE_POLL.first
POLL_MAX_INTERVAL = INSTANCE_POLL.cap or INSTANCE_POLL.first


class SQLTaskError(TaskFailed):
    """A SQL instance ended with a failed task. ``instance_id`` names the instance,
    ``task_name`` the failed task; the message is the service's error text
    (``ODPS-0130131:... Table not found ...``)."""

    def __init__(
        self,
        message: str,
        *,
        instance_id: str,
        task_name: str | None = None,
        **context: Any,
    ):
        super().__init__(message, **context)
        self.instance_id = instance_id
        self.task_name = task_name

    def __str__(self) -> str:
        return f"{super().__str__()} [instance_id={self.instance_id}]"

    def __reduce__(self):
        return (_rebuild_sql_error, (self.message, self.instance_id, self.task_name))


def _rebuild_sql_error(message: str, instance_id: str, task_name: str | None) -> SQLTaskError:
    return SQLTaskError(message, instance_id=instance_id, task_name=task_name)


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


#: The job setting that names the zone of a job's DATETIME literals and conversions.
SQL_TIMEZONE = "odps.sql.timezone"


def sql_timezone_setting(local_timezone: str | bool | Any | None) -> str | None:
    """The ``odps.sql.timezone`` a job is sent with, for ``options.local_timezone``, as
    pyodps sends it: nothing when unset (the project's zone applies: the service's default
    is Asia/Shanghai), ``Etc/GMT`` for ``False``, the process's zone for ``True``, the
    name given, or a ``tzinfo``'s key."""
    if local_timezone is None:
        return None
    if local_timezone is False or local_timezone == "":
        return "Etc/GMT"
    if local_timezone is True:
        return system_zone_name()
    if isinstance(local_timezone, str):
        return local_timezone
    return getattr(local_timezone, "key", None)


def client_sql_timezone() -> str:
    """The ``odps.sql.timezone`` of the zone this client reads datetimes in: the one
    ``options.local_timezone`` names, else the process's zone (UTC when it has no name)."""
    return sql_timezone_setting(options.local_timezone) or system_zone_name() or "UTC"


def build_sql_job(
    sql: str,
    hints: Mapping[str, Any] | None = None,
    priority: int = 9,
    task_name: str | None = None,
) -> bytes:
    """The submission body of a job with one SQL task: ``<Instance><Job>...``.

    ``hints`` become the task's ``settings`` property (a JSON object of strings, booleans
    spelled ``true``/``false``), after the time zone of ``options.local_timezone``
    (:func:`sql_timezone_setting`); the
    query gets a final ``;`` when it has none, as the service's own clients send it.
    """
    query = sql.strip()
    if not query:
        raise ValueError("the SQL text is empty")
    if not query.endswith(";"):
        query += ";"
    settings = {}
    zone = sql_timezone_setting(options.local_timezone)
    if zone is not None:
        settings[SQL_TIMEZONE] = zone
    settings.update(
        (str(k), ("true" if v else "false") if isinstance(v, bool) else str(v))
        for k, v in (hints or {}).items()
    )
    properties = (
        ("settings", json.dumps(settings)),
        ("uuid", str(uuid.uuid4())),
    )
    config = "".join(
        f"<Property><Name>{escape(name)}</Name><Value>{escape(value)}</Value></Property>"
        for name, value in properties
    )
    name = escape(task_name or "AnonymousSQLTask")
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Instance><Job><Priority>{int(priority)}</Priority><Tasks>"
        f"<SQL><Name>{name}</Name><Config>{config}</Config><Query>{_cdata(query)}</Query></SQL>"
        "</Tasks><DAG><RunMode>Sequence</RunMode></DAG></Job></Instance>"
    )
    return text.encode("utf-8")


def _xml(body: bytes, what: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise TunnelError(f"the service answered {what} that is not XML: {exc}") from None


class Instance:
    """A SQL instance of a project, by id. Every status read asks the service again.

    Made by :meth:`ODPS.run_sql` / :meth:`ODPS.execute_sql`, or ``Instance(odps, id)`` to
    reattach to one submitted earlier.
    """

    def __init__(self, odps: Connection, instance_id: str, project: str | None = None):
        if not instance_id:
            raise ValueError("an instance id is required")
        self._odps = odps
        self.id = instance_id
        self.project = project or odps.project

    def __repr__(self) -> str:
        return f"<Instance id={self.id} project={self.project}>"

    def _get(self, flag: str | None = None) -> ElementTree.Element:
        resource = instance_resource(self.project, self.id)
        resp = self._odps.rest.request(
            "GET", resource, params={flag: ""} if flag else None, context={"session_id": self.id}
        )
        return _xml(resp.content, f"for instance {self.id}")

    # -- status --------------------------------------------------------------------------

    def reload(self) -> str:
        """Ask the service for the instance's status (``Running``, ``Terminated``, ...)."""
        return (self._get().findtext("Status") or "").strip()

    @property
    def status(self) -> str:
        """The instance's status, read from the service now."""
        return self.reload()

    def is_terminated(self) -> bool:
        """Whether the instance ended (successfully or not)."""
        return self.status == TERMINATED

    def get_task_statuses(self) -> dict[str, str]:
        """Each task's status (``Waiting``, ``Running``, ``Success``, ``Failed``, ...)."""
        root = self._get("taskstatus")
        return {
            (task.findtext("Name") or ""): (task.findtext("Status") or "").strip()
            for task in root.iterfind("Tasks/Task")
        }

    def get_task_results(self) -> dict[str, str]:
        """Each task's text result: a query's first rows as CSV, ``OK``, or the error text."""
        root = self._get("result")
        return {
            (task.findtext("Name") or ""): task.findtext("Result") or ""
            for task in root.iterfind("Tasks/Task")
        }

    def is_successful(self) -> bool:
        """Whether the instance ended and every one of its tasks succeeded."""
        if not self.is_terminated():
            return False
        statuses = self.get_task_statuses()
        return bool(statuses) and all(s == TASK_SUCCESS for s in statuses.values())

    # -- waiting -------------------------------------------------------------------------

    def wait_for_completion(
        self,
        timeout: float | None = None,
        interval: float = POLL_INTERVAL,
        max_interval: float = POLL_MAX_INTERVAL,
    ) -> None:
        """Poll until the instance is terminated, pausing ``interval`` seconds at first and
        twice as long after each poll, up to ``max_interval``.

        With ``timeout`` (seconds), the last pause is cut to the time left and
        :class:`TunnelTimeoutError` is raised when it is still running after that long;
        without, wait until it ends.
        """
        poll(
            self.is_terminated,
            backoff=Backoff(max(0.01, interval), INSTANCE_POLL.factor, max(max_interval, interval)),
            timeout=timeout,
            timeout_error=lambda: TunnelTimeoutError(
                f"instance {self.id} still running after {timeout} s", session_id=self.id
            ),
            what=f"instance {self.id}",
        )

    def wait_for_success(
        self,
        timeout: float | None = None,
        interval: float = POLL_INTERVAL,
        max_interval: float = POLL_MAX_INTERVAL,
    ) -> Instance:
        """Wait until the instance ends (see :meth:`wait_for_completion`), then raise
        :class:`SQLTaskError` with the service's error text unless every task succeeded.
        Returns the instance."""
        self.wait_for_completion(timeout, interval, max_interval)
        self.raise_if_failed()
        return self

    def raise_if_failed(self) -> None:
        """Raise :class:`SQLTaskError` if a task of this (terminated) instance failed."""
        statuses = self.get_task_statuses()
        failed = [name for name, status in statuses.items() if status != TASK_SUCCESS]
        if statuses and not failed:
            return
        results = self.get_task_results()
        name = failed[0] if failed else None
        message = (results.get(name) if name else None) or next(
            (text for text in results.values() if text), ""
        )
        state = ", ".join(f"{n}: {s}" for n, s in statuses.items()) or "no tasks"
        raise SQLTaskError(
            message.strip() or f"instance {self.id} failed ({state})",
            instance_id=self.id,
            task_name=name,
        )

    # -- stopping and LogView ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the service to stop this instance (pyodps's ``Instance.stop``).

        A running instance ends ``Terminated`` with its unfinished tasks ``Cancelled``;
        stopping one that already ended changes nothing. Not retried after it was sent:
        the request is harmless to repeat, but the caller decides (``on_kill`` sends it
        once).
        """
        body = b'<?xml version="1.0" encoding="utf-8"?><Instance><Status>Terminated</Status></Instance>'
        self._odps.rest.request(
            "PUT",
            instance_resource(self.project, self.id),
            data=body,
            headers={"Content-Type": "application/xml"},
            context={"session_id": self.id},
        )
        log.info("asked the service to stop instance %s", self.id)

    def get_logview_token(self, hours: int = LOGVIEW_HOURS) -> str:
        """A bearer token the service signs for reading this instance for ``hours``."""
        policy = {
            "Statement": [
                {
                    "Action": ["odps:Read"],
                    "Effect": "Allow",
                    "Resource": f"acs:odps:*:projects/{self.project}/instances/{self.id}",
                }
            ],
            "Version": "1",
        }
        resp = self._odps.rest.request(
            "POST",
            project_resource(self.project) + "/authorization",
            params={"sign_bearer_token": ""},
            data=json.dumps({"expires_in_hours": hours, "policy": policy}).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            context={"session_id": self.id},
        )
        token = (_xml(resp.content, "for a LogView token").findtext("Result") or "").strip()
        if not token:
            raise TunnelError(f"the service signed no LogView token for instance {self.id}")
        return token

    def get_logview_address(self, hours: int = LOGVIEW_HOURS) -> str:
        """The instance's LogView page, in the form pyodps's ``get_logview_address`` gives:
        ``<host>/logview/?h=<endpoint>&p=<project>&i=<id>&token=<token>``."""
        query = urlencode(
            {
                "h": self._odps.endpoint,
                "p": self.project,
                "i": self.id,
                "token": self.get_logview_token(hours),
            },
            safe=":/",
        )
        return f"{logview_host(self._odps)}/logview/?{query}"

    # -- results -------------------------------------------------------------------------

    def open_download_session(
        self,
        limit: bool | None = None,
        download_id: str | None = None,
        *,
        endpoint: str | None = None,
        quota_name: str | None = None,
        **kw: Any,
    ) -> InstanceDownloadSession:
        """An instance-tunnel download session of this instance's query result.

        ``limit=True`` asks for the service's limited result (at most 10,000 rows);
        ``endpoint`` and ``quota_name`` choose the tunnel endpoint and quota. Other
        keywords go to :meth:`InstanceTunnel.create_download_session`
        (``compress_option``, ``compress_algo``, ``timeout``, ``tags``, ``limit_enabled``,
        ...), which ignores unknown ones with a warning, as pyodps ignores them.
        """
        tunnel = InstanceTunnel(
            self._odps, project=self.project, endpoint=endpoint, quota_name=quota_name
        )
        return tunnel.create_download_session(self.id, download_id=download_id, limit=limit, **kw)

    def open_reader(
        self,
        arrow: bool = False,
        limit: bool | None = None,
        start: int = 0,
        count: int | None = None,
        columns: list[str] | None = None,
        compress: bool = False,
        *,
        tunnel: bool | None = None,
        use_tunnel: bool | None = None,
        reopen: bool = False,
        buffered: bool = False,
        on_exception: OnException = None,
        **kw: Any,
    ) -> Any:
        """A reader of the query result through the instance tunnel: records
        (:class:`TunnelRecordReader`) or, with ``arrow=True``, Arrow batches
        (:class:`TunnelArrowReader`). Rows ``start .. start+count`` (default: all the
        session offers). ``reader.session`` is the download session.

        Takes pyodps's arguments: ``tunnel``/``use_tunnel`` may be True (the result is
        only read through the instance tunnel); ``reopen`` is accepted, since every call
        opens a new session; ``buffered`` and ``on_exception`` go to the reader, other
        keywords to :meth:`open_download_session` (``download_id``, ``endpoint``,
        ``quota_name``, ``limit_enabled``, ``timeout``, ``tags``, ``compress_*``).
        """
        if tunnel is False or use_tunnel is False:
            raise NotImplementedError(
                "Instance.open_reader reads the result only through the instance tunnel "
                "(tunnel=False is not supported)"
            )
        session = self.open_download_session(limit, **kw)
        if count is None:
            count = max(0, session.count - start)
        if arrow:
            reader = session.open_arrow_reader(
                start, count, compress=compress, columns=columns, on_exception=on_exception
            )
        else:
            reader = session.open_record_reader(
                start,
                count,
                compress=compress,
                columns=columns,
                buffered=buffered,
                on_exception=on_exception,
            )
        reader.session = session
        return reader


def logview_host(odps: Connection) -> str:
    """The LogView host the service names (``GET /logview/host``), or pyodps's default when
    it names none or the request fails (LogView is a convenience, never a reason to fail)."""
    try:
        host = odps.rest.request("GET", "/logview/host", retry=False).text.strip()
    except (TunnelError, OSError) as exc:
        log.info("no LogView host from the service (%s); using %s", exc, DEFAULT_LOGVIEW_HOST)
        host = ""
    return (host or DEFAULT_LOGVIEW_HOST).rstrip("/")


def run_sql(odps: Connection, sql: str, hints: Mapping[str, Any] | None = None) -> Instance:
    """Submit ``sql`` as a SQL task instance of ``odps``'s project; returns at once."""
    resource = project_resource(odps.project) + "/instances"
    resp = odps.rest.request(
        "POST",
        resource,
        data=build_sql_job(sql, hints),
        headers={"Content-Type": "application/xml"},
    )
    location = resp.headers.get("Location") or ""
    instance_id = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
    if not instance_id:
        raise TunnelError(
            "the service accepted the SQL instance without a Location header",
            request_id=resp.headers.get("x-odps-request-id"),
        )
    log.info("submitted SQL instance %s", instance_id)
    return Instance(odps, instance_id)


def execute_sql(
    odps: Connection, sql: str, hints: Mapping[str, Any] | None = None, timeout: float | None = None
) -> Instance:
    """Submit ``sql`` and wait for it to succeed (see :meth:`Instance.wait_for_success`)."""
    return run_sql(odps, sql, hints).wait_for_success(timeout)
