"""Transfer's probe data: a learner trained on one dataset (A), its frozen latents probed on another (B).

`bench run --dataset A --probe-dataset B` trains on A's training images exactly as an in-domain
run does (the same train key: an in-domain run's cached checkpoint is reused), then the
evaluator extracts the latents of B's train, validation and test images and probes them with B's
labels under the same protocol (B's seeded validation slice picks every hyperparameter, B's test
split is scored once). B's images are adapted to A's geometry by one declared rule (`adapt`):
grey to RGB by repetition, RGB to grey by ITU-R BT.601 luma, then a bilinear, antialiased
resize to A's height and width, rounded back to uint8. Runs are keyed by both datasets and the
rule; their page (bench/report/transfer.py) is results/<A>-to-<B>.md, with B's (and A's) in-domain
rows beside.

`--classes` / `--probe-classes` keep a subset of either side's classes (bench/data/__init__.py), so one
dataset split by class is a transfer too: CIFAR-10's classes 0-4 to its classes 5-9.
"""

from __future__ import annotations

import dataclasses

import torch

from bench import BenchError, config, data, nets
from bench.data import Dataset

rule = nets.adaptation  # the probe images' adaptation, in words (bench/nets.py holds the rule)


def adapt(x: torch.Tensor, channels: int, height: int, width: int, batch: int = 4096) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> uint8 (N, channels, height, width) by `nets.adapt_images`."""
    out = []
    for i in range(0, len(x), batch):
        xb = nets.adapt_images(x[i : i + batch].float(), channels, height, width)
        out.append(xb.round().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else x


def load(cfg: config.Config, trained_on: Dataset, data_dir, offline: bool) -> Dataset | None:
    """The probe dataset of `cfg.probe` (None without one): B's splits (its validation slice
    carved as A's is, from `[data]`'s fraction and seed), adapted to A's geometry."""
    if not cfg.probe.dataset:
        return None
    probe_cfg = dataclasses.replace(
        cfg.data, name=cfg.probe.dataset, classes=list(cfg.probe.classes), train_limit=0
    )
    b = data.load(probe_cfg, data_dir, offline)
    if b.fingerprint == trained_on.fingerprint and list(cfg.probe.classes) == list(cfg.data.classes):
        raise BenchError("--probe-dataset is the training data itself: drop it for an in-domain run")
    return adapted(b, trained_on.shape, probe_cfg)


def adapted(b: Dataset, shape, probe_cfg) -> Dataset:
    """`b` with its images in `shape`'s geometry; its `probe` record describes what was done."""
    target = (shape.channels, shape.height, shape.width)
    source = tuple(b.x_train.shape[1:])
    images = {f"x_{s}": adapt(getattr(b, f"x_{s}"), *target) for s in ("train", "val", "test")}
    return dataclasses.replace(
        b,
        **images,
        probe={
            "dataset": {k: getattr(b, k) for k in ("name", "slug", "title", "provenance", "classes")},
            "data": {
                "val_fraction": probe_cfg.val_fraction,
                "val_seed": probe_cfg.val_seed,
                "classes": list(probe_cfg.classes),
                "fingerprint": b.fingerprint,
            },
            "adapt": rule(source, target),
        },
    )


def load_for(spec: dict, data_dir, offline: bool, trained_on: Dataset) -> Dataset | None:
    """The probe dataset a stored run was measured on (None for an in-domain run), checked."""
    probe = spec.get("probe")
    if not probe:
        return None
    d = probe["data"]
    probe_cfg = config.DataConfig(
        probe["dataset"]["name"], d["val_fraction"], d["val_seed"], 0, list(d["classes"])
    )
    b = data.load(probe_cfg, data_dir, offline)
    if b.fingerprint != d["fingerprint"]:
        raise BenchError(
            f"{probe['dataset']['name']}: the files under the data folder differ from the run's probe data"
        )
    return adapted(b, trained_on.shape, probe_cfg)
