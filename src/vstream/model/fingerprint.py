"""What a model's answers depend on, as one short hash: its weight, config and tokenizer files' contents.

Evaluation keys every result by it, so a checkpoint retrained at the same path is never served old answers.
Hashing a 7B checkpoint reads 14 GB once; each file's digest is then cached (in vstream's cache folder) by its
path, modification time and size, so the next run costs a `stat` per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import torch

from vstream.paths import cache_dir

DIGEST_CACHE = "file_digests.json"
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
)
"""Files beside the weights that change what a checkpoint answers."""

_lock = threading.Lock()


def checkpoint_fingerprint(folder: str | os.PathLike, weight_files: list[Path], vision: str | None = None) -> str:
    """A sha256 of the checkpoint's weight files and the files that shape its answers (config, tokenizer), and of
    the vision tower (its files when it is a folder, else its name)."""
    folder = Path(folder)
    parts = [(f.name, file_digest(f)) for f in weight_files]
    parts += [(name, file_digest(folder / name)) for name in CHECKPOINT_FILES if (folder / name).is_file()]
    if vision is not None:
        tower = Path(vision)
        if tower.is_dir():
            files = sorted(p for p in tower.rglob("*") if p.is_file() and not p.name.startswith("."))
            parts += [(f"vision/{p.relative_to(tower)}", file_digest(p)) for p in files]
        else:
            parts.append(("vision", vision))
    return hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """A sha256 of a module's parameters and buffers (names, dtypes, shapes, values): for a model built in code."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of a file's content, computed once per (path, modification time, size) and then cached."""
    path = Path(path).resolve()
    stat = path.stat()
    entry = f"{path}|{stat.st_mtime_ns}|{stat.st_size}"
    with _lock:
        cached = _read_cache().get(entry)
    if cached:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _lock:
        cache = _read_cache()
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}  # older versions of this file
        cache[entry] = value
        _write_cache(cache)
    return value


def _cache_path() -> Path:
    return cache_dir() / DIGEST_CACHE


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict[str, str]) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, path)  # atomic: processes sharing the cache (torchrun ranks) never read half a file
    except OSError:
        pass  # a read-only cache only costs hashing again next time
