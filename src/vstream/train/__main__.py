"""`python -m vstream.train CONFIG.yaml [KEY=VALUE ...] [--resume]`: the same as `vstream train`, for launchers that
run a module (`torchrun -m vstream.train`, `accelerate launch -m vstream.train`, `deepspeed --module vstream.train`)."""

import sys

from vstream.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
