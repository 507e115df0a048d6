"""The LLM judge: a verdict (yes/no) and a score (0–5) per prediction, from any OpenAI-compatible endpoint.

Each prediction is judged by a chat model that compares it with the reference answer, with vstream's prompt or
one given with `--judge-prompt` (its format, and how a verdict is read out of a reply: `judge_prompt`).

Verdicts are keyed by what was judged: the question, the reference answer and the predicted text
(`records.content_key`), the judge model asked for and the prompt's hash. Every outcome is appended to the
verdicts file (an audit log and a cache): a rerun asks only what has no `ok` verdict yet, a regenerated answer
is judged again, and a crash loses nothing. Each verdict also records the judge as the server reported it
(`server`: model, system fingerprint, host, temperature, whether the reply format was forced), so that scores
from two judges are never mistaken for one another.

Calls run concurrently. Any failure of one request is a failure of that question's attempt, logged, retried
with exponential backoff, and recorded in the end if every attempt fails: a server error, a timeout, a refused
connection, and any reply that is not a chat completion with a text (an empty or non-JSON body, no `choices`,
a null `message.content`). A reply whose text holds no clear verdict is recorded as `unparsed` and asked again.
Nothing is ever scored but a verdict read from a well-formed reply. A 4xx other than 408/409/429 ends the
question at once (asking again will not help), except a server refusing the forced reply format
(`response_format`): then no worker asks for it again, and a request refused for it is asked again without it,
not counted as an attempt.

Closed answers (a word, a number, yes/no) can be scored by a rule instead (`run_rule`, `--rule exact`): no
server, verdicts of the same shape and key, the rule and its version in place of the judge model and prompt.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vstream.errors import ConfigError
from vstream.eval.closed import RULES, Rule, answer_tokens, reference_kind
from vstream.eval.judge_prompt import DEFAULT_PROMPT, PROMPT_VERSION, JudgePrompt, find_verdicts, parse_verdict
from vstream.eval.records import JsonlWriter, content_key, latest_by_key, read_jsonl, record_key

__all__ = ["PROMPT_VERSION", "JudgeConfig", "parse_verdict", "run_judge", "run_rule", "unpinned_model", "verdict_key"]

log = logging.getLogger(__name__)

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "pred": {"type": "string", "enum": ["yes", "no"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "required": ["pred", "score"],
}
FORCED_FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA}}


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to judge.

    Attributes:
        base_url: the OpenAI-compatible endpoint (e.g. `https://api.openai.com/v1`, a vLLM or llama.cpp server).
        model: the judge model, named in every verdict (pin a snapshot, e.g. `gpt-3.5-turbo-0125`).
        api_key: default `$OPENAI_API_KEY`, else a placeholder for servers that need none.
        workers: concurrent requests; attempts: tries per prediction (server errors and bad replies alike).
        backoff, max_backoff: seconds before the 2nd attempt, doubled at each next one up to max_backoff.
        json_schema: ask the server to force the reply into the verdict schema (`response_format`).
        prompt: the prompt (vstream's own by default; see `judge_prompt.load_judge_prompt`).
    """

    base_url: str
    model: str
    api_key: str | None = None
    workers: int = 8
    attempts: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    max_backoff: float = 30.0
    temperature: float = 0.0
    json_schema: bool = True
    prompt: JudgePrompt = DEFAULT_PROMPT

    def __post_init__(self) -> None:
        if self.workers < 1 or self.attempts < 1:
            raise ConfigError("--workers and --attempts must be at least 1")
        if self.timeout <= 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError("--timeout must be positive, and the backoff not negative")


def verdict_key(prediction: dict[str, Any], config: JudgeConfig) -> str:
    """The cache key of a verdict: what was judged (question, answers), the judge model and the prompt's hash."""
    return record_key(content=content_key(prediction), judge=config.model, prompt=config.prompt.hash)


