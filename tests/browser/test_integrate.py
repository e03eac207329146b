"""The console's Integrate page, replacing a target's image, dialogs and navigation, the phone layout."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import imagegen
from tests.api.helpers import add_ok
from tests.browser.conftest import login
from tests.browser.pages import console_errors, texts, wait_for, wait_until
from tests.server import Account, ServerProcess

Shot = Callable[[WebDriver, str], None]


def snippet(driver: WebDriver, lang: str) -> str:
    text: str = driver.find_element(By.CSS_SELECTOR, f'.snippet[data-lang="{lang}"] code').text
    return text


class TestIntegrate:
    def test_create_a_key_and_the_snippets_use_it(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path, screenshot: Shot
    ) -> None:
        poster = imagegen.poster(81)
        add_ok(server, account, "poster.081", imagegen.encode(poster))
        login(console, server, account)
        console.get(f"{server.url}/console/#/integrate")
        wait_for(console, "#no-appkeys")
        assert console.find_element(By.CSS_SELECTOR, "#endpoint").text == f"{server.url}/FindImage"
        # Before any key: a placeholder, never the secret key.
        for lang in ("curl", "JavaScript (fetch)", "WeChat mini program", "Python (requests)"):
            assert "YOUR_APP_KEY" in snippet(console, lang) and account.secretkey not in snippet(
                console, lang
            )

        console.find_element(By.CSS_SELECTOR, "#appkey-name").send_keys("webar")
        console.find_element(By.CSS_SELECTOR, f'#appkey-channels option[value="{account.channel}"]').click()
        console.find_element(By.CSS_SELECTOR, "#create-appkey button[type=submit]").click()
        key = wait_for(console, "#new-appkey").text
        assert key.startswith("app_")
        cells = texts(console, "#appkeys tbody td")
        assert cells[:2] == ["webar", account.channel] and cells[2].startswith("20")
        assert f"appkey={key}" in (
            console.find_element(By.CSS_SELECTOR, "#webar-link").get_attribute("href") or ""
        )
        for lang in ("curl", "JavaScript (fetch)", "WeChat mini program", "Python (requests)"):
            code = snippet(console, lang)
            assert (
                key in code
                and account.secretkey not in code
                and "wx.uploadFile" in snippet(console, "WeChat mini program")
            )
        screenshot(console, "integrate")

        # The curl snippet works as shown.
        if shutil.which("curl"):
            (tmp_path / "photo.jpg").write_bytes(imagegen.encode(imagegen.photo(poster, seed=4).image))
            args = shlex.split(snippet(console, "curl").replace("\\\n", " "))
            result = subprocess.run(
                [args[0], "-sS", *args[1:]], cwd=tmp_path, capture_output=True, timeout=60, check=True
            )
            assert httpx.Response(200, content=result.stdout).json()["identifier"] == "poster.081"

        # Revoked after a confirmation: the key stops working.
        console.find_element(By.CSS_SELECTOR, '#appkeys tr[data-name="webar"] [data-action=revoke]').click()
        wait_for(console, "#modal-confirm").click()
        wait_for(console, "#no-appkeys")
        files = {"image": ("p.jpg", imagegen.encode(poster), "image/jpeg")}
        data = {"username": account.username, "secretkey": key}
        assert server.call("FindImage", data, files=files)["returncode"] == 20001
        assert not console_errors(console)


class TestReplaceImage:
    def test_the_new_picture_is_found_under_the_same_identifier(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path
    ) -> None:
        add_ok(server, account, "poster.082", imagegen.encode(imagegen.poster(82)), metadata='{"t": 1}')
        new = imagegen.poster(83)
        path = tmp_path / "new.jpg"
        path.write_bytes(imagegen.encode(new))
        login(console, server, account)
        console.get(f"{server.url}/console/#/channel/{account.channel}/target/poster.082")
        wait_for(console, "#replace-image")
        before = server.call("GetImage", account.auth(identifier="poster.082"))["imageurl"]
        console.find_element(By.CSS_SELECTOR, "#replace-input").send_keys(str(path))
        wait_until(
            console,
            f"return document.querySelector('a[target=_blank]')?.getAttribute('href') !== {before!r}"
            " && document.querySelector('#keypoints')?.dataset.drawn",
        )
        body = server.call("GetImage", account.auth(identifier="poster.082"))
        assert body["imageurl"] != before and body["metadata"] == '{"t": 1}'
        photo = imagegen.encode(imagegen.photo(new, seed=2).image)
        found = server.call("FindImage", account.auth(), files={"image": ("p.jpg", photo, "image/jpeg")})
        assert found["identifier"] == "poster.082"


class TestDialogs:
    def test_a_dialog_does_not_survive_navigation(
        self, console: WebDriver, server: ServerProcess, account: Account
    ) -> None:
        login(console, server, account)
        console.find_element(
            By.CSS_SELECTOR, f'tr[data-channel="{account.channel}"] [data-action=delete]'
        ).click()
        wait_for(console, "dialog[open]")
        console.back()  # the browser's Back button: the log-in page's hash, another page of the console
        console.execute_script("location.hash = '#/stats'")
        wait_for(console, "#stats-form")
        assert console.find_elements(By.CSS_SELECTOR, "dialog") == []
        # Not deleted by the navigation.
        assert server.call("GetImages", account.auth())["returncode"] == 0


@pytest.fixture
def phone(browser: WebDriver) -> Iterator[None]:
    size = browser.get_window_size()
    browser.set_window_size(390, 844)
    yield
    browser.set_window_size(size["width"], size["height"])


class TestPhoneLayout:
    @pytest.mark.parametrize("page", ["#/", "#/channel/{channel}", "#/stats", "#/integrate", "#/try"])
    def test_nothing_is_wider_than_the_screen(
        self,
        console: WebDriver,
        server: ServerProcess,
        account: Account,
        phone: None,
        page: str,
        screenshot: Shot,
    ) -> None:
        add_ok(server, account, "poster.084", imagegen.encode(imagegen.poster(84)))
        login(console, server, account)
        console.get(f"{server.url}/console/{page.format(channel=account.channel)}")
        wait_until(console, "return !document.querySelector('#view').textContent.includes('Loading')")
        wait_until(console, "return document.querySelector('#view .page-head, #view h1') !== null")
        widths = console.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
        )
        assert widths[0] <= widths[1], page
        # Every navigation link can be reached.
        assert len(console.find_elements(By.CSS_SELECTOR, "#nav a")) == 5
        if page == "#/channel/{channel}":
            wait_until(
                console, "return [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
            )
            screenshot(console, "phone")
