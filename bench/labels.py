"""Names. A learner's label is its method plus every setting in which it differs from its
siblings, so `ae (loss=l1+ssim)` sits beside `ae` and the ablation table needs no bookkeeping;
a single run is `ae d=64 seed=0 on MNIST`."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from bench import BenchError, registry


def labels(runs: list[dict]) -> list[str]:
    """`ae` for the runs that share the most common settings, `ae (loss=l1+ssim)` for the rest.

    A tie (one default run beside one ablation run) goes to the learner's own default setting.
    """
    flat = [_settings(r["config"]) for r in runs]
    counts: dict = {}
    for r, s in zip(runs, flat):
        for k, v in s.items():
            counts.setdefault(_scope(r, k), Counter())[json.dumps(v)] += 1
    defaults = {m: _defaults(m) for m in {r["config"]["method"] for r in runs}}
    reference = {}
    for (scope, k), c in counts.items():
        default = defaults.get(scope, {}).get(k.removeprefix("method."))
        reference[(scope, k)] = max(c, key=lambda v: (c[v], v == default))
    labels = []
    for r, s in zip(runs, flat):
        diffs = []
        for k, v in s.items():
            if json.dumps(v) != reference[_scope(r, k)]:
                diffs.append(f"{k.removeprefix('method.')}={_short(v)}")
        method = r["config"]["method"]
        if any(p.startswith("tuned:") for p in r["config"].get("purposes", [])):
            diffs = ["tuned", *diffs]  # the study's page explains the settings
        labels.append(f"{method} ({', '.join(diffs)})" if diffs else method)
    return labels


def _scope(run: dict, key: str) -> tuple[str, str]:
    """Method settings compare within one learner; budget, evaluator and data across all."""
    return (run["config"]["method"] if key.startswith("method.") else "shared", key)


def _defaults(method: str) -> dict:
    """The learner's own Config defaults, JSON-encoded ({} for a learner no longer registered)."""
    try:
        cls = registry.get(method).Config
    except BenchError:
        return {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = json.dumps(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = json.dumps(f.default_factory())
    return out


def describe(spec: dict, latent_dim: int | None = None) -> str:
    dim = latent_dim or spec["method_config"].get("latent_dim")
    return (f"d={dim} " if dim else "") + f"seed={spec['seed']}"


def title(spec: dict, latent_dim: int | None = None) -> str:
    """`ae d=64 seed=0 on MNIST (...)`: a run's name in figure titles."""
    dataset = spec["dataset"].get("title", spec["dataset"]["name"])
    return f"{spec['method']} {describe(spec, latent_dim)} on {dataset}"


def only_trial(run: dict) -> bool:
    purposes = run["config"].get("purposes", [])
    return bool(purposes) and all(p.startswith("trial:") for p in purposes)


def _settings(cfg: dict) -> dict:
    out = {f"method.{k}": v for k, v in cfg["method_config"].items() if k != "latent_dim"}
    for section in ("train", "eval", "data"):
        out.update({f"{section}.{k}": v for k, v in (cfg[section] or {}).items()})
    return out


def _short(v) -> str:
    if isinstance(v, list):
        return ",".join(map(_short, v))
    return f"{v:.3g}" if isinstance(v, float) else str(v)
