"""Debian's headless Chromium through Playwright, and what a page reports as broken.

The browser is the system one (``/usr/bin/chromium``; Playwright downloads none here), with
a fresh profile and the switches that keep it from reaching out to the network on its own:
the closed network of the test machines refuses those background connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Response, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile_dir: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile in ``profile_dir``; closed on exit."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class PageErrors:
    """What went wrong in a page: console errors, uncaught exceptions, server errors.

    A step that provokes an error on purpose says so with :meth:`expect`, naming a pattern
    of the console text it allows; everything else it records fails the test.
    """

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught in page: {exc}"))
        page.on("response", self._on_response)

    def expect(self, pattern: str) -> None:
        """Allow console errors matching ``pattern`` (a step provokes them on purpose)."""
        self.allowed.append(re.compile(pattern))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = f"console error: {message.text} ({message.location.get('url', '')})"
        if not any(p.search(text) for p in self.allowed):
            self.errors.append(text)

    def _on_response(self, response: Response) -> None:
        if response.status >= 500:
            self.errors.append(
                f"HTTP {response.status} from {response.request.method} {response.url}"
            )

    def assert_none(self) -> None:
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)


class Screenshots:
    """Numbered screenshots of the steps, in one folder the test run names."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def take(self, page: Page, name: str) -> Path:
        self._count += 1
        path = self.folder / f"{self._count:02d}-{name}.png"
        # Finite animations (a toast sliding in) are shown finished.
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path
