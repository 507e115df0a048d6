"""The judge's prompt, and how a verdict is read out of the judge's reply.

A prompt has three parts: a `version` (named in every verdict), a `system` message (sent as written) and a `user`
template in which `{question}`, `{answer}` and `{prediction}` stand for the prediction record's question, reference
answer and predicted answer (a literal brace is written twice: `{{` and `}}`). vstream's own prompt is the default;
`vstream eval judge --judge-prompt FILE` takes another, written as a JSON object with exactly these three keys:

    {"version": "my-judge-v1", "system": "You grade answers ...", "user": "Question: {question}\\n..."}

A prompt is checked when it is loaded, before any request: a missing or unknown key, a value that is not a string,
an empty version or template, a template field other than the three (or one of them missing, or written with a
conversion or format spec such as `{answer!r}`) is an error. Every verdict names the prompt's version and a hash
of its system message and user template, so an edited prompt never reuses verdicts even under an unchanged version.

Reading a reply (`parse_verdict`). A *verdict object* is a JSON object, or a Python dict literal (which some
prompts ask for), with a "pred" of "yes" or "no" and a "score" from 0 to 5; case and surrounding spaces do not
matter, other keys are ignored, and the score may be written as a number or a string of one ("4", "4.0", 3.5).
A fractional score is truncated to an integer, as in the original protocol (4.8 counts as 4); the verdict keeps
the score as written in `raw_score`. Verdict objects are looked for anywhere in the reply: in prose, in markdown
code fences, nested in another object. Then:

- no verdict object: the reply is unparsed (asked again, never scored);
- otherwise the last verdict object is the verdict, provided every earlier one says the same (same pred and
  score) or is an example taken from the prompt itself (a judge echoing the prompt's example before answering);
- otherwise the reply is ambiguous (it holds two different verdicts and the difference is not an echo of the
  prompt's example; a reply that ends with the example after a different verdict is ambiguous too): unparsed.
"""

from __future__ import annotations

import ast
import json
import math
import re
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from vstream.errors import ConfigError
from vstream.eval.records import record_key

FIELDS = ("question", "answer", "prediction")
"""The fields of a user template: all three must be used, and no other."""

PROMPT_VERSION = "vstream-judge-v1"
"""The version of vstream's own prompt, named in its verdicts."""

SYSTEM_PROMPT = (
    "You check answers to questions about videos. You are given a question, the correct answer and a "
    "predicted answer. Decide whether the prediction means the same as the correct answer: paraphrases and "
    "synonyms count as matching; a contradiction, a different fact, or missing the key point does not. "
    "Then rate how well it matches on a scale from 0 (not at all) to 5 (fully)."
)
USER_PROMPT = (
    "Question: {question}\nCorrect answer: {answer}\nPredicted answer: {prediction}\n\n"
    'Reply with JSON only, for example {{"pred": "yes", "score": 4}}: "pred" is "yes" if the prediction matches '
    'and "no" otherwise; "score" is an integer from 0 to 5.'
)


