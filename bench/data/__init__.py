"""Datasets, decoded once into uint8 tensors (N, C, H, W) held in memory. The readers of each
format are in sources.py (userdata.py: the user's .npz files and image folders); a transfer's
probe data, adapted to the training data's geometry, in probes.py.

Batches are later sliced from these tensors; no per-image work happens during training.
Every dataset carries a provenance string that reaches every table made from it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench import BenchError
from bench.config import DataConfig
from bench.data import sources
from bench.method import InputShape


@dataclass
class Dataset:
    name: str
    slug: str  # file-name-safe name: results/<slug>.md
    title: str  # short name for table and plot titles
    provenance: str
    classes: list[str]
    x_train: torch.Tensor  # (N, C, H, W) uint8; the validation slice is carved out of it
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    shape: InputShape
    fingerprint: str  # hash of the raw arrays: part of every run key, paths are not
    probe: dict | None = None  # a transfer's probe data: what it is and how it was adapted (transfer.py)
    ood: dict = field(default_factory=dict)  # OOD source -> (uint8 images, what they are): oodsets.py


def load(cfg: DataConfig, data_dir: str | None = None, offline: bool = False) -> Dataset:
    """Load dataset `cfg.name`, carve the seeded validation slice and compute train statistics."""
    name = cfg.name
    root = Path(data_dir) if data_dir else _default_root()
    return _split(name, sources.read(name, root, offline), cfg)


def for_run(spec: dict, data_dir: str | None, offline: bool, loaded: dict | None = None) -> Dataset:
    """The dataset a stored run (its spec's JSON form) was trained on, checked by its fingerprint
    (cached in `loaded`, when given, across runs)."""
    loaded = {} if loaded is None else loaded
    d = spec["data"]
    cfg = DataConfig(
        spec["dataset"]["name"],
        d["val_fraction"],
        d["val_seed"],
        d["train_limit"],
        list(d.get("classes", [])),
    )
    key = (cfg.name, cfg.val_fraction, cfg.val_seed, cfg.train_limit, tuple(cfg.classes))
    if key not in loaded:
        loaded[key] = load(cfg, data_dir, offline)
    ds = loaded[key]
    if ds.fingerprint != d["fingerprint"]:
        raise BenchError(
            f"{spec['dataset']['name']}: the files under the data folder differ from the run's "
            f"(fingerprint {ds.fingerprint} != {d['fingerprint']}): point --data-dir at the same copy"
        )
    return ds


def slug(name: str) -> str:
    """File-name-safe dataset name: 'npz:/a/b/cifar.npz' -> 'npz-cifar'; anything but letters,
    digits, '.', '_' and '-' becomes '-', so results/<slug>.md stays in results/."""
    if ":" in name:
        kind, path = name.split(":", 1)
        name = f"{kind}-{Path(path).stem or Path(path).name}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).replace("..", "-").lstrip(".-") or "dataset"


def _default_root() -> Path:
    from bench.store import cache_dir

    return cache_dir() / "data"


def _split(name: str, raw: dict, cfg: DataConfig) -> Dataset:
    x, y, x_test, y_test = (raw[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    x, x_test = _nchw(x, "x_train"), _nchw(x_test, "x_test")
    y, y_test = _labels(y, len(x), "y_train"), _labels(y_test, len(x_test), "y_test")
    if x.shape[1:] != x_test.shape[1:]:
        raise BenchError(f"{name}: train images {tuple(x.shape[1:])} != test {tuple(x_test.shape[1:])}")
    top = max(int(y.max()), int(y_test.max()))
    if top >= len(x) + len(x_test) and not len(raw.get("classes", [])):
        raise BenchError(
            f"{name}: labels go up to {top} but there are {len(x) + len(x_test)} images: labels are "
            "class indices 0..K-1 (name the classes in a `classes` array to go past that)"
        )
    classes = [str(c) for c in raw.get("classes", [])] or [str(i) for i in range(top + 1)]
    if top >= len(classes):
        raise BenchError(f"{name}: labels go up to {top} but only {len(classes)} classes are named")
    digest = hashlib.blake2b(digest_size=8)
    for t in (x, y, x_test, y_test):
        digest.update(t.numpy().tobytes())
    if cfg.classes:
        x, y, x_test, y_test, classes = _keep(cfg.classes, classes, x, y, x_test, y_test, name)
    if len(torch.unique(y)) < 2:
        raise BenchError(
            f"{name}: the training labels hold {len(torch.unique(y))} class; a probe needs two or more"
        )
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.val_seed))
    n_val = round(cfg.val_fraction * len(x))
    if not 0 < n_val < len(x):
        raise BenchError(f"data.val_fraction={cfg.val_fraction} leaves no train or no val images")
    val, train = perm[:n_val], perm[n_val:]
    if cfg.train_limit:
        train = train[: cfg.train_limit]
        if len(torch.unique(y[train])) < 2:  # also what BatchNorm needs: two images a batch
            raise BenchError(f"data.train_limit={cfg.train_limit} leaves fewer than two classes to train on")
    x_train = x[train]
    xf = x_train.float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    shape = InputShape(*x.shape[1:], tuple(mean.tolist()), tuple(std.tolist()), len(classes))
    title = raw.get("title", name)
    return Dataset(
        name,
        slug(name),
        title,
        raw["provenance"],
        classes,
        x_train,
        y[train],
        x[val],
        y[val],
        x_test,
        y_test,
        shape,
        digest.hexdigest(),
    )


def _keep(keep: list[int], classes: list[str], x, y, x_test, y_test, name: str):
    """Only the classes `keep` (indices), relabelled 0..k-1 in the order given."""
    bad = [c for c in keep if not 0 <= c < len(classes)]
    if bad or len(set(keep)) != len(keep) or len(keep) < 2:
        raise BenchError(
            f"{name}: classes {keep} must be two or more distinct indices in 0..{len(classes) - 1}"
        )
    relabel = torch.full((len(classes),), -1, dtype=torch.int64)
    relabel[torch.tensor(keep)] = torch.arange(len(keep))
    train, test = relabel[y] >= 0, relabel[y_test] >= 0
    return x[train], relabel[y[train]], x_test[test], relabel[y_test[test]], [classes[c] for c in keep]


def _nchw(x, what: str) -> torch.Tensor:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise BenchError(f"{what} has dtype {x.dtype}: images must be uint8 in 0..255")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise BenchError(f"{what} has shape {x.shape}: expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    return torch.from_numpy(np.ascontiguousarray(x))


def _labels(y, n: int, what: str) -> torch.Tensor:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise BenchError(f"{what} has shape {y.shape}: expected ({n},), one label per image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise BenchError(f"{what} must hold non-negative integer class indices, got dtype {y.dtype}")
    return torch.from_numpy(y.astype(np.int64))
