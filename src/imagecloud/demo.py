"""``imagecloud serve --demo``: an account, an app key and a few sample posters, so a first search works
without hunting for images.

The demo's keys are kept in ``DATA_DIR/demo/keys.json`` (readable by the owner only) so a restart shows
the same ones; the database still stores only their hashes. Sample posters are drawn here (no binary files
in the package) together with a simulated phone photo of the first one, which the printed ``curl`` line
sends to FindImage.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imagecloud.config import Settings
from imagecloud.errors import ImageCloudError, WrongCredentials
from imagecloud.service import Service
from imagecloud.vision.analysis import Analyser
from imagecloud.vision.simulate import ViewParams, simulate_view
from imagecloud.vision.thumbnail import stored_previews

log = logging.getLogger(__name__)

USER = "demo"
CHANNEL = "demo"
APP_KEY_NAME = "demo-webar"
# (identifier, title, seed): the seed draws the poster.
SAMPLES = (
    ("demo.poster1", "Spring show", 1),
    ("demo.poster2", "Jazz night", 2),
    ("demo.poster3", "Book fair", 3),
)


@dataclass(frozen=True)
class Demo:
    secretkey: str
    appkey: str
    folder: Path
    photo: Path
    enrolled: list[str]


def poster(seed: int, title: str, width: int = 600, height: int = 800) -> np.ndarray:
    """A colourful poster with shapes and words: the kind of print recognition is for (rich texture)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(
        rng.integers(0, 256, (3, 3, 3)).astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC
    )
    for _ in range(40):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            radius = int(rng.integers(10, width // 5))
            cv2.circle(img, (x, y), radius, color, int(rng.choice([-1, 3])), cv2.LINE_AA)
        else:
            dx, dy = int(rng.integers(-width // 3, width // 3)), int(rng.integers(-height // 4, height // 4))
            cv2.rectangle(img, (x, y), (x + dx, y + dy), color, int(rng.choice([-1, 4])), cv2.LINE_AA)
    words = ("LIVE", "Tickets", "open air", "2027", "Saturday", "free entry", "city hall", "music", "talks")
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        org = (int(rng.integers(0, width * 2 // 3)), int(rng.integers(160, height)))
        size = float(rng.uniform(0.7, 1.6))
        cv2.putText(img, str(rng.choice(words)), org, cv2.FONT_HERSHEY_DUPLEX, size, color, 2, cv2.LINE_AA)
    cv2.rectangle(img, (0, 0), (width, 130), (30, 30, 30), -1)
    cv2.putText(img, title, (24, 90), cv2.FONT_HERSHEY_TRIPLEX, 2.0, (255, 255, 255), 3, cv2.LINE_AA)
    return np.asarray(img, dtype=np.uint8)


def encode(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("could not encode a sample poster")
    return bytes(data.tobytes())


def photo_of(image: np.ndarray) -> bytes:
    """A hand-held phone photo of the print: tilted, a little rolled, blurred and noisy."""
    params = ViewParams(
        tilt_deg=20, scale=0.7, rotation_deg=8, blur_sigma=0.8, noise_sigma=3, jpeg_quality=85
    )
    return encode(simulate_view(image, params, seed=7, out_size=(1024, 768)).image)


def _saved_keys(path: Path) -> dict[str, str]:
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in keys.items() if isinstance(k, str) and isinstance(v, str)}


def _still_valid(service: Service, key: str | None, *, app: bool) -> bool:
    if not key:
        return False
    try:
        with service.db.session() as session:
            reader = service.appkeys.reader(session, USER, key)
    except WrongCredentials:
        return False
    return (reader.app_key == APP_KEY_NAME) if app else reader.app_key is None


def prepare(service: Service, settings: Settings) -> Demo:
    """Make (or find again) the demo account, its app key, channel and sample targets."""
    folder = settings.data_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "keys.json"
    saved = _saved_keys(key_file)
    secretkey = saved.get("secretkey")
    if not service.user_exists(USER):
        secretkey = service.create_user(USER)
    elif not _still_valid(service, secretkey, app=False):
        secretkey = service.rotate_key(USER)  # rotated by someone, or the key file is gone
    assert secretkey is not None
    if not any(info.name == CHANNEL for info in service.list_channels(owner=USER)):
        service.create_channel(CHANNEL, USER)
    appkey = saved.get("appkey")
    if not _still_valid(service, appkey, app=True):
        if any(info.name == APP_KEY_NAME for info in service.appkeys.keys(USER)):
            service.appkeys.revoke(USER, APP_KEY_NAME)
        appkey = service.appkeys.create(USER, APP_KEY_NAME, [CHANNEL])
    assert appkey is not None
    if saved != {"secretkey": secretkey, "appkey": appkey}:
        # Created readable by the owner only, never briefly world-readable.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"secretkey": secretkey, "appkey": appkey}))
    enrolled = _enrol_samples(service, folder)
    photo = folder / "photo.jpg"
    if not photo.exists():
        photo.write_bytes(photo_of(poster(SAMPLES[0][2], SAMPLES[0][1])))
    return Demo(secretkey=secretkey, appkey=appkey, folder=folder, photo=photo, enrolled=enrolled)


def _enrol_samples(service: Service, folder: Path) -> list[str]:
    """Enrol the sample posters the channel does not hold yet (the owner may have removed some: kept so)."""
    marker = folder / "enrolled"
    if marker.exists():
        return []
    channel, present = service.import_channel(CHANNEL)
    analyser = Analyser(service.recognizer.settings.analysis)
    added = []
    for identifier, title, seed in SAMPLES:
        data = encode(poster(seed, title))
        (folder / f"{identifier}.jpg").write_bytes(data)
        if identifier in present:
            continue
        try:
            meta = json.dumps({"title": title})
            analysis = analyser.analyse_target(data)
            previews = stored_previews(data, max_pixels=service.settings.max_pixels)
            service.add_analysed(channel, identifier, meta, data, analysis, previews)
        except ImageCloudError as error:  # e.g. the demo channel is at its quota
            log.warning("demo: could not enrol %s: %s", identifier, error.wire_message)
            continue
        added.append(identifier)
    marker.touch()
    return added


def instructions(demo: Demo, settings: Settings) -> str:
    """What ``serve --demo`` prints: where the console is, the keys, and curl lines that work as given."""
    # A server listening on every interface is reached at the loopback address from this machine.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    owner = f"-F username={USER} -F secretkey={shlex.quote(demo.secretkey)} -F channel={CHANNEL}"
    app = f"-F username={USER} -F secretkey={shlex.quote(demo.appkey)} -F channel={CHANNEL}"
    webar = f"{base}/console/webar/#username={USER}&appkey={demo.appkey}&channel={CHANNEL}"
    return "\n".join(
        [
            "",
            f"imagecloud demo — console: {base}/console/",
            f"  username:  {USER}",
            f"  secretkey: {demo.secretkey}   (owner key: console, uploads; keep it private)",
            f"  appkey:    {demo.appkey}   (search only: for apps and web pages)",
            f"  channel:   {CHANNEL} (sample posters {', '.join(s[0] for s in SAMPLES)} in {demo.folder})",
            "",
            "Find a sample poster in a phone photo of it (with the app key):",
            f"  curl {base}/FindImage {app} -F image=@{shlex.quote(str(demo.photo))}",
            "Enrol your own target (with the secret key), then find it:",
            f"  curl {base}/AddImage {owner} -F identifier=poster1 -F image=@poster.jpg",
            f"  curl {base}/FindImage {app} -F image=@photo.jpg",
            f"WebAR demo on this machine: {webar}",
            "",
        ]
    )
