"""Small Selenium helpers shared by the browser tests."""

from __future__ import annotations

from typing import Any

from selenium.common.exceptions import JavascriptException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30.0  # generous: image uploads are rated on a 2-core machine while other tests run


def wait_for(driver: WebDriver, css: str, timeout: float = TIMEOUT) -> WebElement:
    element: WebElement = WebDriverWait(driver, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
    return element


def wait_until(driver: WebDriver, script: str, timeout: float = TIMEOUT) -> Any:
    """Polls a JavaScript expression (``return …``) until it is truthy, and returns its value."""

    def check(d: WebDriver) -> Any:
        try:
            return d.execute_script(script)
        except JavascriptException:
            return None

    return WebDriverWait(driver, timeout).until(check)


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged (uncaught exceptions, CSP violations, failed loads)."""
    entries: list[dict[str, str]] = driver.get_log("browser")  # type: ignore[attr-defined]
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]
