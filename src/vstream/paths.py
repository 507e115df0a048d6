"""Where vstream keeps the files it generates (the tiny random model, synthetic clips)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$VSTREAM_CACHE`, else `$XDG_CACHE_HOME/vstream`, else ~/.cache/vstream."""
    if os.environ.get("VSTREAM_CACHE"):
        return Path(os.environ["VSTREAM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vstream"
