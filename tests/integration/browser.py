"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)

T = TypeVar("T")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium WebDriver on a fresh profile; quits the browser and removes the profile after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="it-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver: Any, predicate: Callable[[Any], T], *, timeout: float = 30, what: str = "page") -> T:
    """Poll ``predicate(driver)`` until it returns something truthy (the SPA renders asynchronously)."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate(driver)
            if result:
                return result
        except Exception as exc:  # elements re-render under us
            last_exc = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")
