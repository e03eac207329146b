"""Replays of hostile images and of the inputs the fuzzers found interesting, in the default suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecloud.errors import FileTooLarge
from imagecloud.vision.decode import decode_image
from tests.api.helpers import jpeg
from tests.fuzz import hostile
from tests.fuzz.properties import MAX_PIXELS, decode_property, form_property
from tests.server import ServerProcess

CORPUS = Path(__file__).parent / "corpus"


def _corpus(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).glob("*"))


class TestHostileImages:
    @pytest.mark.parametrize("make", [hostile.jpeg_bomb, hostile.png_deflate_bomb])
    def test_bombs_end_at_the_header(self, make):
        with pytest.raises(FileTooLarge):
            decode_image(make(), max_pixels=MAX_PIXELS, working_size=640)

    @pytest.mark.parametrize(
        "make", [hostile.cmyk_jpeg, hostile.png16, hostile.animated_png, hostile.progressive_jpeg]
    )
    def test_unusual_encodings_decode_at_full_size(self, make):
        image = decode_image(make(), max_pixels=MAX_PIXELS, working_size=640)
        assert (image.width, image.height) == (320, 240)
        assert image.gray.std() > 10  # real picture content, not a flat fill

    @pytest.mark.parametrize("value", [0, 9, 255, 65535])
    def test_absurd_exif_orientation_means_as_stored(self, value):
        image = decode_image(hostile.exif_orientation_jpeg(value), max_pixels=MAX_PIXELS, working_size=640)
        assert (image.width, image.height) == (320, 240)

    @pytest.mark.parametrize(
        ("make", "code"),
        [
            (hostile.jpeg_bomb, 20006),
            (hostile.png_deflate_bomb, 20006),
            (hostile.animated_png, 0),
            (hostile.progressive_jpeg, 0),
            (hostile.cmyk_jpeg, 0),
        ],
    )
    def test_through_the_api(self, server: ServerProcess, make, code):
        account = server.new_account(f"hostile{make.__name__}")
        body = server.call("AddImage", account.auth(identifier="hostile"), files=jpeg(make()))
        assert body["returncode"] == code, body


@pytest.mark.parametrize("path", _corpus("decode"), ids=lambda p: p.name)
def test_decode_corpus(path: Path):
    decode_property(path.read_bytes())


@pytest.mark.parametrize("path", _corpus("multipart"), ids=lambda p: p.name)
def test_multipart_corpus(path: Path):
    form_property(path.read_bytes())


def test_corpus_is_kept():
    """The replays above are only worth something while the corpus is there."""
    assert len(_corpus("decode")) >= 10 and len(_corpus("multipart")) >= 10
