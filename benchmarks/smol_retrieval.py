"""Is the digit in vstream-smol's memory when it is asked for? The retrieved memory's hit rate on `detail`.

    vstream build-smol --out smol-build
    python benchmarks/smol_retrieval.py --build smol-build        # {"asked": 120, "retrieved_from_digit_scene": ...}

For training samples that ask which digit was shown (`detail`), the sample's memory is read out from the build's
features up to its moment, as training reads it; the sample counts as a hit when a retrieved key frame lies in the
scene that showed the digit (the scene log says which). A high rate with `detail` at chance means the digit is in
the memory (the vision tower reads it from the full-detail corner patch) and the language model has not learned to
read it; a low rate would put the fault on retrieval.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vstream.features import read_feature_clip
from vstream.memory import offline_readout
from vstream.model import VStream
from vstream.synth.files import TRAINING, read_plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="a `vstream build-smol` folder")
    parser.add_argument("--every", type=int, default=20, help="look at every N-th training sample")
    parser.add_argument("--samples", type=int, default=4000, help="among the first N training samples")
    args = parser.parse_args()
    start = time.perf_counter()
    world = args.build / "data" / "train"
    vs = VStream.from_pretrained(args.build / "init")
    config, attention = vs.memory_config(), vs.llm.model.attention_model
    plans = {plan.stream_id: plan for plan in read_plans(world)}
    records = json.loads((world / TRAINING).read_text())[: args.samples : args.every]
    asked = hits = 0
    for record in records:
        if "detail" not in record["types"]:
            continue
        plan = plans[Path(record["video"]).stem]
        clip = read_feature_clip(world / "features" / f"{plan.stream_id}.safetensors")
        kept = sum(t <= record["end_time"] + 1e-6 for t in clip.times)
        with torch.no_grad():
            snapshot = offline_readout(clip.features[:kept].float(), clip.times[:kept], config, attention)
        scene = next(s for s in plan.scenes if s.digit is not None)
        retrieved = [item for item in snapshot.items if item.memory == "retrieved"]
        hits += any(scene.start <= item.time_start and item.time_end < scene.end for item in retrieved)
        asked += 1
    print(
        json.dumps(
            {
                "asked": asked,
                "retrieved_from_digit_scene": hits,
                "rate": round(hits / max(asked, 1), 3),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
