"""Configuration and the live state of one running emulator (catalog, sessions, faults)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .clock import Clock
from .faults import FaultRegistry
from .ingest import BodyPipe, abort_pipes
from .instances import InstanceStore
from .limits import RateLimit, RateLimiter, name_list
from .pins import FilePins
from .requestlog import RequestLog
from .service_model import ServiceModel, parse_rate
from .sessions import SessionStore
from .sql import SqlEngine

__all__ = ["EmulatorConfig", "EmulatorState"]


@dataclass
class EmulatorConfig:
    """What an emulator serves and how (every field has the CLI option of the same name).

    Limits: ``session_lifetime`` (seconds a tunnel session lives, the service's 24 h),
    ``max_field_size`` (bytes of one string/binary value), ``preview_limit`` and
    ``instance_result_limit`` (rows of a preview and of a limited instance download),
    ``session_rate_limit`` / ``commit_rate_limit`` (per table, "COUNT/SECONDS" or a
    :class:`RateLimit`; None = off). ``instance_wait`` is how long an instance submission
    waits for its job before answering (status polling then sees ``Running``).
    ``request_log`` writes ``requests.jsonl`` in the data directory, ``request_log_stderr``
    also prints each line. ``upsert_commit_delay`` (seconds of the emulator's clock; 0 = off)
    makes an upsert commit report ``committing`` for that long before ``committed`` (for
    clients that poll; pyodps does not know that status, so it is off by default).
    ``upsert_hasher`` (``default`` or ``legacy``) is the hasher new upsert sessions announce
    and check bucket ownership with; ``upsert_partial_update`` lets them take partial
    updates (``enable_partial_update``); ``upsert_idle_timeout`` (seconds of the emulator's
    clock; 0 = off) expires a normal upsert session no request has touched for that long,
    which clients' keep-alive reloads prevent.
    ``quotas`` (comma-separated names, or a list) are the tunnel quotas that exist: a request
    naming another ``quotaName`` is answered 404 ``QuotaNotExist`` (None, the default:
    every quota name is accepted). ``protected_projects`` (same form) have the service's
    project protection on: their query results cannot be downloaded through the instance
    tunnel except in the limited mode (403 ``NoPermission``).
    ``download_metrics`` puts the metrics block into record download bodies for clients of
    tunnel version 6 and up, as the service does (off: bodies end with count and checksum).
    ``download_init_delay`` (seconds of the emulator's clock; 0 = off) makes an
    ``asyncmode`` download session answer ``initiating`` for that long before ``normal``.
    ``idempotent_commit`` answers a second commit of a committed upload session with the
    session again instead of the service's 409 ``StatusConflict``.
    The service model (``service_model``; all off by default): ``upload_bandwidth`` and
    ``download_bandwidth`` cap each request and response body (bytes per second, or text
    such as ``"8MB"``); ``stream_limit`` is how many data bodies may be in flight at once per
    ``stream_limit_scope`` (``table`` or ``project``), more being answered 429
    ``FlowExceeded``; ``request_latency`` is seconds added before each request is handled.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    project: str = "test_project"
    access_id: str = "test-access-id"
    secret_access_key: str = "test-secret"
    auth: bool = True
    session_lifetime: float = 24 * 3600.0
    max_field_size: int = 8 * 1024 * 1024
    preview_limit: int = 10000
    instance_result_limit: int = 10000
    session_rate_limit: RateLimit | None = None
    commit_rate_limit: RateLimit | None = None
    instance_wait: float = 30.0
    request_log: bool = True
    request_log_stderr: bool = False
    upsert_commit_delay: float = 0.0
    upsert_hasher: str = "default"
    upsert_partial_update: bool = False
    upsert_idle_timeout: float = 0.0
    quotas: str | None = None
    protected_projects: str | None = None
    download_metrics: bool = True
    download_init_delay: float = 0.0
    idempotent_commit: bool = False
    upload_bandwidth: int | None = None
    download_bandwidth: int | None = None
    stream_limit: int | None = None
    stream_limit_scope: str = "table"
    request_latency: float = 0.0
    extra_credentials: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session_rate_limit = RateLimit.parse(self.session_rate_limit)
        self.commit_rate_limit = RateLimit.parse(self.commit_rate_limit)
        self.quotas = name_list(self.quotas)
        self.protected_projects = name_list(self.protected_projects)
        self.upload_bandwidth = parse_rate(self.upload_bandwidth)
        self.download_bandwidth = parse_rate(self.download_bandwidth)
        self.stream_limit = int(self.stream_limit or 0) or None  # 0: no limit
        ServiceModel.from_config(self)  # refuses bad values now rather than at startup

    @property
    def credentials(self) -> dict[str, str]:
        return {self.access_id: self.secret_access_key, **self.extra_credentials}

    def options(self) -> dict[str, Any]:
        """The fields with a CLI option (everything but the data dir and extra keys)."""
        skip = {"data_dir", "extra_credentials"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


class EmulatorState:
    """Everything the request handlers share. Built afresh at every (re)start from disk,
    except the fault registry and clock, which an in-process :class:`Emulator` keeps."""

    def __init__(
        self,
        config: EmulatorConfig,
        faults: FaultRegistry | None = None,
        clock: Clock | None = None,
    ):
        self.config = config
        self.root = Path(config.data_dir).resolve()
        self.clock = clock or Clock(self.root / "clock.json")
        self.faults = faults or FaultRegistry()
        self.catalog = Catalog(self.root, checkpoint=self.faults.checkpoint)
        self.catalog.recover()
        self.catalog.create_project(config.project)
        self.sessions = SessionStore(self.root, self.clock, config.session_lifetime)
        self.pins = FilePins()
        self.catalog.pinned_files = lambda table_id: (
            self.sessions.pinned_files(table_id) | self.pins.files(table_id)
        )
        self.instances = InstanceStore(
            self.root, SqlEngine(self.catalog, self.pins, config.max_field_size), self.clock.now
        )
        self.limiter = RateLimiter(self.clock.now)
        self.service = ServiceModel.from_config(config)
        self.request_log = RequestLog(
            self.root / "requests.jsonl" if config.request_log else None,
            stderr=config.request_log_stderr,
        )
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(exist_ok=True)
        for leftover in self.staging_dir.iterdir():
            if leftover.is_file():
                leftover.unlink()
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="emulator-work")
        self.open_pipes: set[BodyPipe] = set()
        self.port = config.port

    @property
    def server_address(self) -> str:
        """``ip:port`` of this server, as the router and the slot lists announce it."""
        return f"{self.config.host}:{self.port}"

    def close(self) -> None:
        abort_pipes(self.open_pipes)  # a worker must never wait for a body that stopped
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.request_log.close()
