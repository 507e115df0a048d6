"""Frames of a planned stream: a pure function of the plan and the time, at any size and frame rate."""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from vstream.synth.world import BACKGROUNDS, COLOURS, StreamPlan

SIZE = 64
"""Default frame side in pixels: an 8×8 grid of 8-pixel patches."""

# 5×7 digits, one string per row ("#" lit).
_GLYPHS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}


def glyph(digit: str) -> np.ndarray:
    """The digit's 7×5 bitmap (bool)."""
    return np.array([[c == "#" for c in row] for row in _GLYPHS[digit]])


def render(plan: StreamPlan, t: float, size: int = SIZE) -> np.ndarray:
    """The RGB frame `(size, size, 3)` uint8 shown at second `t` of the stream."""
    scene = plan.scene_at(t)
    state = scene.state_at(t)
    frame = np.empty((size, size, 3), np.float32)
    frame[:] = BACKGROUNDS[scene.background]
    if state.colour is not None:
        cx, cy = _position(scene.position, scene.velocity, t - scene.start)
        mask = _shape_mask(state.shape, size, cx * size, cy * size, 0.13 * size)
        frame[mask] = COLOURS[state.colour]
    if scene.digit is not None:
        cell = size // 8  # the top-left patch of an 8×8 grid: a dark box with the digit in light
        frame[:cell, :cell] = (0, 0, 0)
        bitmap = np.kron(glyph(scene.digit), np.ones((max(cell // 8, 1),) * 2, bool))
        h, w = bitmap.shape
        frame[(cell - h) // 2 : (cell - h) // 2 + h, (cell - w) // 2 : (cell - w) // 2 + w][bitmap] = (255, 255, 255)
    noise = np.random.default_rng([zlib.crc32(plan.stream_id.encode()), round(t * 1000)])
    frame += noise.normal(0.0, 1.0, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _position(start: tuple[float, float], velocity: tuple[float, float], elapsed: float) -> tuple[float, float]:
    """Where a moving object is after `elapsed` seconds: it bounces inside [0.25, 0.75] of the frame."""
    low, high = 0.25, 0.75
    out = []
    for p, v in zip(start, velocity, strict=True):
        span = high - low
        x = (min(max(p, low), high) - low + v * elapsed) % (2 * span)
        out.append(low + (x if x <= span else 2 * span - x))
    return out[0], out[1]


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    xs, ys = _grid(size)
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if shape == "square":
        side = 0.85 * r
        return (np.abs(xs - cx) <= side) & (np.abs(ys - cy) <= side)
    if shape == "triangle":
        top = cy - r
        return (ys >= top) & (ys <= cy + r) & (np.abs(xs - cx) <= (ys - top) / 2)
    raise ValueError(f"unknown shape {shape!r}")
