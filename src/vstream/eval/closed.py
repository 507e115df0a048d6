"""Scoring closed answers by rule: a short word or phrase, a number, or yes/no, compared after normalisation.

Benchmarks whose answers are closed ("red circle", "3", "yes") need no LLM judge: an answer is right when it
says the reference and nothing else. The rule is strict on purpose: it would rather call a hedged or padded
answer wrong than credit an answer that names the reference among other candidates.

Normalisation (`answer_tokens`): Unicode compatibility forms, lower case, apostrophes dropped ("didn't" is
"didnt"), every other punctuation mark a space, a thousands comma between digits dropped ("1,000" is "1000"),
a decimal point between digits kept ("3.5"), the articles "a", "an" and "the" dropped when a word follows them
(so a lone "A", a multiple-choice letter, stays), the number words "zero" to "twenty" written as digits, and
spaces collapsed. `normalize_answer` gives the canonical form: "yes" or "no" for an answer that starts with that
word and never says the other ("Yes, it did." is "yes"; `yes_no`), else the normalised words.

Matching (`exact_match`) depends on the kind of the normalised reference (`reference_kind`):

- yes/no (the reference is exactly "yes" or "no"): the answer must start with that word and not contain the
  other one anywhere ("Yes, it did." matches "yes"; "yes and no", "I think yes" and "Yes, no triangle" do not).
  A negation after the word ("Yes, the person is not moving.") does not count against it.
- number (the reference is one number): every number in the answer must equal it, there must be at least one,
  and no negation ("not", "no", "never", "didnt", ...) may appear: "3", "three", "There are 3 scenes." and
  "3.0" match "3"; "3 or 4", "not 3" and "3 scenes, 4 shots" do not. Ordinals ("third", "3rd") are not numbers.
- text (anything else): the answer's normalised words must equal the reference's: "Red circle.", "a red circle"
  match "red circle"; "the circle is red", "red", "red circles" and "red circle or blue square" do not.

An empty or missing answer or reference never matches. The rule's version (`EXACT_MATCH_VERSION`) names every
verdict it writes; change it whenever a change here could change a verdict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from vstream.eval.records import record_key

EXACT_MATCH_VERSION = "exact-v1"
"""The version of the exact-match rule, named in every verdict it writes (the report keeps versions apart)."""

_NUMBER_NAMES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
_NUMBER_NAMES += " sixteen seventeen eighteen nineteen twenty"
NUMBER_WORDS = {word: str(value) for value, word in enumerate(_NUMBER_NAMES.split())}
"""The number words written as digits: "zero" to "twenty"."""
ARTICLES = frozenset({"a", "an", "the"})
NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "cannot", "cant", "dont", "doesnt", "didnt"})
NEGATIONS |= {"isnt", "arent", "wasnt", "werent", "wont"}
YES_NO = ("yes", "no")

ReferenceKind = Literal["yes/no", "number", "text", "empty"]

_TOKEN = re.compile(r"\d+\.\d+|[^\W_]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def answer_tokens(text: str | None) -> list[str]:
    """The words of an answer after normalisation (see the module's docstring); [] for None or no word."""
    if not isinstance(text, str):
        return []
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _THOUSANDS.sub("", text.replace("'", "").replace("’", ""))
    words = [NUMBER_WORDS.get(word, word) for word in _TOKEN.findall(text)]
    return [word for i, word in enumerate(words) if word not in ARTICLES or i == len(words) - 1]


def yes_no(text: str | None) -> str | None:
    """ "yes" or "no" when an answer starts with that word and never says the other one; None otherwise.

    So that "Yes, it did." counts as a yes, while a hedge ("yes and no") counts as neither.
    """
    words = answer_tokens(text)
    if not words or words[0] not in YES_NO:
        return None
    other = YES_NO[1 - YES_NO.index(words[0])]
    return None if other in words else words[0]


def normalize_answer(text: str | None) -> str:
    """The canonical form of a closed answer: "yes" or "no" for an answer that `yes_no` reads as one (so
    "Yes, it did." is "yes"), else its normalised words joined by single spaces ("" for None or no word)."""
    return yes_no(text) or " ".join(answer_tokens(text))


def reference_kind(reference: str | None) -> ReferenceKind:
    """How a reference is compared: "yes/no", "number", "text", or "empty" (nothing matches it)."""
    words = answer_tokens(reference)
    if not words:
        return "empty"
    if len(words) == 1 and words[0] in YES_NO:
        return "yes/no"
    if len(words) == 1 and _NUMBER.fullmatch(words[0]):
        return "number"
    return "text"


def exact_match(prediction: str | None, reference: str | None) -> bool:
    """Whether a predicted answer says exactly the reference answer, by the rule of the module's docstring."""
    kind = reference_kind(reference)
    words, words_of_reference = answer_tokens(prediction), answer_tokens(reference)
    if kind == "empty" or not words:
        return False
    if kind == "yes/no":
        return yes_no(prediction) == words_of_reference[0]
    if kind == "number":
        (wanted,) = words_of_reference
        numbers = [float(word) for word in words if _NUMBER.fullmatch(word)]
        negated = any(word in NEGATIONS for word in words)
        return bool(numbers) and not negated and all(number == float(wanted) for number in numbers)
    return words == words_of_reference


@dataclass(frozen=True)
class Rule:
    """A scoring rule usable in place of a judge: its name (`--rule`), its version and its match function."""

    name: str
    version: str
    match: Callable[[str | None, str | None], bool]

    @property
    def judge(self) -> str:
        """The judge a rule's verdicts name, e.g. `rule:exact-v1` (a row of its own in the report)."""
        return f"rule:{self.version}"

    @cached_property
    def hash(self) -> str:
        """16 hex digits of the rule's version: the verdicts' prompt hash (no prompt is sent anywhere)."""
        return record_key(rule=self.version)[:16]


RULES = {"exact": Rule("exact", EXACT_MATCH_VERSION, exact_match)}
"""The rules `vstream eval judge --rule NAME` knows."""