def unpinned_model(model: str) -> bool:
    """Whether a model name is an OpenAI alias with no dated snapshot (e.g. `gpt-4o`, not `gpt-4o-2024-08-06`).

    The model behind an alias changes over time, so its scores cannot be reproduced later.
    """
    name = model.rsplit("/", 1)[-1].removeprefix("ft:")
    return name.startswith("gpt-") and not re.search(r"-(\d{4}-\d{2}-\d{2}|\d{4})(?=[-:]|$)", name)


def run_judge(predictions: str | os.PathLike, verdicts: str | os.PathLike, config: JudgeConfig) -> dict[str, Any]:
    """Judge every `ok` prediction that has no `ok` verdict yet for its current text; returns counts."""
    records = list(latest_by_key(read_jsonl(predictions, must_exist=True)).values())
    written = read_jsonl(verdicts)
    previous = latest_by_key(written)
    done = {(v["key"], v.get("prediction_key")) for v in written if v.get("status") == "ok"}
    if unpinned_model(config.model):
        log.warning(
            "judge model %r is an alias, not a dated snapshot: the model behind it changes, so these scores "
            "will not be reproducible (pin one, e.g. gpt-4o-2024-08-06)",
            config.model,
        )
    counts = dict.fromkeys(("judged", "failed", "unparsed_replies", "bad_replies", "server_errors"), 0)
    counts = {"predictions": len(records), "cached": 0, **counts}
    todo: dict[str, list[dict[str, Any]]] = {}  # predictions with the same text are asked about once
    with JsonlWriter(verdicts) as writer:
        for record in records:
            key = verdict_key(record, config)
            if (key, record["key"]) in done:
                counts["cached"] += 1
            elif key in previous and "content" in previous[key]:  # the same text, judged for another prediction
                copy = {"prediction_key": record["key"], "copied_from": previous[key].get("prediction_key")}
                writer.write({**previous[key], **copy})
                counts["cached"] += 1
            else:
                todo.setdefault(key, []).append(record)
        judging = _Judging(config, writer)
        with (
            ThreadPoolExecutor(config.workers) as pool,
            tqdm(total=sum(map(len, todo.values())), desc=f"judge {config.model}", unit="q") as bar,
            logging_redirect_tqdm(),
        ):
            bar.set_postfix(failed=0)
            futures = [pool.submit(judging.judge, key, group) for key, group in todo.items()]
            try:
                for future in as_completed(futures):
                    outcome = future.result()  # counted here, in this thread only
                    for name, value in outcome.items():
                        counts[name] += value
                    bar.set_postfix(failed=counts["failed"], refresh=False)
                    bar.update(outcome["judged"] + outcome["failed"])
            except BaseException:  # Ctrl-C included: what is written stays written, the rest is not asked
                judging.stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return counts


def run_rule(predictions: str | os.PathLike, verdicts: str | os.PathLike, rule: str | Rule = "exact") -> dict[str, int]:
    """Score every `ok` prediction by a rule (`closed.RULES`), with no server; returns counts.

    A verdict is written once per prediction and answer text (a rule says the same every time), keyed like a
    judge's with the rule (`rule:<version>`) as the judge and the hash of its version as the prompt's, so that a
    rerun writes nothing and a changed rule version scores everything again. `pred` is "yes" for a match; there
    is no 0-5 score (`score` is None). A prediction with no text, or no reference answer, is a failed verdict,
    final too: `failed` counts the predictions with one, written now or before (`judged` and `matched`: now).
    """
    if isinstance(rule, str):
        if rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; the rules are {', '.join(sorted(RULES))}")
        rule = RULES[rule]
    records = list(latest_by_key(read_jsonl(predictions, must_exist=True)).values())
    done = {(v.get("key"), v.get("prediction_key")): v.get("status") for v in read_jsonl(verdicts)}  # all final
    counts = {"predictions": len(records), "cached": 0, "judged": 0, "matched": 0, "failed": 0}
    with JsonlWriter(verdicts) as writer:
        for record in records:
            content = content_key(record)
            key = record_key(content=content, judge=rule.judge, prompt=rule.hash)
            if (key, record["key"]) in done:
                counts["cached"] += 1
                counts["failed"] += done[key, record["key"]] != "ok"  # still failed: the exit status says so
                continue
            done[key, record["key"]] = "written"
            verdict = {"key": key, "prediction_key": record["key"], "content": content, "judge": rule.judge}
            verdict |= {"prompt": rule.version, "prompt_hash": rule.hash}
            prediction, answer = record.get("prediction"), record.get("answer")
            if not isinstance(prediction, str) or reference_kind(answer) == "empty":
                reason = "no predicted text" if not isinstance(prediction, str) else "no reference answer"
                writer.write({**verdict, "status": "error", "reason": reason})
                counts["failed"] += 1
                continue
            matched = rule.match(prediction, answer)
            words = {"prediction": " ".join(answer_tokens(prediction)), "answer": " ".join(answer_tokens(answer))}
            outcome = {"pred": "yes" if matched else "no", "score": None, "kind": reference_kind(answer)}
            writer.write({**verdict, "status": "ok", **outcome, "normalized": words})
            counts["judged"] += 1
            counts["matched"] += matched
    return counts


