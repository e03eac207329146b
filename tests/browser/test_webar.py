"""The WebAR demo with a fake camera: Chromium films a simulated photo of an enrolled poster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import imagegen
from tests.api.helpers import add_ok
from tests.browser.camera import write_y4m
from tests.browser.conftest import BrowserFactory
from tests.browser.pages import wait_until
from tests.server import Account, ServerProcess


def test_camera_frames_are_recognised_and_outlined(
    browser_factory: BrowserFactory,
    server: ServerProcess,
    account: Account,
    tmp_path: Path,
    screenshot: Callable[[WebDriver, str], None],
) -> None:
    poster = imagegen.poster(71)
    add_ok(server, account, "poster.071", imagegen.encode(poster), metadata='{"title":"Autumn fair"}')
    add_ok(server, account, "poster.072", imagegen.encode(imagegen.poster(72)))
    # A few slightly different captures, as a hand-held camera gives; 640x480 like a webcam.
    frames = [
        imagegen.photo(poster, seed=seed, rotation_deg=angle, out_size=(640, 480)).image
        for seed, angle in ((1, 5.0), (2, -5.0), (3, 10.0))
    ]
    video = write_y4m(tmp_path / "camera.y4m", frames)
    driver = browser_factory(
        "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    created = server.call(
        "CreateAppKey",
        {"username": account.username, "secretkey": account.secretkey, "name": "webar"},
    )
    # The page signs in with a search-only app key, as a published page must.
    fragment = f"username={account.username}&appkey={created['appkey']}&channel={account.channel}&autostart=1"
    driver.get(f"{server.url}/console/webar/#{fragment}")

    # One snapshot of the page at a moment the target is shown (the next frame may redraw it).
    shown = wait_until(
        driver,
        """const outline = document.querySelector('#outline');
        return outline.dataset.identifier === 'poster.071' && {
            points: outline.getAttribute('points'),
            viewBox: document.querySelector('#overlay').getAttribute('viewBox'),
            status: document.querySelector('#status').textContent,
            metadata: document.querySelector('#card-metadata').textContent,
        };""",
    )
    assert shown["status"] == f"Found poster.071 in {account.channel}"
    assert shown["metadata"] == '{"title":"Autumn fair"}'
    # The outline is a real quadrilateral over a good part of the frame that was sent.
    view_box = [float(v) for v in shown["viewBox"].split()]
    points = np.array([[float(v) for v in p.split(",")] for p in shown["points"].split()])
    assert points.shape == (4, 2)
    width, height = view_box[2], view_box[3]
    assert width <= 480 and height <= 480  # frames are downscaled before upload
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert 0.15 * width * height < area < width * height
    screenshot(driver, "webar")

    # Stop turns the camera off and brings the sign-in form back; the way back leads to the console.
    driver.find_element(By.ID, "stop").click()
    stopped = wait_until(
        driver,
        """return document.querySelector('#video').srcObject === null
            && !document.querySelector('#settings').hidden
            && document.querySelector('#stop').hidden
            && document.querySelector('#status').textContent;""",
    )
    assert stopped == "Camera stopped."
    assert driver.find_element(By.ID, "instructions").text.startswith("Sign in with an app key")
    driver.find_element(By.ID, "back").click()
    wait_until(driver, "return location.pathname === '/console/' && document.title === 'imagecloud console';")


def test_fills_a_phone_screen(browser: WebDriver, server: ServerProcess) -> None:
    driver = browser
    size = driver.get_window_size()
    driver.set_window_size(390, 844)
    try:
        _check_phone_screen(driver, server)
    finally:
        driver.set_window_size(size["width"], size["height"])


def _check_phone_screen(driver: WebDriver, server: ServerProcess) -> None:
    driver.get(f"{server.url}/console/webar/")
    sizes = wait_until(
        driver,
        """const stage = document.querySelector('#stage').getBoundingClientRect();
        return document.readyState === 'complete' && {
            stage: [stage.width, stage.height], view: [innerWidth, innerHeight],
            title: document.querySelector('h1').textContent,
            scroll: document.documentElement.scrollHeight};""",
    )
    assert sizes["title"] == "WebAR demo"
    width, height = sizes["view"]
    assert sizes["stage"][0] == width and sizes["stage"][1] > 0.8 * height
    assert sizes["scroll"] <= height  # nothing below the fold
