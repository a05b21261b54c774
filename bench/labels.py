"""Names. A table row is its learner plus the overrides its runs recorded (what was asked beyond
the page's protocol, see config.py), so `ae (loss=l1+ssim)` sits beside `ae` whatever else is in
the store; a study's re-runs read `ae (tuned, ...)`; the supervised reference says so. A single
run is `ae d=64 seed=0 on MNIST`."""

from __future__ import annotations

from bench import registry


def name(cfg: dict) -> str:
    """The row name of a run from its stored config: learner, then its recorded overrides."""
    method = cfg["method"]
    parts = [f"{k}={_short(v)}" for k, v in cfg.get("overrides", {}).items()]  # in the order asked
    if any(p.startswith("tuned:") for p in cfg.get("purposes", [])):
        parts = ["tuned", *parts]  # the study's page explains the settings
    if registry.is_reference(method):
        parts.append("reference: trained with labels")
    return f"{method} ({', '.join(parts)})" if parts else method


def labels(runs: list[dict]) -> list[str]:
    return [name(r["config"]) for r in runs]


def is_variant(cfg: dict) -> bool:
    """A run asked for something beyond its page's protocol (an ablation or a tuned setting)."""
    return bool(cfg.get("overrides")) or any(p.startswith("tuned:") for p in cfg.get("purposes", []))


def describe(spec: dict, latent_dim: int | None = None) -> str:
    dim = latent_dim or spec["method_config"].get("latent_dim")
    return (f"d={dim} " if dim else "") + f"seed={spec['seed']}"


def title(spec: dict, latent_dim: int | None = None) -> str:
    """`ae d=64 seed=0 on MNIST (...)`: a run's name in figure titles."""
    dataset = spec["dataset"].get("title", spec["dataset"]["name"])
    return f"{name(spec)} {describe(spec, latent_dim)} on {dataset}"


def only_trial(run: dict) -> bool:
    purposes = run["config"].get("purposes", [])
    return bool(purposes) and all(p.startswith("trial:") for p in purposes)


def _short(v) -> str:
    if isinstance(v, list | tuple):
        return ",".join(map(_short, v))
    return f"{v:.3g}" if isinstance(v, float) else str(v)