class _BadReply(Exception):
    """A reply that is not a chat completion with a text."""


class _Judging:
    """What the workers of one run share: the client, the verdicts file, the format decision, the warnings given."""

    def __init__(self, config: JudgeConfig, writer: JsonlWriter) -> None:
        from openai import OpenAI

        self.config = config
        self.writer = writer
        self.client = OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or os.environ.get("OPENAI_API_KEY") or "none",
            timeout=config.timeout,
            max_retries=0,
        )
        self.host = _host(config.base_url)
        self.forced = config.json_schema  # switched off for every worker once the server refuses it
        self.stop = threading.Event()  # set when the run ends early: workers leave after their current request
        self._lock = threading.Lock()
        self._reported: set[str] = set()

    def judge(self, key: str, group: list[dict[str, Any]]) -> dict[str, int]:
        """Ask about the predictions of `group` (all with the same text) until a verdict, or every attempt failed."""
        config, prompt = self.config, self.config.prompt
        messages = prompt.messages(group[0])
        name = group[0].get("id", key)
        base = {"key": key, "content": content_key(group[0]), "judge": config.model}
        base |= {"prompt": prompt.version, "prompt_hash": prompt.hash}
        tally = {"unparsed_replies": 0, "bad_replies": 0, "server_errors": 0}
        reasons: list[str] = []
        attempt = 0
        while attempt < config.attempts:
            if self.stop.is_set():
                return {**tally, "judged": 0, "failed": 0}
            forced = self.forced
            server = self._server(None, None, forced)
            try:
                text, server = self._ask(messages, forced)
            except Exception as exc:  # any failure is this question's, never the run's (Ctrl-C is no Exception)
                if forced and _refuses_format(exc):
                    self._stop_forcing()
                    continue  # the refusal of the format is not an attempt: ask again without it
                attempt += 1
                kind, reason = _classify(exc)
                reasons.append(reason)
                if kind is None:
                    break  # asking again will not help
                tally[kind] += 1
            else:
                attempt += 1
                verdict = parse_verdict(text, prompt.examples)
                if verdict is not None:
                    ok = {
                        "pred": verdict.pred,
                        "score": verdict.score,
                        "raw_score": verdict.raw_score,
                        "attempt": attempt,
                    }
                    self._write(group, {**base, "status": "ok", **ok, "raw": text, "server": server})
                    return {**tally, "judged": len(group), "failed": 0}
                tally["unparsed_replies"] += 1
                reasons.append("ambiguous: different verdicts" if find_verdicts(text) else "no verdict in the reply")
                unparsed = {"raw": text, "attempt": attempt, "reason": reasons[-1], "server": server}
                self._write(group, {**base, "status": "unparsed", **unparsed})
            log.info("judge attempt %d for %s failed: %s", attempt, name, reasons[-1])
            if attempt < config.attempts:
                delay = min(config.max_backoff, config.backoff * 2 ** (attempt - 1))
                self.stop.wait(delay * (1 + random.random() / 2))
        log.warning("no verdict for %s after %d attempts: %s", name, attempt, reasons[-1])
        error = {"reason": reasons[-1], "reasons": reasons, "attempt": attempt, "server": server}
        self._write(group, {**base, "status": "error", **error})
        return {**tally, "judged": 0, "failed": len(group)}

    def _ask(self, messages: list[dict[str, str]], forced: bool) -> tuple[str, dict[str, Any]]:
        """The text of the judge's reply and what the server says of itself; _BadReply for any other shape."""
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.config.model,
            messages=messages,
            temperature=self.config.temperature,
            **({"response_format": FORCED_FORMAT} if forced else {}),
        )
        text, model, fingerprint = _read_reply(raw.text)
        if model is not None and model != self.config.model:
            with self._lock:
                new = model not in self._reported
                self._reported.add(model)
            if new:
                log.warning("the judge server answers as model %r, not %r as asked", model, self.config.model)
        return text, self._server(model, fingerprint, forced)

    def _server(self, model: str | None, fingerprint: str | None, forced: bool) -> dict[str, Any]:
        return {
            "model": model,
            "system_fingerprint": fingerprint,
            "host": self.host,
            "temperature": float(self.config.temperature),
            "forced_format": forced,
        }

    def _stop_forcing(self) -> None:
        with self._lock:
            if self.forced:
                log.warning("the judge server does not take response_format; asking for JSON in the prompt only")
            self.forced = False

    def _write(self, group: list[dict[str, Any]], record: dict[str, Any]) -> None:
        for prediction in group:
            self.writer.write({"key": record["key"], "prediction_key": prediction["key"], **record})


