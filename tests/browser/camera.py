"""A fake camera for Chromium: a Y4M video (``--use-file-for-fake-video-capture``) made from test images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 5) -> Path:
    """Writes BGR frames (all the same even size) as uncompressed 4:2:0 YUV4MPEG2, which Chromium loops."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            # I420 from OpenCV is exactly the Y plane, then U, then V: the Y4M 4:2:0 frame layout.
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path
