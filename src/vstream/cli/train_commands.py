"""`vstream train` and `vstream merge-lora`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vstream.synth.world import SMOL_WORLD_VERSION, WORLD_VERSIONS, check_world_version


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="the run's YAML file, or a preset: stage1, stage2, stage2_lora, tiny_cpu, smol (see vstream.train)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="fields to change, e.g. learning_rate=1e-4 data.fps=2"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--check", action="store_true", help="check the config and the data, then stop")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed


def cmd_train(args: argparse.Namespace) -> int:
    from vstream.train import build_trainer, load_train_config, train

    config = load_train_config(args.config, args.overrides)
    if args.check:
        trainer = build_trainer(config)
        print(json.dumps({"samples": len(trainer.train_dataset), "output_dir": config.output_dir}))
        return 0
    print(json.dumps({"checkpoint": str(train(config, resume=args.resume))}))
    return 0


def add_merge_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", type=Path, help="a LoRA checkpoint saved by `vstream train` (adapter_config.json)")
    parser.add_argument("--output", type=Path, required=True, help="where the merged checkpoint goes")
    parser.add_argument("--base", default=None, help="the base checkpoint (default: the one the adapter names)")


def cmd_merge_lora(args: argparse.Namespace) -> int:
    from vstream.model.loading import merge_lora

    print(json.dumps({"checkpoint": str(merge_lora(args.adapter, args.output, base=args.base))}))
    return 0


def add_build_smol_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="build folder (the checkpoint: OUT/checkpoint)")
    parser.add_argument("--seed", type=int, default=0, help="the world and every initialisation")
    parser.add_argument("--streams", type=int, default=400, help="training streams")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each training stream")
    parser.add_argument("--vision-seconds", type=float, default=300.0, help="time to teach the vision tower")
    parser.add_argument(
        "--text-steps",
        type=int,
        default=1600,
        help="steps teaching the new language model the world's questions on transcripts before the memory (0: none)",
    )
    parser.add_argument(
        "--text-extensions",
        type=int,
        default=3,
        help="times the transcript stage goes on, by half of --text-steps, while it has not learned to copy an object",
    )
    parser.add_argument(
        "--read-steps",
        type=int,
        default=750,
        help="steps teaching the model to read the corner digit from its memory before the language training (0: none)",
    )
    parser.add_argument(
        "--read-extensions",
        type=int,
        default=2,
        help="times the reading step goes on, by --read-steps, while it has not found the corner digit",
    )
    parser.add_argument(
        "--vision-tower",
        default=None,
        metavar="FOLDER",
        help="use this taught smol vision tower (`smol`: the shipped model's) instead of teaching one",
    )
    parser.add_argument(
        "--temporal-memory",
        default=None,
        metavar="NxS",
        help="the temporal memory's size, N centroids of SxS tokens (default 16x2, the shipped model's)",
    )
    parser.add_argument("--llm-layers", type=int, default=4, help="the new language model's depth (default 4)")
    parser.add_argument(
        "--world-version",
        default=SMOL_WORLD_VERSION,
        help=f"the synthetic world trained on and held out, one of {', '.join(WORLD_VERSIONS)} (default "
        f"{SMOL_WORLD_VERSION}, the shipped model's)",
    )
    parser.add_argument("--heldout", type=int, default=30, help="held-out streams (another seed) to evaluate on")
    parser.add_argument("--heldout-minutes", type=float, default=5.0)
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="changes to the smol training preset, e.g. max_steps=300"
    )


def cmd_build_smol(args: argparse.Namespace) -> int:
    from vstream.errors import ConfigError
    from vstream.eval.datasets import load_annotations
    from vstream.eval.judge import run_rule, verdict_paths
    from vstream.eval.predict import PredictConfig, run_predict
    from vstream.eval.report import build_report, to_markdown
    from vstream.model import GenerationOptions, VStream
    from vstream.synth.files import write_world
    from vstream.synth.questions import CHANCE
    from vstream.train.smol import SmolBuild, build_smol, write_model_card

    if (
        args.streams < 1
        or args.heldout < 1
        or min(args.minutes, args.heldout_minutes) < 1.5
        or args.vision_seconds <= 0
        or args.text_steps < 0
        or args.read_steps < 0
        or args.text_extensions < 0
        or args.read_extensions < 0
        or args.llm_layers < 1
    ):
        raise ConfigError(
            "--streams and --heldout must be >= 1, --minutes and --heldout-minutes >= 1.5, --vision-seconds > 0, "
            "--text-steps, --text-extensions, --read-steps and --read-extensions >= 0, --llm-layers >= 1"
        )
    check_world_version(args.world_version)
    if args.vision_tower not in (None, "smol") and not (Path(args.vision_tower) / "config.json").is_file():
        raise ConfigError(f"--vision-tower {args.vision_tower}: not a vision tower folder (no config.json)")
    if args.temporal_memory is not None:
        from vstream.model.smol import temporal_memory_sizes

        try:
            temporal_memory_sizes(args.temporal_memory)
        except ValueError as exc:
            raise ConfigError(f"--temporal-memory: {exc}") from exc
    build = SmolBuild(
        seed=args.seed,
        streams=args.streams,
        minutes=args.minutes,
        vision_seconds=args.vision_seconds,
        overrides=tuple(args.overrides),
        vision_tower=args.vision_tower,
        text_steps=args.text_steps,
        text_extensions=args.text_extensions,
        read_steps=args.read_steps,
        read_extensions=args.read_extensions,
        temporal_memory=args.temporal_memory,
        llm_layers=args.llm_layers,
        world_version=args.world_version,
    )
    checkpoint = build_smol(args.out, build)
    heldout = write_world(
        args.out / "data" / "heldout",
        args.seed + 1,
        args.heldout,
        round(args.heldout_minutes * 60),
        start=0,
        version=args.world_version,
    )
    model = VStream.from_pretrained(checkpoint)
    # one file a checkpoint: an interrupted evaluation resumes, and a checkpoint trained again is evaluated anew
    predictions = args.out / f"heldout-{model.fingerprint()[:12]}.predictions.jsonl"
    config = PredictConfig("synth", predictions, videos=heldout.videos, options=GenerationOptions(max_new_tokens=6))
    run_predict(model, load_annotations(heldout.annotations), config, str(checkpoint))
    run_rule(predictions, verdict_paths(predictions))
    report = build_report([predictions], [verdict_paths(predictions)])
    (args.out / "heldout_report.md").write_text(to_markdown(report))
    (row,) = report["rows"]
    accuracy = {t: c.get("accuracy") for t, c in row["by_type"].items()}
    record = json.loads((args.out / "build.json").read_text())
    command = "vstream build-smol " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "vstream build-smol"
    write_model_card(checkpoint, record, accuracy, CHANCE, command)
    print(
        json.dumps(
            {"checkpoint": str(checkpoint), "accuracy": row.get("accuracy"), "by_type": accuracy, "chance": CHANCE}
        )
    )
    return 0
