"""Reading the option a model chose from its answer, strictly: an answer that names no option, or names two, is
unreadable and counted as such, never taken for a default option (the original code read such answers as "A").

    read_choice("The answer is (C).", options)      # Choice(index=2, rule='answer is')
    read_choice("A person opens the door.", options) # Choice(index=None, ...): "A" is a word here, not an option
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vstream.eval.closed import answer_tokens
from vstream.eval.mcq import LETTERS

_SAID = re.compile(
    r"(?i:\b(?:answer|option|choice|choose|chose|pick|select)(?:\s+(?:is|would be|will be|should be))?)"
    r"\s*[:\-]?\s*(?i:option\s+)?[\(\[]?([A-Z])(?![A-Za-z])"
)
"""A sentence that says which option: the keyword in any case, the letter in capitals (`a` is a word)."""


@dataclass(frozen=True)
class Choice:
    """The option an answer chose (`index`, None when unreadable) and the rule that read it."""

    index: int | None
    rule: str

    @property
    def letter(self) -> str | None:
        return LETTERS[self.index] if self.index is not None else None


def _letters(count: int) -> str:
    return LETTERS[:count]


def read_choice(answer: str | None, options: Sequence[str]) -> Choice:
    """The option `answer` chose among `options`, by the first rule that reads exactly one:

    1. the whole answer is a letter: `B`, `(B)`, `B.`, `[B]`;
    2. it starts with a letter set off as an option label: `B. Because ...`, `(B) Because ...`, `B) ...`, `B:`;
    3. it says which: `The answer is C`, `Answer: (C)`, `the correct option is C`, `Option C`, `I choose C`;
    4. it is one option's text (words compared after normalisation), or contains exactly one option's text.
    Anything else, a letter outside the options, or two different letters: unreadable (None).
    """
    if not isinstance(answer, str) or not answer.strip():
        return Choice(None, "empty")
    text, valid = answer.strip(), _letters(len(options))
    whole = re.fullmatch(r"[\(\[]?\s*([A-Z])\s*[\)\]]?\s*[.:]?", text)
    if whole:
        return _one(whole.group(1), valid, "letter")
    labels = {m.group(1) for m in re.finditer(r"[\(\[]([A-Z])[\)\]]", text)}
    if len(labels) > 1:
        return Choice(None, "two letters")
    label = re.match(r"\s*(?:\(([A-Z])\)|\[([A-Z])\]|([A-Z])\s*[.):](?=\s|$))", text)
    if label:
        return _one(label.group(1) or label.group(2) or label.group(3), valid, "label")
    said = {m.group(1) for m in _SAID.finditer(text) if not _a_word(text, m)}
    if said:
        return _one(said.pop(), valid, "answer is") if len(said) == 1 else Choice(None, "two letters")
    return _by_text(text, options)


_CONNECTIVES = {"or", "and", "but", "because", "since", "as", "is", "was", "not", "which", "seems", "fits"}


def _a_word(text: str, match: re.Match) -> bool:
    """Whether the letter is the word "A" or "I" ("Answer: A person is ..."), not an option: it is followed by a
    lower-case word other than a connective ("The answer is A or B", "A is right")."""
    following = re.match(r"\s+([a-z]+)", text[match.end() :])
    return match.group(1) in "AI" and following is not None and following.group(1) not in _CONNECTIVES


def _one(letter: str, valid: str, rule: str) -> Choice:
    return Choice(valid.index(letter), rule) if letter in valid else Choice(None, f"{letter} is not an option")


def _by_text(text: str, options: Sequence[str]) -> Choice:
    words = answer_tokens(text)
    if not words:
        return Choice(None, "no option named")
    normalised = [answer_tokens(option) for option in options]
    exact = [i for i, option in enumerate(normalised) if option and option == words]
    if len(exact) == 1:
        return Choice(exact[0], "option text")
    inside = [i for i, option in enumerate(normalised) if option and _contains(words, option)]
    if len(inside) == 1:
        return Choice(inside[0], "option text inside")
    return Choice(None, "two options named" if inside else "no option named")


def _contains(words: list[str], part: list[str]) -> bool:
    return any(words[i : i + len(part)] == part for i in range(len(words) - len(part) + 1))
