"""Prompt templates as data (STAR.md §4) and the rendering of a conversation, with the spans the model learns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vstream.errors import ConfigError, GenerationError

IMAGE_PLACEHOLDER = "<image>"
"""Where the memory tokens go. Not a vocabulary token: the prompt is split there."""


@dataclass(frozen=True)
class RenderedPrompt:
    """A conversation as text, and the character spans the model is trained to write (its answers, each with the
    mark that ends it); empty for a prompt that ends where the model starts to answer."""

    text: str
    targets: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class PromptTemplate:
    """A conversation format.

    Attributes:
        style: `two` (system, then `ROLE: message` turns; user turns end with `sep`, assistant turns with `sep2`)
            or `plain` (no system or roles: the placeholder, then each answer ended by `sep`; the pretraining stage).
    """

    name: str
    system: str
    roles: tuple[str, str]
    sep: str
    sep2: str
    style: str

    def render(self, turns: Sequence[tuple[str, str | None]]) -> RenderedPrompt:
        """The text of `(question, answer)` turns; the last answer may be None (to be generated).

        In `two` style the first question is preceded by the placeholder and a newline, as the released model was
        trained; in `plain` style the questions are not shown and the answer follows the placeholder directly.
        """
        text, targets = (IMAGE_PLACEHOLDER, []) if self.style == "plain" else (self.system + self.sep, [])
        for i, (question, answer) in enumerate(turns):
            if self.style != "plain":
                user = f"{IMAGE_PLACEHOLDER}\n{question}" if i == 0 else question
                text += f"{self.roles[0]}: {user}{self.sep}{self.roles[1]}:"
            if answer is not None:
                # The space after `ASSISTANT:` is the answer's: the prompt ends at the colon, so the model writes it
                # (a token of its own before a digit or a rare word), and is trained to.
                start = len(text)
                text += "" if self.style == "plain" else " "
                end = self.sep if self.style == "plain" else self.sep2
                text += answer + end
                targets.append((start, len(text)))
        return RenderedPrompt(text, tuple(targets))


TEMPLATES = {
    "vicuna_v1": PromptTemplate(
        name="vicuna_v1",
        system="A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
        roles=("USER", "ASSISTANT"),
        sep=" ",
        sep2="</s>",
        style="two",
    ),
    "plain": PromptTemplate(name="plain", system="", roles=("", ""), sep="\n", sep2="\n", style="plain"),
}


def get_template(name: str | PromptTemplate) -> PromptTemplate:
    """A template by name (`vicuna_v1`, `plain`); a template is returned as is."""
    if isinstance(name, PromptTemplate):
        return name
    if name not in TEMPLATES:
        raise ConfigError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


@dataclass
class Conversation:
    """The turns of a multi-turn chat about one stream; the memory is spliced in at the first question."""

    template: PromptTemplate = field(default_factory=lambda: TEMPLATES["vicuna_v1"])
    turns: list[tuple[str, str]] = field(default_factory=list)

    def prompt(self, question: str) -> str:
        """The prompt for asking `question` next."""
        check_question(question)
        return self.template.render([*self.turns, (question, None)]).text

    def add(self, question: str, answer: str) -> None:
        """Record a finished turn."""
        self.turns.append((question, answer))


def check_question(question: str) -> None:
    """Refuse questions that would break the prompt."""
    if not isinstance(question, str) or not question.strip():
        raise GenerationError("the question is empty")
    if IMAGE_PLACEHOLDER in question:
        raise GenerationError(f"the question must not contain {IMAGE_PLACEHOLDER!r}: the memory goes there")
