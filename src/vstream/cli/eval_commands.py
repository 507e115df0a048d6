"""`vstream eval {predict,judge,report,merge}`, `vstream data {check,cut}` and `vstream extract-features`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from vstream.cli.model_args import (
    add_device_arguments,
    add_model_arguments,
    generation_options_from_args,
    load_model_from_args,
    memory_flags,
)
from vstream.memory.config import apply_memory_changes
from vstream.synth.world import WORLD_VERSION, WORLD_VERSIONS


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="STEP", required=True)
    predict = sub.add_parser("predict", help="answer every question of a benchmark (resumable, shardable)")
    predict.add_argument(
        "--benchmark",
        required=True,
        help="rvs_ego, rvs_movie, vs_ego, vs_movie, actnet, nextoe, msvd, msrvtt, synth; multiple choice: egoschema, "
        "mvbench, videomme, mlvu, lvbench, nextmc; streaming: ovobench, streamingbench; or custom[:NAME] for any "
        "file of a supported format, run under its own name",
    )
    predict.add_argument("--annotations", type=Path, required=True, help="questions file (any supported format)")
    inputs = predict.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--videos", type=Path, help="folder of <video_id>.mp4 (or other video files, or folders)")
    inputs.add_argument("--features", type=Path, help="folder of <video_id>.safetensors (or .npy) feature files")
    predict.add_argument("--output", type=Path, required=True, help="predictions JSONL (appended, resumed)")
    predict.add_argument("--mode", choices=["online", "offline"], help="default: the benchmark's")
    predict.add_argument(
        "--realtime",
        action="store_true",
        help="online: play the videos in real time (answers then depend on the machine's speed; default: a "
        "simulated clock, the same answers on every run)",
    )
    predict.add_argument("--num-chunks", type=int, default=None, help="shards (default: $WORLD_SIZE or 1)")
    predict.add_argument("--chunk-idx", type=int, default=None, help="this shard (default: $RANK or 0)")
    predict.add_argument("--limit", type=int, default=None, help="answer at most this many questions in this run")
    predict.add_argument(
        "--skip-bad-records",
        action="store_true",
        help="answer the good records of a file with bad ones (listed in a warning) instead of stopping",
    )
    predict.add_argument(
        "--choice-methods",
        nargs="+",
        choices=["generate", "loglik"],
        default=None,
        help="multiple choice: generate a letter and read it strictly, and/or score each option's likelihood "
        "(default: both)",
    )
    add_model_arguments(predict, speed=None)

    judge = sub.add_parser(
        "judge", help="judge predictions with an LLM through an OpenAI-compatible endpoint, or by a rule (--rule)"
    )
    judge.add_argument("predictions", type=Path, help="predictions JSONL")
    judge.add_argument("--verdicts", type=Path, help="verdicts JSONL (cache and log; default beside the predictions)")
    judge.add_argument(
        "--rule",
        choices=["exact"],
        help="score closed answers (a word, a number, yes/no) by exact match after normalisation, with no LLM "
        "and no server: the judge options do not apply",
    )
    judge.add_argument(
        "--judge-model",
        metavar="GGUF",
        help="a judge with open weights, served here for the run: a .gguf file or OWNER/REPO/FILE.gguf on the Hub "
        "(llama.cpp through xllamacpp, CPU), or a checkpoint folder or OWNER/REPO on the Hub (vLLM, GPU); every "
        "verdict names it by its weights' sha256 or its Hub commit",
    )
    judge.add_argument("--judge-threads", type=int, default=None, help="CPU threads of the local judge")
    judge.add_argument(
        "--judge-revision",
        metavar="COMMIT",
        help="the Hub commit of --judge-model (OWNER/REPO for vLLM, or OWNER/REPO/FILE.gguf); default the newest, "
        "whose commit every verdict records",
    )
    judge.add_argument("--base-url", help="e.g. https://api.openai.com/v1 (or $VSTREAM_JUDGE_BASE_URL)")
    judge.add_argument("--model", help="the judge model, e.g. gpt-3.5-turbo-0125 (or $VSTREAM_JUDGE_MODEL)")
    judge.add_argument("--api-key", help="default: $OPENAI_API_KEY")
    judge.add_argument("--workers", type=int, default=8, help="concurrent requests")
    judge.add_argument("--attempts", type=int, default=5, help="tries per prediction")
    judge.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    judge.add_argument("--no-json-schema", action="store_true", help="do not ask the server to force JSON replies")
    judge.add_argument(
        "--judge-prompt",
        type=Path,
        metavar="FILE",
        help="a prompt of your own: JSON with 'version', 'system' and a 'user' template of {question}, {answer}, "
        "{prediction} (default: vstream's own prompt)",
    )

    report = sub.add_parser(
        "report", help="accuracy and score per run, judge and question type, with every count and the paper's"
    )
    report.add_argument("predictions", type=Path, nargs="+", help="predictions JSONL files")
    report.add_argument("--verdicts", type=Path, nargs="*", help="verdicts files (default: beside each predictions)")
    report.add_argument("--model", help="only this model (its name, or name@fingerprint)")
    report.add_argument("--judge", help="only the verdicts of this judge model")
    report.add_argument("--mode", choices=["online", "offline"], help="only the runs in this mode")
    report.add_argument(
        "--compare", action="store_true", help="also show the rows side by side: one column per run, one line per type"
    )
    report.add_argument("--json", type=Path, help="also write the report as JSON here")
    report.add_argument("--markdown", type=Path, help="also write the Markdown here")
    report.add_argument(
        "--plot", type=Path, help="also draw accuracy and score per question type (PNG; needs matplotlib)"
    )

    agree = sub.add_parser(
        "agree", help="how far two judges agree on the same predictions (agreement, Cohen's kappa, score correlation)"
    )
    agree.add_argument("a", type=Path, help="verdicts of judge A (JSONL, as `eval judge` writes them)")
    agree.add_argument("b", type=Path, help="verdicts of judge B (may be the same file, with --judge-a/--judge-b)")
    agree.add_argument("--judge-a", help="judge A's name, where its file holds several judges")
    agree.add_argument("--judge-b", help="judge B's name, where its file holds several judges")
    agree.add_argument("--show", type=int, default=20, help="disagreements listed (all of them with --json)")
    agree.add_argument("--json", action="store_true", help="print the whole result as JSON")

    merge = sub.add_parser("merge", help="merge the shards of a sharded predictions run into one file")
    merge.add_argument("shards", type=Path, nargs="+")
    merge.add_argument("--output", type=Path, required=True)


def cmd_eval(args: argparse.Namespace) -> int:
    commands = {"predict": _predict, "judge": _judge, "report": _report, "merge": _merge, "agree": _agree}
    return commands[args.eval_command](args)


def _agree(args: argparse.Namespace) -> int:
    from vstream.eval.agree import agreement

    result = agreement(args.a, args.b, judge_a=args.judge_a, judge_b=args.judge_b)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    def number(value: float | None) -> str:
        return "n/a (undefined)" if value is None else f"{value:.3f}"

    print(f"judge A: {', '.join(result.judge_a)}   judge B: {', '.join(result.judge_b)}")
    print(
        f"predictions judged by both: {result.pairs} (only A: {result.only_a}, only B: {result.only_b}, "
        f"different answer texts: {result.different_text})"
    )
    print(
        f"yes/no agreement: {share(result.agreement)}   Cohen's kappa: {number(result.kappa)}   "
        f"score correlation: {number(result.score_correlation)}"
    )
    print(f"accuracy by A: {share(result.yes_rate_a)}   by B: {share(result.yes_rate_b)}")
    print(f"disagreements: {len(result.disagreements)}")
    for item in result.disagreements[: args.show]:
        a, b = item["a"], item["b"]
        print(f"  {item['prediction_key']}: A {a['pred']} ({a['score']}), B {b['pred']} ({b['score']})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vstream.errors import ConfigError
    from vstream.eval.predict import PredictConfig, failures_of_all_shards, hub_model_without_gpu, run_predict
    from vstream.eval.questions import load_questions

    num_chunks, chunk_idx = _shard(args)
    benchmark, annotations = load_questions(args.annotations, args.benchmark, strict=not args.skip_bad_records)
    config = PredictConfig(
        benchmark=benchmark,
        output=args.output,
        videos=args.videos,
        features=args.features,
        mode=args.mode or _timed_mode(annotations.items),
        realtime=args.realtime,
        fps=args.fps,
        num_chunks=num_chunks,
        chunk_idx=chunk_idx,
        limit=args.limit,
        options=generation_options_from_args(args),
        choice_methods=tuple(args.choice_methods) if args.choice_methods else None,
    )  # its checks come before any work; the memory config needs the model
    flags = memory_flags(args)
    no_gpu = hub_model_without_gpu(args.model, args.device)
    if no_gpu:
        raise ConfigError(no_gpu)
    model = load_model_from_args(args)
    config = replace(config, memory=apply_memory_changes(model.memory_config(), flags))
    counts = run_predict(model, annotations, config, args.model)
    print(json.dumps(counts))
    failed = failures_of_all_shards(counts["errors"])
    if failed:
        where = "" if failed == counts["errors"] else f" ({counts['errors']} in this shard)"
        print(
            f"vstream eval predict: {failed} questions failed{where}; their records say why, a rerun retries them",
            file=sys.stderr,
        )
        return 1
    return 0


def _judge(args: argparse.Namespace) -> int:
    from vstream.errors import ConfigError
    from vstream.eval.judge import judge_config_from_environment, run_judge, run_rule, verdict_paths
    from vstream.eval.judge_prompt import DEFAULT_PROMPT, load_judge_prompt

    if args.rule:
        given = [flag for flag, value in _JUDGE_ONLY if getattr(args, value) not in (None, False)]
        if given:
            raise ConfigError(f"--rule {args.rule} scores without a judge: drop {', '.join(given)}")
        counts = run_rule(args.predictions, args.verdicts or verdict_paths(args.predictions), args.rule)
        print(json.dumps(counts))
        return 0 if counts["failed"] == 0 else 1
    prompt = load_judge_prompt(args.judge_prompt) if args.judge_prompt else DEFAULT_PROMPT  # checked before any request
    verdicts = args.verdicts or verdict_paths(args.predictions)
    if args.judge_model:
        return _judge_locally(args, prompt, verdicts)
    config = judge_config_from_environment(
        args.base_url,
        args.model,
        api_key=args.api_key,
        workers=args.workers,
        attempts=args.attempts,
        timeout=args.timeout,
        json_schema=not args.no_json_schema,
        prompt=prompt,
    )
    counts = run_judge(args.predictions, verdicts, config)
    print(json.dumps(counts))
    return 0 if counts["failed"] == 0 else 1


def _judge_locally(args: argparse.Namespace, prompt: Any, verdicts: Path) -> int:
    from vstream.errors import ConfigError
    from vstream.eval.judge import JudgeConfig, run_judge
    from vstream.eval.local_judge import local_judge

    given = [flag for flag, value in (("--base-url", "base_url"), ("--model", "model")) if getattr(args, value)]
    if given:
        raise ConfigError(f"--judge-model serves its own judge: drop {', '.join(given)}")
    with local_judge(args.judge_model, threads=args.judge_threads, revision=args.judge_revision) as judge:
        print(f"judge: {judge.model} (served at {judge.base_url} for this run)", file=sys.stderr)
        config = JudgeConfig(
            base_url=judge.base_url,
            model=judge.model,
            api_key="local",
            workers=min(args.workers, 4),
            attempts=args.attempts,
            timeout=args.timeout,
            json_schema=not args.no_json_schema,
            prompt=prompt,
        )
        counts = run_judge(args.predictions, verdicts, config)
    print(json.dumps(counts))
    return 0 if counts["failed"] == 0 else 1


_JUDGE_ONLY = [
    ("--judge-model", "judge_model"),
    ("--judge-revision", "judge_revision"),
    ("--base-url", "base_url"),
    ("--model", "model"),
    ("--api-key", "api_key"),
    ("--judge-prompt", "judge_prompt"),
    ("--no-json-schema", "no_json_schema"),
]
"""The `eval judge` options that name or tune an LLM judge: refused with --rule rather than silently ignored."""


def _report(args: argparse.Namespace) -> int:
    from vstream.eval.choice_report import build_choice_report, choice_markdown
    from vstream.eval.judge import verdict_paths
    from vstream.eval.report import build_report, comparison_markdown, runs_note, to_markdown

    if args.plot:
        from vstream.eval.report_plot import require_matplotlib

        require_matplotlib()  # before any work: a missing extra is one clear line
    verdicts = args.verdicts if args.verdicts else [verdict_paths(p) for p in args.predictions]
    report = build_report(args.predictions, verdicts, model=args.model, judge=args.judge, mode=args.mode)
    note = runs_note(report)
    if note:
        print(note, file=sys.stderr)
    choices = build_choice_report(args.predictions)
    markdown = to_markdown(report) if report["rows"] or not choices["rows"] else ""
    if args.compare and report["rows"]:
        markdown += "\n" + comparison_markdown(report)
    if choices["rows"]:
        markdown += ("\n" if markdown else "") + choice_markdown(choices)
        report["multiple_choice"] = choices["rows"]
    print(markdown, end="")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.plot:
        from vstream.eval.report_plot import save_plot

        save_plot(report, args.plot)
    return 0


def _timed_mode(items: list) -> str | None:
    """`online` for a file of one's own whose questions all carry a time to be asked at; else the benchmark's."""
    timed = bool(items) and all(getattr(item, "at", None) is not None for item in items)
    return "online" if timed else None


def _merge(args: argparse.Namespace) -> int:
    from vstream.eval.predict import check_shards
    from vstream.eval.records import merge_jsonl

    check_shards(args.shards)
    print(json.dumps({"records": merge_jsonl(args.shards, args.output), "output": str(args.output)}))
    return 0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="STEP", required=True)
    check = sub.add_parser(
        "check", help="validate benchmark annotations or LLaVA-format training files and list every bad record"
    )
    check.add_argument("files", type=Path, nargs="+")
    media = "training files: check that each record's media is found (feature files: and their shapes) in"
    check.add_argument("--features", type=Path, metavar="DIR", help=f"{media} DIR of .safetensors/.npy features")
    check.add_argument("--videos", type=Path, metavar="DIR", help=f"{media} DIR of videos and image folders")
    check.add_argument("--images", type=Path, metavar="DIR", help=f"{media} DIR of images")
    cut = sub.add_parser("cut", help="cut source videos (or keyframe folders) into clips by their metadata")
    cut.add_argument("--metadata", type=Path, required=True, help="clip metadata (video_id, original_video, ...)")
    cut.add_argument("--source-dir", type=Path, required=True, help="where the original videos or keyframes are")
    cut.add_argument("--output-dir", type=Path, required=True)
    synth = sub.add_parser(
        "synth", help="write streams of the synthetic world (H.264 videos) and their questions with known answers"
    )
    synth.add_argument("--seed", type=int, default=0, help="the world: the same seed writes the same files")
    synth.add_argument("--streams", type=int, default=10, help="how many streams")
    synth.add_argument("--first", type=int, default=0, help="index of the first stream (held-out sets start later)")
    synth.add_argument("--minutes", type=float, default=5.0, help="length of each stream (at least 1.5)")
    synth.add_argument("--size", type=int, default=64, help="frame side in pixels")
    synth.add_argument(
        "--world-version",
        default=WORLD_VERSION,
        help=f"the world's version, one of {', '.join(WORLD_VERSIONS)} (default {WORLD_VERSION}; in synth-v1 a cut "
        "may keep the background)",
    )
    synth.add_argument("--out", type=Path, required=True, help="folder for videos/, the annotations and the scene log")


def cmd_data(args: argparse.Namespace) -> int:
    from vstream.eval.cut import cut_clips
    from vstream.eval.datasets import load_annotations, load_clip_metadata

    if args.data_command == "synth":
        from vstream.errors import ConfigError
        from vstream.synth.files import write_world

        if args.streams < 1 or args.first < 0 or args.size < 16 or args.size % 8:
            raise ConfigError("--streams must be >= 1, --first >= 0, --size a multiple of 8 and at least 16")
        world = write_world(
            args.out,
            args.seed,
            args.streams,
            round(args.minutes * 60),
            size=args.size,
            start=args.first,
            version=args.world_version,
        )
        print(
            json.dumps(
                {"annotations": str(world.annotations), "videos": str(world.videos), "questions": world.questions}
            )
        )
        return 0
    if args.data_command == "check":
        from types import SimpleNamespace

        from vstream.errors import TrainingDataError
        from vstream.eval.mcq import check_mcq, detect_mcq_benchmark, mcq_title
        from vstream.eval.streaming_mcq import STREAMING_BENCHMARKS, check_streaming_mcq, detect_streaming_benchmark
        from vstream.train.media import MediaRoots
        from vstream.train.records import is_llava, read_records, validate_records

        given = (args.features, args.videos, args.images)
        roots = MediaRoots(*given) if any(given) else None  # no roots: the records' structure only
        bad = 0
        for path in args.files:
            try:
                records = read_records(path)
            except TrainingDataError:
                records = []  # load_annotations reports what is wrong with the file, as it always did
            if is_llava(records):
                checked = validate_records(records, str(path), roots)
                print(f"{path}: {len(checked.items)} training records (llava), {len(checked.problems)} bad records")
            elif detect_streaming_benchmark(records):
                questions, problems, found = check_streaming_mcq(path)
                title = STREAMING_BENCHMARKS[found]
                count = f"{len(questions)} timed multiple-choice questions ({title})"
                print(f"{path}: {count}, {len(problems)} bad records")
                checked = SimpleNamespace(problems=problems)
            elif detect_mcq_benchmark(records):
                questions, problems, found = check_mcq(path)
                title = mcq_title(found)
                print(f"{path}: {len(questions)} multiple-choice questions ({title}), {len(problems)} bad records")
                checked = SimpleNamespace(problems=problems)
            else:
                checked = load_annotations(path, strict=False)
                print(f"{path}: {len(checked.items)} questions ({checked.format}), {len(checked.problems)} bad records")
            for problem in checked.problems:
                print(f"  {problem}")
            bad += len(checked.problems)
        return 1 if bad else 0
    clips = load_clip_metadata(args.metadata).items
    counts = cut_clips(clips, args.source_dir, args.output_dir)
    print(json.dumps(counts))
    return 1 if counts["failed"] else 0


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", help="videos, image folders, or folders of them")
    parser.add_argument("--output-dir", type=Path, required=True, help="where <video_id>.safetensors go")
    parser.add_argument(
        "--model",
        default="IVGSZ/Flash-VStream-7b",
        help="checkpoint whose vision tower to use ('tiny-random' for tests); its LLM is not loaded",
    )
    parser.add_argument("--vision-tower", default=None, help="a CLIP tower to use instead of the checkpoint's")
    add_device_arguments(parser)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-chunks", type=int, default=None, help="shards (default: $WORLD_SIZE or 1)")
    parser.add_argument("--chunk-idx", type=int, default=None, help="this shard (default: $RANK or 0)")


def cmd_extract(args: argparse.Namespace) -> int:
    from vstream.eval.extract import extract_features
    from vstream.model.loading import load_vision_tower

    num_chunks, chunk_idx = _shard(args)
    vision = load_vision_tower(args.model, vision_tower=args.vision_tower, dtype=args.dtype, device=args.device)
    counts = extract_features(
        args.inputs,
        args.output_dir,
        lambda frames: vision.encode(frames, args.batch_size),
        fps=args.fps,
        batch_size=args.batch_size,
        num_chunks=num_chunks,
        chunk_idx=chunk_idx,
    )
    print(json.dumps(counts))
    return 1 if counts["failed"] else 0


def _shard(args: argparse.Namespace) -> tuple[int, int]:
    """(num_chunks, chunk_idx): the flags, else torchrun/accelerate's WORLD_SIZE and RANK, else (1, 0)."""
    from vstream.eval.predict import shard_from_environment

    world, rank = shard_from_environment() or (1, 0)
    return (
        args.num_chunks if args.num_chunks is not None else world,
        args.chunk_idx if args.chunk_idx is not None else rank,
    )
