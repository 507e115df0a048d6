"""The synthetic world: streams of scenes whose every fact is known, planned from a seed.

A stream is a sequence of scenes. A scene has a background and one main object (a colour and a shape, still or
moving); within a scene the object may change colour once, and may leave the screen before the scene ends. A cut
changes both the object and the background, so every cut can be seen on the screen alone (an object that changes
colour keeps its background; a new scene never does). One
scene of each stream, early and the longest of all, shows a small digit in a corner: small enough to be lost
when a frame is pooled to a coarse grid, large enough to be read at full detail. That scene is also still, so
that its frames form the heaviest cluster of the stream (the one whose key frame the retrieved memory keeps).

Everything is a pure function of (seed, index, seconds): the same plan, frames and questions on every machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vstream.errors import ConfigError

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (70, 110, 255),
    "yellow": (240, 220, 50),
    "purple": (180, 70, 220),
    "white": (240, 240, 240),
}
SHAPES = ("square", "circle", "triangle")
BACKGROUNDS = {"black": (10, 10, 10), "grey": (70, 70, 70), "navy": (20, 25, 80), "brown": (80, 45, 20)}
DIGITS = tuple(str(d) for d in range(10))
NOTHING = "nothing"
"""What is on screen when the object has left."""

MIN_SCENE = 20
"""Seconds: the shortest scene."""

WORLD_VERSIONS = ("synth-v1", "synth-v2")
"""The worlds this generator plans. The same seed gives the same objects, states, times and digits in both; in
`synth-v1` a cut could keep the background (a quarter of them did), which on the screen looks like the object
changing colour; in `synth-v2` every cut changes it."""
WORLD_VERSION = WORLD_VERSIONS[-1]
"""The world planned unless another is asked for."""
SMOL_WORLD_VERSION = WORLD_VERSIONS[0]
"""The world vstream-smol (the shipped model) was trained on: `vstream build-smol` builds in it unless told
otherwise, so that its default command reproduces that model. Trained on `synth-v2` instead, the same recipe was
no better and took longer (README, "What the screen alone allows")."""


@dataclass(frozen=True)
class State:
    """What the screen shows from `start` (inclusive) to `end` (exclusive), in seconds: an object or nothing."""

    start: int
    end: int
    colour: str | None
    shape: str | None

    @property
    def label(self) -> str:
        """The canonical answer for this state: `red circle`, or `nothing`."""
        return f"{self.colour} {self.shape}" if self.colour else NOTHING


@dataclass(frozen=True)
class Scene:
    """One scene: `[start, end)` seconds, its background, its object's states, how it moves, and its digit."""

    start: int
    end: int
    background: str
    states: tuple[State, ...]
    moving: bool
    position: tuple[float, float]
    velocity: tuple[float, float]
    digit: str | None = None

    @property
    def object(self) -> str:
        """The object the scene opens with (`red circle`)."""
        return self.states[0].label

    def state_at(self, t: float) -> State:
        """The state shown at second `t` of the stream (which must be inside the scene)."""
        for state in self.states:
            if state.start <= t < state.end:
                return state
        raise ValueError(f"t={t} is outside scene [{self.start}, {self.end})")


