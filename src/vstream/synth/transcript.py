"""A stream written out in words: what the screen showed, scene by scene, up to a moment.

The smol language model first learns the world's questions from these transcripts (in place of the memory), where
every fact is one token away, before it learns to find the same facts in its memory of the video."""

from __future__ import annotations

from vstream.synth.world import StreamPlan

STATE_MARK = ","
"""Between two states of one scene (the object changed colour or left)."""
SCENE_MARK = "."
"""After each scene."""


def transcript(plan: StreamPlan, at: int) -> str:
    """The scenes of `plan` up to second `at` (inclusive), oldest first: each scene's states by their labels, then
    its digit where it shows one, then a full stop. `red circle , nothing . blue square 7 . green triangle .`"""
    scenes = []
    for scene in plan.scenes:
        if scene.start > at:
            break
        words = f" {STATE_MARK} ".join(state.label for state in scene.states if state.start <= at)
        scenes.append(f"{words} {scene.digit} {SCENE_MARK}" if scene.digit is not None else f"{words} {SCENE_MARK}")
    return " ".join(scenes)
