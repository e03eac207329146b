"""The API reference renders in a browser from this server alone."""

from __future__ import annotations

from selenium.webdriver.remote.webdriver import WebDriver

from imagecloud.api.openapi import ENDPOINTS
from tests.browser.pages import console_errors, wait_until
from tests.server import ServerProcess


def test_every_operation_is_listed_and_nothing_loads_from_elsewhere(
    browser: WebDriver, server: ServerProcess
) -> None:
    driver = browser
    driver.get(f"{server.url}/docs")
    shown = wait_until(
        driver,
        f"""const ops = [...document.querySelectorAll('.opblock-summary-path')]
            .map(e => e.textContent.trim());
        return ops.length >= {len(ENDPOINTS)} && ops;""",
    )
    for path in ENDPOINTS:
        assert path in [text.replace("\u200b", "") for text in shown]
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin);"
    )
    assert origins and set(origins) == {server.url}
    assert not console_errors(driver)
