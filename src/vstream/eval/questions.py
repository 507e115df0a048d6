"""The questions of any benchmark file, by the benchmark's name: open-ended, multiple-choice or streaming.

    benchmark, questions = load_questions("mvbench/test_qa.json", "mvbench")
    benchmark, questions = load_questions("my_set.json", "custom")       # -> "custom:my_set", format detected

Every record is checked. By default one bad record stops the run with the list of bad ones; `strict=False` runs
the good ones and keeps the problems in `Annotations.problems` (the run's records count the questions answered
against the file's, so a report shows the coverage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vstream.eval.benchmarks import CUSTOM, get_benchmark
from vstream.eval.datasets import Annotations, load_annotations
from vstream.eval.mcq import MCQ_BENCHMARKS, check_mcq, detect_mcq_benchmark, file_digest
from vstream.eval.records import annotation_records
from vstream.eval.streaming_mcq import STREAMING_BENCHMARKS, check_streaming_mcq, detect_streaming_benchmark

log = logging.getLogger(__name__)


def load_questions(path: str | os.PathLike, benchmark: str, *, strict: bool = True) -> tuple[str, Annotations]:
    """(the benchmark's name as results record it, the file's questions).

    `custom` (or `custom:NAME`) reads any supported file under its own name (`custom:<file stem>` by default),
    its format told from its records; a named benchmark's loader refuses a file of another benchmark.
    """
    path = Path(path)
    name = f"{CUSTOM}:{path.stem}" if benchmark == CUSTOM else benchmark
    get_benchmark(name)
    custom = name.startswith(CUSTOM + ":")
    if custom:
        records = annotation_records(path)
        streaming, choice = detect_streaming_benchmark(records), detect_mcq_benchmark(records)
    else:
        streaming = benchmark if benchmark in STREAMING_BENCHMARKS else None
        choice = benchmark if benchmark in MCQ_BENCHMARKS else None
    if streaming is not None:
        questions, problems, _ = check_streaming_mcq(path, streaming)
        fmt = streaming
    elif choice is not None:
        questions, problems, _ = check_mcq(path, CUSTOM if custom else choice)
        fmt = "multiple_choice"
    else:
        return name, load_annotations(path, strict=strict)
    result = Annotations(source=str(path), format=fmt, items=questions, problems=problems, digest=file_digest(path))
    if strict:
        result.raise_if_problems()
    elif problems:
        log.warning("%s: %d bad records left out: %s", path, len(problems), "; ".join(map(str, problems[:5])))
    return name, result
