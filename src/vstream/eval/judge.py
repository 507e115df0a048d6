"""The LLM judge: a verdict (yes/no) and a score (0–5) per prediction, from any OpenAI-compatible endpoint.

Each prediction is judged by a chat model that compares it with the reference answer. Calls run
concurrently, with retries and exponential backoff on server errors, timeouts and replies that cannot be
parsed. Every outcome is appended to the verdicts file (an audit log and a cache): a rerun asks only what
has no `ok` verdict yet for the same judge model and prompt, and a crash loses nothing. A reply that
cannot be parsed is recorded as `unparsed` and asked again; it is never turned into a score.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vstream.errors import ConfigError
from vstream.eval.records import JsonlWriter, latest_by_key, read_jsonl, record_key

log = logging.getLogger(__name__)

PROMPT_VERSION = "vstream-judge-v1"
"""Part of every verdict's cache key: editing the prompt below must change it."""

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
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "pred": {"type": "string", "enum": ["yes", "no"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "required": ["pred", "score"],
}


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to judge.

    Attributes:
        base_url: the OpenAI-compatible endpoint (e.g. `https://api.openai.com/v1`, a vLLM or llama.cpp server).
        model: the judge model, named in every verdict (pin a snapshot, e.g. `gpt-3.5-turbo-0125`).
        api_key: default `$OPENAI_API_KEY`, else a placeholder for servers that need none.
        workers: concurrent requests; attempts: tries per prediction (server errors and bad replies alike).
        json_schema: ask the server to force the reply into the verdict schema (`response_format`).
    """

    base_url: str
    model: str
    api_key: str | None = None
    workers: int = 8
    attempts: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    temperature: float = 0.0
    json_schema: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1 or self.attempts < 1:
            raise ConfigError("--workers and --attempts must be at least 1")


def parse_verdict(text: str | None) -> tuple[str, int] | None:
    """(pred, score) from a judge's reply, or None when it says neither clearly."""
    if not text:
        return None
    candidates = [text, *re.findall(r"\{.*?\}", text, flags=re.S)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(data, dict):
            pred, score = str(data.get("pred", "")).strip().lower(), data.get("score")
            if (
                pred in ("yes", "no")
                and isinstance(score, (int, float))
                and not isinstance(score, bool)
                and 0 <= score <= 5
                and float(score).is_integer()
            ):
                return pred, int(score)
    return None


def verdict_key(prediction_key: str, config: JudgeConfig) -> str:
    """The cache key of a verdict: the prediction, the judge model and the prompt version."""
    return record_key(prediction=prediction_key, judge=config.model, prompt=PROMPT_VERSION)


def run_judge(predictions: str | os.PathLike, verdicts: str | os.PathLike, config: JudgeConfig) -> dict[str, Any]:
    """Judge every `ok` prediction that has no `ok` verdict yet; returns counts."""
    from openai import OpenAI

    records = list(latest_by_key(read_jsonl(predictions, must_exist=True)).values())
    done = latest_by_key(read_jsonl(verdicts))
    todo = [r for r in records if verdict_key(r["key"], config) not in done]
    client = OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or os.environ.get("OPENAI_API_KEY") or "none",
        timeout=config.timeout,
        max_retries=0,
    )
    counts = {
        "predictions": len(records),
        "cached": len(records) - len(todo),
        "judged": 0,
        "failed": 0,
        "unparsed_replies": 0,
        "server_errors": 0,
    }
    schema = _SchemaSupport(config.json_schema)
    with (
        JsonlWriter(verdicts) as writer,
        ThreadPoolExecutor(config.workers) as pool,
        tqdm(total=len(todo), desc=f"judge {config.model}", unit="q") as bar,
    ):
        futures = [pool.submit(_judge_one, client, record, config, writer, schema) for record in todo]
        for future in as_completed(futures):
            outcome = future.result()  # counted here, in this thread only
            counts["judged" if outcome["status"] == "ok" else "failed"] += 1
            counts["unparsed_replies"] += outcome["unparsed"]
            counts["server_errors"] += outcome["server_errors"]
            bar.update(1)
    return counts


class _SchemaSupport:
    """Whether to send `response_format`; switched off for the whole run once the server refuses it."""

    def __init__(self, wanted: bool) -> None:
        self.enabled = wanted

    def refused(self, exc: Exception) -> bool:
        """Whether `exc` is the server refusing the forced format (then it is not asked for again)."""
        if not (self.enabled and "response_format" in str(exc)):
            return False
        log.warning("the judge server does not take response_format; asking for JSON in the prompt only")
        self.enabled = False
        return True


def _judge_one(
    client: Any, record: dict[str, Any], config: JudgeConfig, writer: JsonlWriter, schema: _SchemaSupport
) -> dict[str, Any]:
    import openai

    key = verdict_key(record["key"], config)
    base = {"key": key, "prediction_key": record["key"], "judge": config.model, "prompt": PROMPT_VERSION}
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": USER_PROMPT.format(
                question=record["question"], answer=record["answer"], prediction=record.get("prediction", "")
            ),
        },
    ]
    forced = {"response_format": {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA}}}
    unparsed = server_errors = 0
    reason = "no attempt"
    attempt = 0
    while attempt < config.attempts:
        attempt += 1
        try:
            reply = client.chat.completions.create(
                model=config.model,
                messages=messages,
                temperature=config.temperature,
                **(forced if schema.enabled else {}),
            )
            text = reply.choices[0].message.content
            verdict = parse_verdict(text)
            if verdict is not None:
                writer.write(
                    {**base, "status": "ok", "pred": verdict[0], "score": verdict[1], "attempt": attempt, "raw": text}
                )
                return {"status": "ok", "unparsed": unparsed, "server_errors": server_errors}
            unparsed += 1
            reason = f"unparsable reply: {str(text)[:200]!r}"
            writer.write({**base, "status": "unparsed", "raw": text, "attempt": attempt})
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            server_errors += 1
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            log.info("judge attempt %d for %s failed: %s", attempt, record.get("id"), reason)
        except openai.APIStatusError as exc:  # 4xx other than 429: asking again will not help ...
            if isinstance(exc, openai.BadRequestError) and schema.refused(exc):
                attempt -= 1  # ... unless the server refused the forced format: ask again without it
                continue
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            break
        if attempt < config.attempts:
            time.sleep(config.backoff * 2 ** (attempt - 1) * (1 + random.random() / 2))
    writer.write({**base, "status": "error", "reason": reason})
    return {"status": "error", "unparsed": unparsed, "server_errors": server_errors}


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
