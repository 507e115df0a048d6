"""The benchmarks vstream evaluates on, and the numbers published for them (PAPER_RESULTS.md and the sources named).

Open-ended VStream-QA and video QA sets are judged (the paper's judge: GPT-3.5); multiple-choice sets (EgoSchema,
MVBench, Video-MME, MLVU, LVBench, NExT-QA MC) and streaming ones (OVO-Bench, StreamingBench real-time) are
scored by rule. `custom:NAME` runs any file of a supported format under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass

from vstream.errors import ConfigError


@dataclass(frozen=True)
class Benchmark:
    """A benchmark (or subset).

    Attributes:
        mode: `online` (each question asked at its `end_time`, seeing only the past) or `offline` (whole clip).
        paper: Flash-VStream's published (accuracy %, score 0-5), and where it was published.
    """

    name: str
    title: str
    mode: str
    paper: tuple[float, float] | None
    source: str


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("rvs_ego", "RVS-Ego", "online", (57.3, 4.0), "paper v2 Table 1"),
        Benchmark("rvs_movie", "RVS-Movie", "online", (53.1, 3.3), "paper v2 Table 1"),
        Benchmark("vs_ego", "VS-Ego", "offline", (59.0, 3.9), "paper v2 Table 3"),
        Benchmark("vs_movie", "VS-Movie", "offline", (56.1, 3.4), "paper v2 Table 3"),
        Benchmark("actnet", "ActivityNet-QA", "offline", (51.9, 3.4), "paper v2 Table 3"),
        Benchmark("nextoe", "NExT-QA (open-ended)", "offline", (61.6, 3.4), "paper v2 Table 3"),
        Benchmark("msvd", "MSVD-QA", "offline", (80.3, 3.9), "paper v2 Table 3"),
        Benchmark("msrvtt", "MSRVTT-QA", "offline", (72.4, 3.4), "paper v2 Table 3"),
        Benchmark("synth", "Synthetic world", "online", None, "vstream data synth: closed answers, exact match"),
        Benchmark("egoschema", "EgoSchema", "offline", None, "multiple choice (5 options)"),
        Benchmark("mvbench", "MVBench", "offline", None, "multiple choice, 20 tasks"),
        Benchmark("videomme", "Video-MME", "offline", None, "multiple choice (4 options), without subtitles"),
        Benchmark("mlvu", "MLVU", "offline", None, "multiple choice (dev set)"),
        Benchmark("lvbench", "LVBench", "offline", None, "multiple choice (4 options)"),
        Benchmark("nextmc", "NExT-QA (multiple choice)", "offline", None, "multiple choice (5 options)"),
        Benchmark("ovobench", "OVO-Bench", "online", None, "streaming multiple choice, asked at its time"),
        Benchmark("streamingbench", "StreamingBench (real-time)", "online", None, "streaming multiple choice"),
    )
}
"""Judged by GPT-3.5 in the paper (snapshot not named): scores move with the judge, so reports name theirs."""


CUSTOM = "custom"
"""`custom:NAME` (or `custom`, named after its file): any file of a supported format, run under its own name."""


@dataclass(frozen=True)
class Published:
    """A published accuracy (%) on a scored-by-rule benchmark, and where it was published."""

    benchmark: str
    model: str
    accuracy: float
    source: str


PUBLISHED = (
    Published("egoschema", "Flash-VStream-Qwen 7B", 68.2, "Flash-VStream, arXiv 2506.23825 (ICCV 2025)"),
    Published("mlvu", "Flash-VStream-Qwen 7B", 66.3, "Flash-VStream, arXiv 2506.23825 (ICCV 2025)"),
    Published("lvbench", "Flash-VStream-Qwen 7B", 42.0, "Flash-VStream, arXiv 2506.23825 (ICCV 2025)"),
    Published("mvbench", "Flash-VStream-Qwen 7B", 65.4, "Flash-VStream, arXiv 2506.23825 (ICCV 2025)"),
    Published("videomme", "Flash-VStream-Qwen 7B", 61.2, "Flash-VStream, arXiv 2506.23825 (ICCV 2025), w/o subtitles"),
    Published("egoschema", "Qwen2-VL 7B", 66.7, "Qwen2-VL report, arXiv 2409.12191"),
    Published("mvbench", "Qwen2-VL 7B", 67.0, "Qwen2-VL report, arXiv 2409.12191"),
    Published("videomme", "Qwen2-VL 7B", 63.3, "Qwen2-VL report, arXiv 2409.12191, w/o subtitles"),
    Published("streamingbench", "Flash-VStream 7B (2024)", 23.23, "StreamingBench leaderboard, real-time, all tasks"),
)
"""Accuracies as their sources print them (Qwen2-VL 7B is the base of Flash-VStream-Qwen). Multiple-choice
accuracies are the share of questions whose chosen option is right; how each paper read the option from the
model's text is its own (vstream reports a strict reader and option likelihoods beside each other)."""


def published_for(benchmark: str) -> list[Published]:
    """The published accuracies of a benchmark, in the table's order."""
    return [p for p in PUBLISHED if p.benchmark == benchmark]


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name (`custom:NAME` for a file of one's own), with a clear error listing the known ones."""
    if name.startswith(CUSTOM + ":") and len(name) > len(CUSTOM) + 1:
        return Benchmark(name, name.split(":", 1)[1], "offline", None, "a file of a supported format")
    if name not in BENCHMARKS:
        known = ", ".join([*BENCHMARKS, "custom:NAME"])
        raise ConfigError(f"unknown benchmark {name!r}; known: {known}")
    return BENCHMARKS[name]
