"""Before anything trains: every distinct model of a grid is built once, so a bad option fails
the grid at the start (exit 2) instead of after hours of finished runs. Each is checked for
memory (built on the meta device first), for whether it builds for the data at all, and for
whether the evaluators can measure it (bench/run/evaluate.py `preflight`)."""

from __future__ import annotations

import os

import torch

from bench import BenchError, config, registry
from bench.data import Dataset
from bench.evaluators import Plan
from bench.method import Unsupported
from bench.report import labels
from bench.run import evaluate
from bench.store.hashing import digest
from bench.store.spec import RunSpec


def check(specs: list[RunSpec], data: Dataset, probe: Dataset | None = None) -> list[RunSpec]:
    """Build every distinct model once and check it, its evaluation measured on `probe or data`. A combination
    that a learner cannot take (PCA wider than the image) is skipped with a note; if none is
    left, that is the error. Returns the specs to run."""
    verdict: dict[str, str | None] = {}
    kept, skipped = [], []
    for s in specs:
        sig = digest([s.method, s.method_config, s.eval])
        if sig not in verdict:
            try:
                cfg = config.method_config(s.method, s.method_config)
                model = _check_memory(s.method, cfg, data.shape)
                registry.create(s.method, cfg, data.shape)
                _check_evaluation(s, model, probe or data)
                verdict[sig] = None
            except Unsupported as e:
                verdict[sig] = str(e)
        (kept if verdict[sig] is None else skipped).append(verdict[sig] or s)
    for reason in dict.fromkeys(skipped):
        print(f"skipped: {reason}")
    if not kept:
        raise BenchError(skipped[0])
    return kept


def _check_evaluation(s: RunSpec, model, data: Dataset) -> None:
    eval_cfg = config.EvalConfig(**s.eval)
    per_class = torch.bincount(data.y_train, minlength=len(data.classes)).tolist()
    n = {split: len(getattr(data, f"x_{split}")) for split in evaluate.SPLITS}
    dim = getattr(model, "latent_dim", None) or 0
    image = (data.shape.channels, data.shape.height, data.shape.width)
    plan = Plan(
        n, tuple(per_class), dim, image, bool(getattr(model, "reconstructs", False)), eval_cfg.steer_only
    )
    evaluate.preflight(eval_cfg, plan, labels.run(s.json()), _smaller(model, s.method))


def _smaller(model, method: str) -> str:
    """What to choose instead when a run's evaluation would not fit in memory."""
    from bench.plugins.encoders import Encoder

    if getattr(model, "takes_latent_dim", True):
        return "a smaller latent size"
    return (
        f"a narrower output (methods.{method}.layer, .size)"
        if isinstance(model, Encoder)
        else "another learner"
    )


def _check_memory(method: str, cfg, shape):
    """Refuse a model whose weights, gradients and AdamW moments would not fit in half of this
    machine's memory, before allocating anything: the model is first built on the meta device
    (and returned, for the other checks; None if it cannot be built there)."""
    try:
        with torch.device("meta"):
            model = registry.create(method, cfg, shape)
    except Unsupported:
        raise
    except Exception:  # a learner that cannot build on meta: its real build reports for itself
        return None
    values = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    need, have = values * 4 * 4, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have / 2:
        dim = f" latent_dim={cfg.latent_dim}" if hasattr(cfg, "latent_dim") else ""
        raise BenchError(
            f"{method}{dim}: {values / 1e6:,.0f}M parameters need ~{need / 2**30:,.0f} GiB for weights, "
            f"gradients and optimiser state; this machine has {have / 2**30:.0f} GiB: choose a smaller size"
        )
    return model
