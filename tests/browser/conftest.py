"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium against a real server.

Without the browser the tests skip, unless ``IMAGECLOUD_REQUIRE_BROWSER=1`` (CI), where they fail instead:
a CI run must never go green because the browser quietly went missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver

from tests.missing import missing
from tests.server import Account, ServerProcess

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS_ENV = "IMAGECLOUD_SCREENSHOTS"  # a folder: write page screenshots there (docs/screenshots)

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)


def _chromedriver() -> str | None:
    return shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )


def _require_browser() -> str:
    driver = _chromedriver()
    if os.path.exists(CHROMIUM) and driver:
        return driver
    missing(
        f"browser tests need {CHROMIUM} and chromedriver (apt-get install chromium chromium-driver)",
        "IMAGECLOUD_REQUIRE_BROWSER",
    )


BrowserFactory = Callable[..., WebDriver]


@pytest.fixture(scope="session")
def browser_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserFactory]:
    """Starts Chromium with a fresh profile and optional extra flags; all are quit at the end."""
    driver_path = _require_browser()
    started: list[WebDriver] = []
    made: list[Path] = []

    def start(*extra: str) -> WebDriver:
        # Outside pytest's temporary folder: Chromium keeps writing into its profile in the background,
        # which tests that watch the files next to their server's data directory would see.
        profile = Path(tempfile.mkdtemp(prefix="imagecloud-chromium-"))
        made.append(profile)
        downloads = tmp_path_factory.mktemp("downloads")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*_FLAGS, f"--user-data-dir={profile}", *extra):
            options.add_argument(flag)
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path=driver_path))
        driver.downloads = downloads  # type: ignore[attr-defined]
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def browser(browser_factory: BrowserFactory) -> WebDriver:
    """One Chromium per test worker; each test logs in as its own fresh account."""
    return browser_factory()


@pytest.fixture
def console(browser: WebDriver, server: ServerProcess) -> Iterator[WebDriver]:
    browser.get(f"{server.url}/console/")
    yield browser
    browser.execute_script("sessionStorage.clear()")


@pytest.fixture
def screenshot() -> Callable[[WebDriver, str], None]:
    """Saves a PNG of the current page when IMAGECLOUD_SCREENSHOTS names a folder (README images)."""

    def take(driver: WebDriver, name: str) -> None:
        folder = os.environ.get(SCREENSHOTS_ENV)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            # The whole page, not just the first screen: grow the window to the content for the shot.
            size = driver.get_window_size()
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(size["width"], min(max(int(height), 700), 1600))
            driver.save_screenshot(str(Path(folder) / f"{name}.png"))
            driver.set_window_size(size["width"], size["height"])

    return take


def login(driver: WebDriver, server: ServerProcess, account: Account) -> None:
    """Logs in through the form, as an owner would."""
    from tests.browser.pages import wait_for

    driver.get(f"{server.url}/console/#/")
    driver.execute_script("sessionStorage.clear(); location.reload()")
    wait_for(driver, "#login-username").send_keys(account.username)
    driver.find_element("css selector", "#login-secretkey").send_keys(account.secretkey)
    driver.find_element("css selector", "#login-submit").click()
    wait_for(driver, "#channels")
