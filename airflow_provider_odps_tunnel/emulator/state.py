"""Configuration and the live state of one running emulator (catalog, sessions, faults)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog
from .faults import FaultRegistry
from .sessions import Clock, SessionStore

__all__ = ["EmulatorConfig", "EmulatorState"]


@dataclass
class EmulatorConfig:
    """What an emulator serves and how (every field has the CLI option of the same name)."""

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
    extra_credentials: dict[str, str] = field(default_factory=dict)

    @property
    def credentials(self) -> dict[str, str]:
        return {self.access_id: self.secret_access_key, **self.extra_credentials}


class EmulatorState:
    """Everything the request handlers share. Built afresh at every (re)start from disk."""

    def __init__(self, config: EmulatorConfig, faults: FaultRegistry | None = None):
        self.config = config
        self.root = Path(config.data_dir).resolve()
        self.clock = Clock()
        self.faults = faults or FaultRegistry()
        self.catalog = Catalog(self.root, checkpoint=self.faults.checkpoint)
        self.catalog.recover()
        self.catalog.create_project(config.project)
        self.sessions = SessionStore(self.root, self.clock, config.session_lifetime)
        self.catalog.pinned_files = self.sessions.pinned_files
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(exist_ok=True)
        for leftover in self.staging_dir.iterdir():
            if leftover.is_file():
                leftover.unlink()
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="emulator-work")
        self.port = config.port

    @property
    def server_address(self) -> str:
        """``ip:port`` of this server, as the router and the slot lists announce it."""
        return f"{self.config.host}:{self.port}"

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
