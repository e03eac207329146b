"""Which of several targets verified in one photo is the one the user is pointing at.

When a photo shows several enrolled prints (a shelf, a desk of covers), the answer is the print that fills
most of the frame near its centre, not the one that happened to collect the most correspondences: a cover
that only peeks in at an edge can be sharper and richer in detail than the one in front of the camera.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np


def prominence(corners: Sequence[Sequence[float]], width: int, height: int) -> float:
    """0..1: the share of the photo the target's outline covers inside the frame, halved at the far corner.

    The outline is clipped to the frame first (the part outside the photo is not seen). The centre weight
    falls linearly from 1 when the visible part is centred to 0.5 when its centroid sits in a corner, so
    between two prints of similar size the one in the middle wins, and a large print wins over a small one
    however centred.
    """
    if width <= 0 or height <= 0:
        return 0.0
    quad = np.asarray(corners, dtype=np.float32).reshape(-1, 2)
    frame = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    area, inside = cv2.intersectConvexConvex(quad, frame)
    if area <= 0 or inside is None or len(inside) < 3:
        return 0.0
    poly = inside.reshape(-1, 2).astype(np.float64)
    moments = cv2.moments(poly.astype(np.float32))
    if moments["m00"] == 0:
        return 0.0
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    off_centre = math.hypot(cx - width / 2, cy - height / 2) / math.hypot(width / 2, height / 2)
    share = min(1.0, float(area) / (width * height))
    return share * (1.0 - 0.5 * min(1.0, off_centre))
