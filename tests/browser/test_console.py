"""The web console in headless Chromium against a real server: each page as an owner uses it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import imagegen
from tests.api import images
from tests.api.helpers import add_ok, find_in
from tests.browser.conftest import login
from tests.browser.pages import TIMEOUT, console_errors, texts, wait_for, wait_until
from tests.server import Account, ServerProcess

Shot = Callable[[WebDriver, str], None]


def _enrol(server: ServerProcess, account: Account, seeds: list[int], metadata: str | None = None) -> None:
    for seed in seeds:
        fields = {"metadata": metadata} if metadata is not None else {}
        add_ok(server, account, f"poster.{seed:03d}", imagegen.encode(imagegen.poster(seed)), **fields)


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _target_corners(view_homography: np.ndarray, width: int, height: int) -> np.ndarray:
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    projected = corners @ view_homography.T
    result: np.ndarray = projected[:, :2] / projected[:, 2:3]
    return result


class TestLogin:
    def test_wrong_key_is_refused_in_words_then_right_key_opens_channels(
        self, console: WebDriver, server: ServerProcess, account: Account, screenshot: Shot
    ) -> None:
        wait_for(console, "#login-username").send_keys(account.username)
        console.find_element(By.CSS_SELECTOR, "#login-secretkey").send_keys("not-the-key")
        screenshot(console, "login")
        console.find_element(By.CSS_SELECTOR, "#login-submit").click()
        assert wait_for(console, "#login-form .notice.error").text == "Wrong username or secret key"
        key = console.find_element(By.CSS_SELECTOR, "#login-secretkey")
        key.clear()
        key.send_keys(account.secretkey)
        console.find_element(By.CSS_SELECTOR, "#login-submit").click()
        wait_for(console, "#channels")
        assert account.channel in texts(console, "#channels tbody td:first-child")
        assert console.find_element(By.CSS_SELECTOR, "#who-name").text == account.username


class TestChannels:
    def test_create_shows_counts_and_quota_then_delete_after_confirmation(
        self, console: WebDriver, server: ServerProcess, account: Account, screenshot: Shot
    ) -> None:
        _enrol(server, account, [1, 2])
        login(console, server, account)
        screenshot(console, "channels")
        row = console.find_element(By.CSS_SELECTOR, f'#channels tr[data-channel="{account.channel}"]')
        assert row.find_element(By.CSS_SELECTOR, "td.num").text == "2"
        assert "2 of 1,000,000" in row.text

        name = f"{account.username}-new"
        console.find_element(By.CSS_SELECTOR, "#new-channel").send_keys(name)
        console.find_element(By.CSS_SELECTOR, "#create-channel button").click()
        wait_until(console, f"return location.hash === '#/channel/{name}'")
        wait_for(console, "#grid .empty")
        assert server.call("ListChannels", account.auth())["channels"][1]["channel"] == name

        console.get(f"{server.url}/console/#/")
        wait_for(console, f'#channels tr[data-channel="{name}"] [data-action=delete]').click()
        wait_for(console, "dialog.modal .secondary").click()  # Cancel keeps it
        assert name in texts(console, "#channels tbody td:first-child")
        console.find_element(
            By.CSS_SELECTOR, f'#channels tr[data-channel="{name}"] [data-action=delete]'
        ).click()
        wait_for(console, "#modal-confirm").click()
        wait_until(console, f"return !document.querySelector('#channels tr[data-channel=\"{name}\"]')")
        names = [c["channel"] for c in server.call("ListChannels", account.auth())["channels"]]
        assert names == [account.channel]


class TestTargets:
    def test_upload_many_shows_results_in_words_grid_and_search(
        self,
        console: WebDriver,
        server: ServerProcess,
        account: Account,
        tmp_path: Path,
        screenshot: Shot,
    ) -> None:
        files = [
            _write(tmp_path, "alpha.one.jpg", imagegen.encode(imagegen.poster(21))),
            _write(tmp_path, "alpha two.png", imagegen.encode(imagegen.poster(22), "png")),
            _write(tmp_path, "beta.jpg", imagegen.encode(imagegen.poster(23))),
            _write(tmp_path, "blank.png", images.blank()),
            _write(tmp_path, "notes.jpg", images.TEXT_FILE),
        ]
        login(console, server, account)
        console.get(f"{server.url}/console/#/channel/{account.channel}")
        wait_for(console, "#grid .empty")
        console.find_element(By.CSS_SELECTOR, "#upload-input").send_keys("\n".join(files))
        wait_until(
            console,
            "return document.querySelectorAll('#upload-queue li.ok, #upload-queue li.failed').length === 5",
        )
        failed = {
            row.get_attribute("data-identifier"): row.find_element(By.CSS_SELECTOR, ".status").text
            for row in console.find_elements(By.CSS_SELECTOR, "#upload-queue li.failed")
        }
        assert failed == {
            "blank": "failed: Too little texture to be recognised",
            "notes": "failed: Not a JPEG or PNG image, or the file is damaged",
        }
        # A failed upload stored nothing, so its bar is not left full.
        bars = console.execute_script(
            """return [...document.querySelectorAll('#upload-queue li.failed progress')]
                .map(b => [b.value, getComputedStyle(b).visibility]);"""
        )
        assert bars == [[0, "hidden"], [0, "hidden"]]
        # The quota line follows the uploads without a reload.
        wait_until(
            console, "return document.querySelector('#quota').textContent.startsWith('3 of 1,000,000')"
        )
        wait_until(console, "return document.querySelectorAll('#grid .tile').length === 3")
        tiles = console.find_elements(By.CSS_SELECTOR, "#grid .tile")
        assert [t.get_attribute("data-identifier") for t in tiles] == ["alpha.one", "alpha_two", "beta"]
        for tile in tiles:
            level = int(tile.find_element(By.CSS_SELECTOR, ".stars").get_attribute("data-level") or 0)
            assert 1 <= level <= 5
            assert "match " in tile.text and "%" in tile.text
        # Thumbnails are real decoded images served by the same process.
        wait_until(
            console, "return [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
        )
        screenshot(console, "targets")

        console.find_element(By.CSS_SELECTOR, "#search").send_keys("alpha")
        console.find_element(By.CSS_SELECTOR, "#search-form button").click()
        wait_until(console, "return document.querySelectorAll('#grid .tile').length === 2")
        assert (
            console.find_element(By.CSS_SELECTOR, "#grid-summary").text
            == "1\u20132 of 2 targets starting with \u201calpha\u201d"
        )

    def test_grid_pages_through_more_than_one_page(
        self, console: WebDriver, server: ServerProcess, account: Account
    ) -> None:
        data = imagegen.encode(imagegen.poster(5))
        for n in range(26):
            add_ok(server, account, f"t{n:03d}", data)
        login(console, server, account)
        console.get(f"{server.url}/console/#/channel/{account.channel}")
        wait_until(console, "return document.querySelectorAll('#grid .tile').length === 24")
        console.find_element(By.CSS_SELECTOR, ".pager a[rel=next]").click()
        wait_until(console, "return document.querySelectorAll('#grid .tile').length === 2")
        assert texts(console, "#grid .ident") == ["t024", "t025"]


class TestUploadExtras:
    def test_metadata_at_upload_and_a_warning_for_a_look_alike(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path
    ) -> None:
        poster = imagegen.poster(31)
        add_ok(server, account, "original", imagegen.encode(poster))
        copy = _write(tmp_path, "copy.jpg", imagegen.encode(poster, quality=80))
        login(console, server, account)
        console.get(f"{server.url}/console/#/channel/{account.channel}")
        wait_for(console, "#grid .tile")
        console.find_element(By.CSS_SELECTOR, "#upload-metadata").send_keys('{"title": "Copy"}')
        console.find_element(By.CSS_SELECTOR, "#upload-input").send_keys(copy)
        warning = wait_for(console, '#upload-queue li.ok[data-identifier="copy"] .similar')
        assert warning.get_attribute("data-similar") == "original"
        assert warning.text.startswith("Looks like original (")
        body = server.call("GetImage", account.auth(identifier="copy"))
        assert body["metadata"] == '{"title": "Copy"}'

        # Metadata that is not JSON is refused with the server's reason.
        field = console.find_element(By.CSS_SELECTOR, "#upload-metadata")
        field.clear()
        field.send_keys("{oops")
        console.find_element(By.CSS_SELECTOR, "#upload-input").send_keys(
            _write(tmp_path, "other.jpg", imagegen.encode(imagegen.poster(32)))
        )
        failed = wait_for(console, '#upload-queue li.failed[data-identifier="other"] .status')
        assert failed.text == "failed: A field is missing or not valid: metadata is not valid JSON"


class TestTargetDetail:
    def test_keypoints_rating_metadata_and_removal(
        self, console: WebDriver, server: ServerProcess, account: Account, screenshot: Shot
    ) -> None:
        _enrol(server, account, [31], metadata='{"title":"Spring show"}')
        login(console, server, account)
        console.get(f"{server.url}/console/#/channel/{account.channel}/target/poster.031")
        canvas = wait_for(console, "#keypoints")
        drawn = int(wait_until(console, "return document.querySelector('#keypoints').dataset.drawn"))
        detail = server.call("GetImageDetail", account.auth(identifier="poster.031"))
        assert drawn == len(detail["keypoints"]) == detail["rating"]["keypoints"]
        # The legend's counts add up to every keypoint, split by how often each was re-found.
        legend = [int(t.rsplit(": ", 1)[1].replace(",", "")) for t in texts(console, "#legend li")]
        assert sum(legend) == drawn and len(legend) == detail["rating"]["views"] + 1
        # Something was painted: the centre pixel is not the blank canvas any more.
        assert console.execute_script(
            "const c = arguments[0];"
            "return c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[3]",
            canvas,
        )
        words = console.find_element(By.CSS_SELECTOR, "#rating-words").text
        assert f"{detail['rating']['keypoints']:,} distinctive points" in words
        assert "photographed it 3 times in simulation" in words
        assert console.find_element(By.CSS_SELECTOR, "#bands tr.current .stars").get_attribute(
            "data-level"
        ) == str(detail["level"])
        # Each band shows how many features it needs and how often targets of that level were found.
        rows = [row.split() for row in texts(console, "#bands tbody tr")]
        bands = detail["rating"]["bands"]
        assert [row[-2:] for row in rows] == [
            [str(b["min_refound"]), f"{100 * b['found_share']:.0f}%"] for b in bands
        ]
        assert json.loads(
            console.find_element(By.CSS_SELECTOR, "#metadata").get_attribute("value") or ""
        ) == {"title": "Spring show"}
        screenshot(console, "detail")

        editor = console.find_element(By.CSS_SELECTOR, "#metadata")
        editor.clear()
        editor.send_keys('{"title": "Summer show",')
        assert "Not valid JSON" in wait_for(console, "#metadata-status").text
        assert not console.find_element(By.CSS_SELECTOR, "#metadata-save").is_enabled()
        editor.send_keys(' "room": 4}')
        console.find_element(By.CSS_SELECTOR, "#metadata-save").click()
        wait_until(
            console, "return document.querySelector('#metadata-status').textContent === 'Metadata saved.'"
        )
        stored = server.call("GetImage", account.auth(identifier="poster.031"))["metadata"]
        assert json.loads(stored) == {"title": "Summer show", "room": 4}

        console.find_element(By.CSS_SELECTOR, "#remove-target").click()
        wait_for(console, "#modal-confirm").click()
        wait_until(console, f"return location.hash === '#/channel/{account.channel}'")
        assert server.call("GetImage", account.auth(identifier="poster.031"))["returncode"] == 20014


class TestTryIt:
    def test_match_draws_the_outline_where_the_target_is(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path, screenshot: Shot
    ) -> None:
        poster = imagegen.poster(41)
        _enrol(server, account, [41, 42], metadata='{"room":"hall A"}')
        view = imagegen.photo(poster, seed=7, rotation_deg=15)
        photo = _write(tmp_path, "photo.jpg", imagegen.encode(view.image))
        login(console, server, account)
        console.get(f"{server.url}/console/#/try?channel={account.channel}")
        wait_for(console, "#try-drop")
        console.find_element(By.CSS_SELECTOR, "#try-input").send_keys(photo)
        wait_for(console, "#match")
        assert console.find_element(By.CSS_SELECTOR, "#match strong").text == "Found poster.041"
        assert '{"room":"hall A"}' in console.find_element(By.CSS_SELECTOR, "#match pre.meta").text
        polygon = console.find_element(By.CSS_SELECTOR, "#try-stage svg polygon.best")
        assert polygon.get_attribute("data-identifier") == "poster.041"
        drawn = np.array(
            [[float(v) for v in p.split(",")] for p in (polygon.get_attribute("points") or "").split()]
        )
        expected = _target_corners(view.homography, poster.shape[1], poster.shape[0])
        assert drawn.shape == (4, 2)
        assert np.abs(drawn - expected).max() < 12  # pixels of an 800x600 photo
        # The overlay is laid over the photo exactly, so the outline lands on the target on screen too.
        photo_box = console.find_element(By.CSS_SELECTOR, "#try-photo").rect
        overlay_box = console.find_element(By.CSS_SELECTOR, "#try-stage svg").rect
        assert all(abs(photo_box[k] - overlay_box[k]) <= 1 for k in ("x", "y", "width", "height"))
        screenshot(console, "try")

    def test_no_match_says_what_was_searched(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path, unrelated: bytes
    ) -> None:
        _enrol(server, account, [43])
        photo = _write(tmp_path, "elsewhere.jpg", unrelated)
        login(console, server, account)
        console.get(f"{server.url}/console/#/try")
        wait_for(console, "#try-drop")
        console.find_element(By.CSS_SELECTOR, "#try-input").send_keys(photo)
        text = wait_for(console, "#no-match").text
        assert "No target found." in text
        assert f"Searched all your channels ({account.channel}): 1 target." in text
        assert "Photo quality:" in text  # FindImage without a channel rates the photo
        assert not console.find_elements(By.CSS_SELECTOR, "#try-stage polygon")


@pytest.fixture(scope="module")
def unrelated() -> bytes:
    return images.photo(imagegen.poster(998), seed=3)[0]


class TestStatistics:
    def test_chart_counts_todays_matches_and_exports_csv(
        self, console: WebDriver, server: ServerProcess, account: Account, screenshot: Shot, unrelated: bytes
    ) -> None:
        poster = imagegen.poster(51)
        _enrol(server, account, [51, 52])
        for seed in (1, 2, 3):
            assert find_in(server, account, images.photo(poster, seed=seed)[0])["identifier"] == "poster.051"
        assert "identifier" not in find_in(server, account, unrelated)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        login(console, server, account)
        console.get(f"{server.url}/console/#/stats?channel={account.channel}")
        bar = wait_for(console, f'#chart rect.bar[data-date="{today}"]')
        assert bar.get_attribute("data-count") == "3"
        assert len(console.find_elements(By.CSS_SELECTOR, "#chart rect.bar")) == 1
        assert console.find_element(By.CSS_SELECTOR, "#stats-total").text.startswith("3 matches for channel")
        assert texts(console, "#stats-table tbody tr") == ["poster.051 3"]
        # Searches are the second series: four answered, one of them found nothing.
        point = console.find_element(By.CSS_SELECTOR, f'#chart circle.search-point[data-date="{today}"]')
        assert (point.get_attribute("data-searches"), point.get_attribute("data-nomatch")) == ("4", "1")
        assert console.find_element(By.CSS_SELECTOR, "#stats-searches").text == "4 searches, 1 found nothing."
        screenshot(console, "stats")

        console.find_element(By.CSS_SELECTOR, "#csv").click()
        downloads = Path(console.downloads)  # type: ignore[attr-defined]
        csv_file = _wait_for_file(downloads, f"imagecloud-stats-*{today.replace('-', '')}.csv")
        lines = csv_file.read_text().splitlines()
        assert lines == ['"date","identifier","count"', f'"{today.replace("-", "")}","poster.051","3"']

        # The presets cover the endpoint's ranges; "Last month" holds none of today's matches.
        next(b for b in console.find_elements(By.CSS_SELECTOR, ".chip") if b.text == "Last month").click()
        wait_until(console, "return document.querySelector('#stats-total strong')?.textContent === '0'")
        assert not console.find_elements(By.CSS_SELECTOR, "#chart rect.bar")
        assert not console_errors(console)


def _wait_for_file(folder: Path, pattern: str) -> Path:
    """The finished download: Chromium reserves the final name with an empty file while it still writes
    to ``*.crdownload``, so a file of that name alone does not mean the download is complete."""
    deadline = time.monotonic() + TIMEOUT  # only against a download that never comes
    while time.monotonic() < deadline:
        found = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        writing = list(folder.glob("*.crdownload"))
        if found and not writing and found[0].stat().st_size > 0:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no finished {pattern} in {folder}: {list(folder.iterdir())}")


class TestEscaping:
    PAYLOAD = '{"title":"<img src=x onerror=\\"window.__xss=1\\">","note":"<script>window.__xss=2</script>"}'

    def test_metadata_with_markup_stays_text_everywhere(
        self, console: WebDriver, server: ServerProcess, account: Account, tmp_path: Path
    ) -> None:
        poster = imagegen.poster(61)
        add_ok(server, account, "poster.061", imagegen.encode(poster), metadata=self.PAYLOAD)
        photo = _write(tmp_path, "<img src=x onerror=alert(1)>.jpg", images.photo(poster, seed=5)[0])
        login(console, server, account)

        console.get(f"{server.url}/console/#/channel/{account.channel}/target/poster.061")
        wait_for(console, "#keypoints")
        assert json.loads(
            console.find_element(By.CSS_SELECTOR, "#metadata").get_attribute("value") or ""
        ) == (json.loads(self.PAYLOAD))

        console.get(f"{server.url}/console/#/try")
        wait_for(console, "#try-drop")
        console.find_element(By.CSS_SELECTOR, "#try-input").send_keys(photo)
        shown = wait_for(console, "#match pre.meta").text
        assert shown == self.PAYLOAD  # verbatim, as text
        # Nothing in the payload became an element, and nothing ran.
        assert (
            console.execute_script("return document.querySelectorAll('img[src=\"x\"], #view script').length")
            == 0
        )
        assert console.execute_script("return window.__xss") is None
