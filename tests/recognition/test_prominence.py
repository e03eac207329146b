"""The most prominent of several verified targets: large and central beats small or at the edge."""

from __future__ import annotations

import pytest

from imagecloud.recognition.prominence import prominence


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_full_frame_centred_is_one() -> None:
    assert prominence(box(0, 0, 800, 600), 800, 600) == pytest.approx(1.0)


def test_large_print_beats_small_centred_one() -> None:
    large_left = prominence(box(0, 50, 500, 550), 800, 600)
    small_centre = prominence(box(350, 250, 450, 350), 800, 600)
    assert large_left > small_centre


def test_centre_beats_edge_at_equal_size() -> None:
    centre = prominence(box(300, 200, 500, 400), 800, 600)
    edge = prominence(box(600, 0, 800, 200), 800, 600)
    assert centre > edge


def test_only_the_part_inside_the_frame_counts() -> None:
    """A cover mostly outside the photo, peeking in at the edge, covers little of it."""
    peeking = prominence(box(700, 0, 1500, 600), 800, 600)
    inside = prominence(box(200, 100, 600, 500), 800, 600)
    assert peeking < inside
    assert peeking == pytest.approx(100 * 600 / (800 * 600) * (1 - 0.5 * 350 / 500), rel=1e-3)


def test_outline_outside_the_photo_is_zero() -> None:
    assert prominence(box(900, 700, 1000, 800), 800, 600) == 0.0
