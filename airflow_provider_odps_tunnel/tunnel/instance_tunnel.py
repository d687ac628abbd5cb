"""``InstanceTunnel``: reading the result of a SQL instance, by row ranges.

The session itself is :class:`~.sessions.instance_download.InstanceDownloadSession`
(re-exported here under its old name).
"""

from __future__ import annotations

import logging
from typing import Any

from .base import BaseTunnel
from .codec.compression import CompressOption, build_compress_option
from .sessions.instance_download import InstanceDownloadSession

__all__ = ["InstanceTunnel", "InstanceDownloadSession"]

log = logging.getLogger(__name__)


class InstanceTunnel(BaseTunnel):
    """Creates (or reattaches to) download sessions of instance results."""

    def create_download_session(
        self,
        instance: Any,
        download_id: str | None = None,
        limit: bool | None = None,
        compress_option: CompressOption | None = None,
        compress_algo: Any = None,
        compress_level: int | None = None,
        compress_strategy: int | None = None,
        timeout: float | None = None,
        tags: str | list[str] | None = None,
        *,
        limit_enabled: bool | None = None,
        sessional: bool = False,
        session_task_name: str = "",
        session_subquery_id: int = -1,
        **kw: Any,
    ) -> InstanceDownloadSession:
        """A download session of ``instance`` (an id or an object with ``id``) in this
        tunnel's project, as pyodps resolves it.

        Takes pyodps's arguments; ``limit_enabled`` is the older name of ``limit``.
        pyodps's session instance tunnels (``sessional=True`` with ``session_task_name``
        and ``session_subquery_id``) are not supported. Other keywords are ignored with
        a warning: pyodps ignores them here (its ``Instance.open_reader`` passes on
        keywords of its own), so code written for it keeps working.
        """
        if kw:
            log.warning(
                "create_download_session of instance %s ignores the keyword arguments %s",
                getattr(instance, "id", instance),
                ", ".join(sorted(kw)),
            )
        if sessional:
            raise NotImplementedError(
                "session instance tunnels (sessional=True) are not supported"
                f" (session_task_name={session_task_name!r},"
                f" session_subquery_id={session_subquery_id})"
            )
        option = build_compress_option(
            compress_option, compress_algo, compress_level, compress_strategy
        )
        return InstanceDownloadSession(
            self.tunnel_rest,
            instance,
            download_id,
            limit if limit is not None else limit_enabled,
            option,
            self._quota_name,
            timeout,
            tags,
            project=self._project,
        )