def _read_reply(body: str) -> tuple[str, str | None, str | None]:
    """(text, model, system fingerprint) of a chat completion's body; _BadReply when it is not one with a text."""
    sample = " ".join(body.split())[:120]
    if not sample:
        raise _BadReply("empty body")
    try:
        data = json.loads(body)
    except ValueError:
        raise _BadReply(f"not JSON: {sample!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _BadReply(f"no choices: {sample!r}")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise _BadReply(f"no message content: {sample!r}")
    model, fingerprint = data.get("model"), data.get("system_fingerprint")
    return text, model if isinstance(model, str) else None, fingerprint if isinstance(fingerprint, str) else None


def _refuses_format(exc: Exception) -> bool:
    """Whether an error is the server refusing the forced reply format (HTTP 400 or 422 that names it)."""
    import openai

    message = str(exc).lower()
    return (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code in (400, 422)
        and ("response_format" in message or "json_schema" in message)
    )


def _classify(exc: Exception) -> tuple[str | None, str]:
    """(the count a failed attempt adds to, or None when asking again will not help; why it failed)."""
    import openai

    if isinstance(exc, _BadReply):
        return "bad_replies", f"bad reply: {exc}"
    if isinstance(exc, openai.APIStatusError) and 400 <= exc.status_code < 500:
        return (None if exc.status_code not in (408, 409, 429) else "server_errors"), _describe(exc)
    return "server_errors", _describe(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _host(base_url: str) -> str:
    """`host:port` of a URL, the port filled in from the scheme when the URL has none."""
    parts = urlsplit(base_url)
    host = parts.hostname or parts.netloc
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def judge_config_from_environment(base_url: str | None, model: str | None, **kwargs: Any) -> JudgeConfig:
    """A JudgeConfig from options, falling back to `$VSTREAM_JUDGE_BASE_URL` and `$VSTREAM_JUDGE_MODEL`."""
    base_url = base_url or os.environ.get("VSTREAM_JUDGE_BASE_URL")
    model = model or os.environ.get("VSTREAM_JUDGE_MODEL")
    if not base_url or not model:
        raise ConfigError(
            "name the judge: --base-url URL --model NAME (or $VSTREAM_JUDGE_BASE_URL, "
            "$VSTREAM_JUDGE_MODEL); e.g. --base-url https://api.openai.com/v1 --model gpt-3.5-turbo-0125"
        )
    return JudgeConfig(base_url=base_url, model=model, **kwargs)


def verdict_paths(predictions: Path) -> Path:
    """The default verdicts file beside a predictions file."""
    return predictions.with_name(predictions.stem + ".verdicts.jsonl")
