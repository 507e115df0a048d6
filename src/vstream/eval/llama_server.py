"""A llama.cpp server (through xllamacpp) for one GGUF file, run as a child process by `local_judge`.

    python -m vstream.eval.llama_server MODEL.gguf PORT [--threads N] [--ctx N] [--parallel N]

Prints `READY` once the server listens, then serves until it is stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx * args.parallel  # llama.cpp splits the context among the parallel slots
    params.n_parallel = args.parallel
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.cpuparams.n_threads = args.threads
    server = xllamacpp.Server(params)  # noqa: F841 - it serves while this process lives
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