@dataclass(frozen=True)
class StreamPlan:
    """A whole stream: its id, length in seconds (one frame a second is its natural rate) and scenes."""

    stream_id: str
    seconds: int
    scenes: tuple[Scene, ...] = field(default_factory=tuple)

    def scene_at(self, t: float) -> Scene:
        """The scene playing at second `t`."""
        for scene in self.scenes:
            if scene.start <= t < scene.end:
                return scene
        raise ValueError(f"t={t} is outside the stream [0, {self.seconds})")

    def scene_index(self, t: float) -> int:
        """0-based index of the scene playing at second `t`."""
        return self.scenes.index(self.scene_at(t))

    def to_dict(self) -> dict:
        """The plan as plain data: the scene log written beside the videos."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StreamPlan:
        """The plan back from its scene log."""
        scenes = tuple(
            Scene(
                **{
                    **scene,
                    "states": tuple(State(**s) for s in scene["states"]),
                    "position": tuple(scene["position"]),
                    "velocity": tuple(scene["velocity"]),
                }
            )
            for scene in data["scenes"]
        )
        return cls(data["stream_id"], data["seconds"], scenes)


def stream_id(seed: int, index: int) -> str:
    """The id of stream `index` of world `seed` (also its video's file name)."""
    return f"synth-{seed}-{index:04d}"


def plan_stream(seed: int, index: int, seconds: int, version: str = WORLD_VERSION) -> StreamPlan:
    """Plan stream `index` of world `seed`, `seconds` long (at least 3), as world `version` plans it.

    Scenes last 20 s to a few minutes (longer in longer streams); the digit scene is the second or third and the
    longest; each cut changes the object and the background; about half the other scenes move, a third change
    colour, a fifth end with the object gone. A stream shorter than 90 s (a demo clip) is three scenes, the middle
    one with the digit.
    """
    if seconds < 3:
        raise ConfigError(f"a synthetic stream lasts at least 3 seconds, got {seconds}")
    check_world_version(version)
    rng = np.random.default_rng([seed, index])
    if seconds < 90:
        third = seconds // 3
        lengths, digit_scene = [third, seconds - 2 * third, third], 1
    else:
        lengths, digit_scene = _scene_lengths(rng, seconds)
    objects = [(c, s) for c in COLOURS for s in SHAPES]
    scenes, start, previous, previous_background = [], 0, None, None
    for i, length in enumerate(lengths):
        choices = [o for o in objects if o != previous]  # a cut always changes the object
        colour, shape = choices[int(rng.integers(len(choices)))]
        previous = (colour, shape)
        backgrounds = [b for b in BACKGROUNDS if b != previous_background or version == "synth-v1"]  # and background
        background = previous_background = backgrounds[int(rng.integers(len(backgrounds)))]
        scenes.append(_scene(rng, start, start + length, background, colour, shape, i == digit_scene))
        start += length
    return StreamPlan(stream_id(seed, index), seconds, tuple(scenes))


def check_world_version(version: str) -> None:
    """Raise a clear error for a world version this generator does not plan."""
    if version not in WORLD_VERSIONS:
        raise ConfigError(f"unknown synthetic world version {version!r}: expected one of {', '.join(WORLD_VERSIONS)}")


def _scene_lengths(rng: np.random.Generator, seconds: int) -> tuple[list[int], int]:
    """(scene lengths summing to `seconds`, the digit scene's index). Other scenes last MIN_SCENE to about a
    twelfth of the stream; the digit scene, second or third, a fifth to a third of it and more than any other."""
    typical = max(2 * MIN_SCENE, seconds // 12)
    digit_length = max(int(seconds * rng.uniform(0.2, 0.3)), min(typical + MIN_SCENE, seconds - 2 * MIN_SCENE))
    others, left = [], seconds - digit_length
    while left > 0:
        length = int(rng.integers(MIN_SCENE, typical + 1))
        length = left if left - length < MIN_SCENE else length
        others.append(length)
        left -= length
    if len(others) < 2:  # one scene before the digit scene and one after, at least
        others = [others[0] // 2, others[0] - others[0] // 2]
    digit_scene = int(rng.integers(1, min(2, len(others)) + 1))
    return [*others[:digit_scene], digit_length, *others[digit_scene:]], digit_scene


def _scene(
    rng: np.random.Generator, start: int, end: int, background: str, colour: str, shape: str, is_digit: bool
) -> Scene:
    """One scene's states (a colour change, the object leaving) and motion; the digit scene is still and plain."""
    cuts = [start]
    labels: list[tuple[str | None, str | None]] = [(colour, shape)]
    length = end - start
    if not is_digit and rng.random() < 0.35 and length >= 16:
        at = start + int(rng.integers(length // 3, 2 * length // 3))
        new = [c for c in COLOURS if c != colour][int(rng.integers(len(COLOURS) - 1))]
        cuts.append(at)
        labels.append((new, shape))
    if not is_digit and rng.random() < 0.2 and end - cuts[-1] >= 12:
        cuts.append(end - int(rng.integers(4, 8)))
        labels.append((None, None))
    states = tuple(State(a, b, c, s) for a, b, (c, s) in zip(cuts, [*cuts[1:], end], labels, strict=True))
    moving = not is_digit and rng.random() < 0.5
    position = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)))
    angle = float(rng.uniform(0, 2 * np.pi))
    speed = float(rng.uniform(0.02, 0.05)) if moving else 0.0  # of the frame's width a second
    velocity = (speed * np.cos(angle), speed * np.sin(angle))
    digit = DIGITS[int(rng.integers(len(DIGITS)))] if is_digit else None
    return Scene(start, end, background, states, moving, position, velocity, digit)
