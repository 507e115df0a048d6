"""Prompt templates as data (STAR.md §4), rendering of a conversation, and tokenization around `<image>`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vstream.errors import ConfigError, GenerationError

IMAGE_PLACEHOLDER = "<image>"
"""Where the memory tokens go. Not a vocabulary token: the prompt is split there."""


@dataclass(frozen=True)
class PromptTemplate:
    """A conversation format.

    Attributes:
        style: `two` (system, then `ROLE: message` turns; user turns end with `sep`, assistant turns with `sep2`)
            or `plain` (no system or roles: the placeholder, a newline, then the answer; the pretraining stage).
    """

    name: str
    system: str
    roles: tuple[str, str]
    sep: str
    sep2: str
    style: str

    def render(self, turns: Sequence[tuple[str, str | None]]) -> str:
        """The prompt text for `(question, answer)` turns; the last answer may be None (to be generated).

        The first question is preceded by the placeholder and a newline.
        """
        if self.style == "plain":
            answers = [a for _, a in turns if a is not None]
            return IMAGE_PLACEHOLDER + "\n" + "".join(a + self.sep for a in answers)
        text = self.system + self.sep
        for i, (question, answer) in enumerate(turns):
            user = f"{IMAGE_PLACEHOLDER}\n{question}" if i == 0 else question
            text += f"{self.roles[0]}: {user}{self.sep}"
            text += f"{self.roles[1]}:" if answer is None else f"{self.roles[1]}: {answer}{self.sep2}"
        return text


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


def get_template(name: str) -> PromptTemplate:
    """A template by name (`vicuna_v1`, `plain`)."""
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
        return self.template.render([*self.turns, (question, None)])

    def add(self, question: str, answer: str) -> None:
        """Record a finished turn."""
        self.turns.append((question, answer))


def check_question(question: str) -> None:
    """Refuse questions that would break the prompt."""
    if not isinstance(question, str) or not question.strip():
        raise GenerationError("the question is empty")
    if IMAGE_PLACEHOLDER in question:
        raise GenerationError(f"the question must not contain {IMAGE_PLACEHOLDER!r}: the memory goes there")


@dataclass(frozen=True)
class PromptIds:
    """Token ids before and after the placeholder (`before` starts with BOS when the tokenizer adds one)."""

    before: list[int]
    after: list[int]


def tokenize_prompt(tokenizer, prompt: str) -> PromptIds:
    """Split the prompt at its one placeholder and tokenize each side as the released model was trained:
    each side on its own, the BOS kept only at the very start.
    """
    parts = prompt.split(IMAGE_PLACEHOLDER)
    if len(parts) != 2:
        raise GenerationError(f"the prompt must hold exactly one {IMAGE_PLACEHOLDER!r}; it holds {len(parts) - 1}")
    before = list(tokenizer(parts[0]).input_ids)
    after = list(tokenizer(parts[1]).input_ids)
    bos = tokenizer.bos_token_id
    if bos is not None and after[:1] == [bos]:
        after = after[1:]
    return PromptIds(before, after)
