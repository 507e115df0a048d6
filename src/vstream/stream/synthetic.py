"""A synthetic test clip, generated on the spot and encoded with a real codec (for demos and first runs)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from vstream.paths import cache_dir


def synthetic_clip(seconds: float = 10.0, fps: int = 8, size: tuple[int, int] = (160, 120)) -> Path:
    """An H.264 clip of coloured scenes (one per 4 s) with a moving square; written once, then reused."""
    width, height = size
    path = cache_dir() / f"synthetic-{seconds:g}s-{fps}fps-{width}x{height}.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.mp4")
    colours = [(200, 60, 40), (40, 160, 70), (50, 80, 200), (220, 200, 60), (140, 60, 160)]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(max(int(seconds * fps), 1)):
            t = i / fps
            image = np.empty((height, width, 3), np.uint8)
            image[:] = colours[int(t // 4) % len(colours)]
            x = int((width - 24) * (0.5 + 0.5 * np.sin(t)))
            image[height // 2 - 12 : height // 2 + 12, x : x + 24] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path
