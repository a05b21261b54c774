"""The run store: content-addressed run folders and a git-ignored cache for large artifacts.

    results/runs/<key>/config.json   what was run (resolved), written first
    results/runs/<key>/metrics.json  what it measured; its presence marks the run finished
    .cache/ckpt/<train_key>.pt       trained weights      .cache/latents/<train_key>.pt  latents

`key` hashes everything that changes a result; `train_key` hashes what changes the trained
weights, so a change to evaluation reuses the trained model. Every write is atomic (temp file and
rename): a killed process leaves finished runs intact and no half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from bench import CODE_VERSION, BenchError


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS_DIR", "results"))


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", ".cache"))


def digest(obj) -> str:
    """Stable short hash of a JSON-able object: key order does not matter, values do."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def keys(spec: dict) -> tuple[str, str]:
    """(run key, train key) of a run spec (see runner.spec)."""
    train_part = {k: spec[k] for k in ("method", "method_config", "train", "data", "seed")}
    train_key = digest({"code_version": CODE_VERSION, **train_part})
    return digest({"train_key": train_key, "eval": spec["eval"]}), train_key


def run_dir(key: str) -> Path:
    return results_dir() / "runs" / key


def is_done(key: str) -> bool:
    return (run_dir(key) / "metrics.json").is_file()


def load_json(path: Path):
    return json.loads(path.read_text())


def add_purpose(key: str, purpose: str) -> None:
    path = run_dir(key) / "config.json"
    cfg = load_json(path)
    if purpose not in cfg.setdefault("purposes", []):
        cfg["purposes"].append(purpose)
        write_json(path, cfg)


def load_runs() -> list[dict]:
    """Every finished run as {'key', 'config', 'metrics'}, in key order."""
    runs = []
    for d in sorted((results_dir() / "runs").glob("*/")):
        try:
            cfg = load_json(d / "config.json")
            metrics = load_json(d / "metrics.json")
        except FileNotFoundError:
            continue  # started, never finished: ignored until it is run again
        runs.append({"key": d.name, "config": cfg, "metrics": metrics})
    return runs


def find(prefix: str) -> str:
    """The full run key that starts with `prefix` (like a git short hash)."""
    hits = [d.name for d in (results_dir() / "runs").glob(f"{prefix}*") if d.is_dir()]
    if len(hits) != 1:
        what = "no run" if not hits else f"{len(hits)} runs"
        raise BenchError(
            f"{what} in {results_dir() / 'runs'} match key {prefix!r}: "
            "`python -m bench report` lists the keys in the tables' sources"
        )
    return hits[0]


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_tensor(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_tensor(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def atomic_save_npz(path: Path, arrays: dict) -> None:
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
