"""Out-of-distribution images that come from data rather than from the run's own images
(bench/evaluators/ood.py makes those): another dataset, and the held-out classes of a run that
trains on some of a dataset's classes. They are loaded once, before any run starts, and travel
with the run's dataset (`Dataset.ood`), so a source that cannot be had stops the command with one
line before any run folder exists.

- A dataset name (`python -m bench list`): that dataset's test images, adapted to the run's
  geometry by transfer's rule (bench/data/probes.py: grey <-> RGB, a bilinear, antialiased resize):
  far-OOD, e.g. CIFAR-10 in grey for MNIST or digits, MNIST in colour for CIFAR-10.
- `held-out`: the test images of the classes a run with `data.classes` leaves out: near-OOD
  (OpenOOD's split of one dataset's classes), e.g. CIFAR-10's classes 5-9 for a run on 0-4.
"""

from __future__ import annotations

import dataclasses

import torch

from bench import BenchError, data
from bench.config import DataConfig
from bench.data import Dataset, probes, sources
from bench.evaluators.ood import HELD_OUT, SOURCES

DATASETS = tuple(n for n in sources.DATASETS if ":" not in n)


def wanted(names) -> list[str]:
    """The sources among `names` that come from data (the rest the evaluator makes)."""
    return [n for n in dict.fromkeys(names) if n not in SOURCES]


def check(names) -> None:
    """One line for an OOD source that is neither made nor a dataset (before anything loads)."""
    for name in wanted(names):
        if name != HELD_OUT and name not in DATASETS and not name.startswith(("npz:", "folder:")):
            raise BenchError(
                f"eval.ood_sources: {name!r} is neither a source made from the run's images "
                f"({', '.join(SOURCES)}), {HELD_OUT!r}, nor a dataset ({', '.join(DATASETS)}, npz:PATH, "
                "folder:PATH)"
            )


def attach(names, data_cfg: DataConfig, ds: Dataset, data_dir, offline: bool) -> Dataset:
    """`ds` with the uint8 test images of every data source in `names`, in its geometry, and a
    line saying what each is (`ds.ood[name] = (images, about)`)."""
    check(names)
    found = {}
    shape = (ds.shape.channels, ds.shape.height, ds.shape.width)
    for name in wanted(names):
        if name == HELD_OUT:
            if not data_cfg.classes:
                raise BenchError(
                    f"eval.ood_sources: {HELD_OUT!r} needs a run on some of the classes (--classes): "
                    f"{ds.title} is trained on all of them, so none is held out"
                )
            whole = data.load(dataclasses.replace(data_cfg, classes=[], train_limit=0), data_dir, offline)
            out = ~torch.isin(whole.y_test, torch.tensor(list(data_cfg.classes)))
            images = whole.x_test[out]
            held = sorted(set(range(len(whole.classes))) - set(data_cfg.classes))
            about = f"{ds.title}'s held-out classes {held} (test images)"
        else:
            other = data.load(DataConfig(name=name), data_dir, offline)
            if other.fingerprint == ds.fingerprint:
                raise BenchError(
                    f"eval.ood_sources: {name!r} is the run's own dataset, not out of it ({HELD_OUT!r} "
                    "takes the classes a run on some of them leaves out)"
                )
            source = tuple(other.x_test.shape[1:])
            try:
                images = probes.adapt(other.x_test, *shape)
            except Exception as e:  # a geometry the rule cannot map
                raise BenchError(
                    f"eval.ood_sources: {name!r} cannot be adapted to {shape} ({type(e).__name__}: {e})"
                ) from None
            about = f"{other.title} test images, {probes.rule(source, shape)}"
        if not len(images):
            raise BenchError(f"eval.ood_sources: {name!r} has no images")
        found[name] = (images, about)
    return dataclasses.replace(ds, ood=found) if found else ds


def for_run(spec: dict, ds: Dataset, data_dir, offline: bool) -> Dataset:
    """`attach` for a stored run (its spec's JSON form), from its own config."""
    names = (spec.get("eval") or {}).get("ood_sources") or []
    if not wanted(names) or (spec.get("eval") or {}).get("steer_only"):
        return ds
    d = spec["data"]
    cfg = DataConfig(spec["dataset"]["name"], d["val_fraction"], d["val_seed"], 0, list(d.get("classes", [])))
    return attach(names, cfg, ds, data_dir, offline)