class Verdict(NamedTuple):
    """A judge's verdict: `pred` ("yes"/"no"), `score` (0–5, truncated) and `raw_score` (as the judge wrote it)."""

    pred: str
    score: int
    raw_score: Any

    @property
    def says(self) -> tuple[str, int]:
        """What the verdict means (pred and score), to compare two verdicts."""
        return self.pred, self.score


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt: checked when made (ConfigError), so that a bad template fails before any request."""

    version: str
    system: str
    user: str

    def __post_init__(self) -> None:
        for name in ("version", "system", "user"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"judge prompt: {name!r} must be a string")
        if not self.version.strip() or not self.user.strip():
            raise ConfigError("judge prompt: 'version' and 'user' must not be empty")
        try:
            fields = [
                (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(self.user) if name is not None
            ]
        except ValueError as exc:
            raise ConfigError(
                f"judge prompt: the user template is malformed ({exc}); write a literal brace twice"
            ) from exc
        unknown = sorted({f"{{{name}}}" for name, _, _ in fields if name not in FIELDS})
        if unknown:
            raise ConfigError(
                f"judge prompt: unknown field {', '.join(unknown)} in the user template; the fields are "
                "{question}, {answer} and {prediction} (write a literal brace twice: {{ and }})"
            )
        if any(spec or conv for _, spec, conv in fields):
            raise ConfigError("judge prompt: write the template's fields plainly, without a conversion or format spec")
        missing = [f"{{{name}}}" for name in FIELDS if name not in {name for name, _, _ in fields}]
        if missing:
            raise ConfigError(f"judge prompt: the user template does not use {', '.join(missing)}")

    @cached_property
    def hash(self) -> str:
        """16 hex digits of the system message and user template: what the verdicts' cache key names."""
        return record_key(system=self.system, user=self.user)[:16]

    @cached_property
    def examples(self) -> frozenset[tuple[str, int]]:
        """The verdicts the prompt itself shows (e.g. `{"pred": "yes", "score": 4}`): a judge may echo them."""
        text = self.system + "\n" + self.user.format(**dict.fromkeys(FIELDS, ""))
        return frozenset(verdict.says for verdict in find_verdicts(text))

    def messages(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages that ask the judge about one prediction record."""
        user = self.user.format(**{name: record.get(name, "") for name in FIELDS})
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": user}]


DEFAULT_PROMPT = JudgePrompt(PROMPT_VERSION, SYSTEM_PROMPT, USER_PROMPT)
_KEYS = ("version", "system", "user")


def load_judge_prompt(path: str | Path) -> JudgePrompt:
    """A prompt from a JSON file `{"version": ..., "system": ..., "user": ...}`; ConfigError says what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--judge-prompt {path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ConfigError(f"--judge-prompt {path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--judge-prompt {path}: must be a JSON object with 'version', 'system' and 'user'")
    missing, unknown = sorted(set(_KEYS) - set(data)), sorted(set(data) - set(_KEYS))
    if missing or unknown:
        wrong = [f"missing {', '.join(map(repr, missing))}"] * bool(missing)
        wrong += [f"unknown {', '.join(map(repr, unknown))}"] * bool(unknown)
        raise ConfigError(f"--judge-prompt {path}: {'; '.join(wrong)} (the keys are 'version', 'system', 'user')")
    try:
        return JudgePrompt(data["version"], data["system"], data["user"])
    except ConfigError as exc:
        raise ConfigError(f"--judge-prompt {path}: {exc}") from exc


_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")


def find_verdicts(text: str | None) -> list[Verdict]:
    """Every verdict object in a text, in order (see the module's docstring for what counts as one)."""
    found: list[Verdict] = []
    decoder = json.JSONDecoder()
    start = text.find("{") if text else -1
    while start != -1:
        end, data = _object_at(text, start, decoder)
        verdict = _as_verdict(data)
        if verdict is not None:
            found.append(verdict)
        # past a verdict, go on after it; past anything else, look inside it too (a verdict may be nested)
        start = text.find("{", end if verdict is not None else start + 1)
    return found


def parse_verdict(text: str | None, examples: frozenset[tuple[str, int]] | None = None) -> Verdict | None:
    """The verdict of a reply: the last verdict object, unless an earlier one says otherwise (then None).

    An earlier verdict that is one of the prompt's `examples` (default: those of vstream's prompt) is an echo
    and does not count.
    """
    found = find_verdicts(text)
    if not found:
        return None
    last = found[-1]
    examples = DEFAULT_PROMPT.examples if examples is None else examples
    if any(earlier.says != last.says and earlier.says not in examples for earlier in found[:-1]):
        return None  # ambiguous: two different verdicts
    return last


def _object_at(text: str, start: int, decoder: json.JSONDecoder) -> tuple[int, Any]:
    """(end, object) for the JSON object or flat Python dict literal at `start`; (start + 1, None) if none."""
    try:
        data, end = decoder.raw_decode(text, start)
        return end, data
    except ValueError:
        pass
    match = _FLAT_OBJECT.match(text, start)
    if match:
        try:
            return match.end(), ast.literal_eval(match.group())
        except Exception:  # any text that is not a literal is simply not a verdict
            pass
    return start + 1, None


def _as_verdict(data: Any) -> Verdict | None:
    if not isinstance(data, dict):
        return None
    fields = {str(key).strip().lower(): value for key, value in data.items()}
    pred, raw_score = fields.get("pred"), fields.get("score")
    if not isinstance(pred, str) or pred.strip().lower() not in ("yes", "no"):
        return None
    score = _number(raw_score)
    if score is None or not 0 <= score <= 5:
        return None
    return Verdict(pred.strip().lower(), int(score), raw_score)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None
