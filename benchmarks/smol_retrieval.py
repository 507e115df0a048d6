"""Is the digit in vstream-smol's memory when it is asked for, and can the language model learn to read it there?

    vstream build-smol --out smol-build
    python benchmarks/smol_retrieval.py --build smol-build        # {"asked": 120, "retrieved_from_digit_scene": ...}
    python benchmarks/smol_retrieval.py --build smol-build --every 3 --samples 8000 --learn 600   # + "learned"
    python benchmarks/smol_retrieval.py --build smol-build --every 1 --samples 19200 --held-out 400 --learn 1000 \
        --start smol-build/text smol-build/checkpoint        # how soon each of these starts learns to read it

For training samples that ask which digit was shown (`detail`), the sample's memory is read out from the build's
features up to its moment, as training reads it; the sample counts as a hit when a retrieved key frame lies in the
scene that showed the digit (the scene log says which). A high rate with `detail` at chance means the digit is in
the memory (the vision tower reads it from the full-detail corner patch) and the language model has not learned to
read it; a low rate would put the fault on retrieval.

`--learn STEPS` then trains the build's untrained language model on those memories, `detail` alone (batches of 4,
AdamW at 1e-3, three quarters of the samples), once with the projector drawn as transformers draws a model's
linear layers (normal, std `initializer_range`) and once as fresh PyTorch layers (what `vstream build-smol` does,
as the released recipe adds its projector to a trained LLM), and reports the digit's accuracy on the other quarter
(or on the last `--held-out` samples). Samples are drawn without repetition while the training split lasts. With
`--start`, the given checkpoints are trained instead, their projector as it is: how long the loss stays at chance
(`loss_every_50`, the mean of each 50 steps) says how hard finding the digit is from where each one stands.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from vstream.features import read_feature_clip
from vstream.memory import offline_readout
from vstream.model import VStream
from vstream.model.modeling_vstream import init_new_modules
from vstream.model.processing_vstream import IGNORE_INDEX
from vstream.synth.files import TRAINING, read_plans
from vstream.train.data import TrainingSample
from vstream.train.model import batch_inputs
from vstream.train.read_pretrain import single_question_records

PROJECTOR_INITS = ("transformers", "pytorch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="a `vstream build-smol` folder")
    parser.add_argument("--every", type=int, default=20, help="look at every N-th training sample")
    parser.add_argument("--samples", type=int, default=4000, help="among the first N training samples")
    parser.add_argument("--learn", type=int, default=0, help="train the digit's reading for STEPS steps of 4")
    parser.add_argument("--held-out", type=int, default=0, help="samples kept out of learning (0: a quarter)")
    parser.add_argument("--start", type=Path, nargs="*", default=[], help="checkpoints to learn from, as they are")
    args = parser.parse_args()
    start = time.perf_counter()
    world = args.build / "data" / "train"
    vs = VStream.from_pretrained(args.build / "init")
    config, attention = vs.memory_config(), vs.llm.model.attention_model
    plans = {plan.stream_id: plan for plan in read_plans(world)}
    records = json.loads((world / TRAINING).read_text())[: args.samples : args.every]
    asked = hits = 0
    memories: list[tuple[Tensor, str, str]] = []
    for record in single_question_records(records, "detail"):
        plan = plans[Path(record["video"]).stem]
        clip = read_feature_clip(world / "features" / f"{plan.stream_id}.safetensors")
        kept = sum(t <= record["end_time"] + 1e-6 for t in clip.times)
        with torch.no_grad():
            snapshot = offline_readout(clip.features[:kept].float(), clip.times[:kept], config, attention)
        scene = next(s for s in plan.scenes if s.digit is not None)
        retrieved = [item for item in snapshot.items if item.memory == "retrieved"]
        hits += any(scene.start <= item.time_start and item.time_end < scene.end for item in retrieved)
        asked += 1
        question, answer = (turn["value"] for turn in record["conversations"])
        memories.append((snapshot.tokens, question.replace("<video>\n", ""), answer))
    result = {"asked": asked, "retrieved_from_digit_scene": hits, "rate": round(hits / max(asked, 1), 3)}
    if args.learn and args.start:
        result["learned"] = {str(s): learn_to_read(s, memories, args.learn, None, args.held_out) for s in args.start}
    elif args.learn:
        result["learned"] = {
            f"projector_init_{init}": learn_to_read(args.build / "init", memories, args.learn, init, args.held_out)
            for init in PROJECTOR_INITS
        }
    print(json.dumps({**result, "seconds": round(time.perf_counter() - start, 1)}))


def learn_to_read(
    init: Path, memories: list[tuple[Tensor, str, str]], steps: int, projector_init: str | None, held_out: int = 0
) -> dict:
    """Train the LLM at `init` to answer `detail` from the given memories (its projector drawn anew as
    `projector_init` says, or kept when None); its loss along the way and its held-out accuracy."""
    torch.manual_seed(0)
    vs = VStream.from_pretrained(init)
    llm, processor, config = vs.llm, vs.processor, vs.memory_config()
    if projector_init == "transformers":
        for layer in llm.model.mm_projector:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=llm.config.initializer_range)
                nn.init.zeros_(layer.bias)
    elif projector_init == "pytorch":
        init_new_modules(llm, seed=0)
    samples = [
        TrainingSample(torch.empty(0), [], processor.sample_ids([(question, answer)]), "detail", tokens)
        for tokens, question, answer in memories
    ]
    split = max(1, len(samples) - held_out if held_out else 3 * len(samples) // 4)
    learning = [p for name, p in llm.named_parameters() if "attention_model" not in name]
    optimizer = torch.optim.AdamW(learning, lr=1e-3, weight_decay=0.0)
    llm.train()
    order = torch.randperm(split).tolist() * (4 * steps // split + 1)
    losses = []
    for step in range(steps):
        batch = [samples[i] for i in order[4 * step : 4 * step + 4]]
        embeds, labels, mask = batch_inputs(llm, processor, config, batch)
        loss = llm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    llm.eval()
    right, held = 0, samples[split:]
    with torch.no_grad():
        for sample in held:
            embeds, labels, mask = batch_inputs(llm, processor, config, [sample])
            answer = int((labels[0] != IGNORE_INDEX).nonzero()[0])  # the digit's position (its first label)
            right += int(llm(inputs_embeds=embeds, attention_mask=mask).logits[0, answer - 1].argmax()) == int(
                labels[0, answer]
            )
    curve = [round(sum(losses[i : i + 50]) / len(losses[i : i + 50]), 3) for i in range(0, len(losses), 50)]
    accuracy = round(right / max(len(held), 1), 3)
    return {"steps": steps, "held_out": len(held), "accuracy": accuracy, "loss_every_50": curve}


if __name__ == "__main__":
    main()
