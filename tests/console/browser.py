"""A real headless Chromium (Debian `chromium` + `chromium-driver`) driven by Selenium, for the console tests.

Selenium is given both executables, so Selenium Manager never downloads anything. One browser serves a whole
test session; each test starts from a clean cookie jar. Screenshots go to a temp directory, and to `docs/img/`
when `CONSOLE_SCREENSHOTS` names that directory (`CONSOLE_SCREENSHOTS=docs/img pytest tests/console -m slow`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,800"]


def available() -> str:
    """Why the browser tests cannot run here, or '' when they can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (scripts/install-system-deps.sh installs chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    return ""


class Browser:
    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="kagiya-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(15)
        self.shots = Path(tempfile.mkdtemp(prefix="kagiya-shots-"))

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
            shutil.rmtree(self.shots, ignore_errors=True)

    def fresh(self) -> None:
        """Forget every cookie (of every site) so a test starts signed out."""
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})

    def go(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # A page that is navigating away leaves stale elements and nodes behind: ask again rather than fail.
        ignored = (WebDriverException,)
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(
            lambda _d: condition(), message=f"timed out waiting: {what}")

    def wait_for(self, css: str, timeout: float = 10.0) -> Any:
        return self.wait(lambda: (self.find_all(css) or [None])[0], timeout, css)

    def text(self) -> str:
        return str(self.driver.execute_script("return document.body ? document.body.innerText : '';"))

    def submit(self, css: str, url_part: str) -> None:
        """Click a form's button and wait until the next page (its URL containing `url_part`) has loaded."""
        self.find(css).click()
        self.wait(lambda: url_part in self.driver.current_url
                  and self.driver.execute_script("return document.readyState;") == "complete",
                  what=f"a page at {url_part}")

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        assert path.stat().st_size > 1000
        target = os.environ.get("CONSOLE_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(target) / path.name)
        return path
