"""Names. A table row is its learner plus the overrides its runs recorded (what was asked beyond
the page's protocol, see config.py), so `ae (loss=l1+ssim)` sits beside `ae` whatever else is in
the store; a study's re-runs read `ae (tuned, ...)`; the supervised reference says so. A single
run is `ae d=64 seed=0 on MNIST`."""

from __future__ import annotations

from bench import registry
from bench.store import compat
from bench.store.spec import Purpose

SUBJECT = (
    "data.classes",
)  # a class subset is its page's subject (bench/report/__init__.py `home`), not a row's


def asked(cfg: dict) -> dict:
    """The overrides a run recorded that set its row apart from its page's protocol: all of them
    but the page's own subject (`SUBJECT`, named in the page's title instead)."""
    return {k: v for k, v in cfg.get("overrides", {}).items() if k not in SUBJECT}


def name(cfg: dict) -> str:
    """The row name of a run from its stored config: learner, then its recorded overrides."""
    method = cfg["method"]
    parts = [f"{k}={short(v)}" for k, v in asked(cfg).items()]  # in the order asked
    if parts and any(purpose(p).kind == "tuned" for p in cfg.get("purposes", [])):
        parts = ["tuned", *parts]  # the study's page explains the settings (none: the defaults won)
    if registry.is_reference(method):
        parts.append("reference: trained with labels")
    if cfg.get("source"):  # a learner from outside the repository says where from
        parts.append(f"from {cfg['source']['entry']}")
    return f"{method} ({', '.join(parts)})" if parts else method


def labels(runs: list[dict]) -> list[str]:
    """Row names of `runs`. Runs that share a name but not their settings (the store holds two
    protocols of one dataset, say an old budget beside a new one) are never averaged together:
    each such name gets the settings that tell its runs apart, in brackets."""
    names = [name(r["config"]) for r in runs]
    flat = [_settings(r["config"]) for r in runs]
    for shared in set(names):
        group = [i for i, n in enumerate(names) if n == shared]
        keys = sorted({k for i in group for k in flat[i]})
        differ = [k for k in keys if len({repr(flat[i].get(k)) for i in group}) > 1]
        for i in group if differ else []:
            names[i] += " [" + ", ".join(f"{k}={short(flat[i].get(k))}" for k in differ) + "]"
    return names


def _settings(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.get("method_config", {}).items() if k != "latent_dim"}
    if cfg.get("source"):  # two versions of an outside learner's file are two rows
        out["code"] = cfg["source"]["sha256"][:8]
    for section in ("train", "eval", "data"):
        values = compat.settings(section, cfg.get(section))
        out.update({f"{section}.{k}": v for k, v in values.items()})
    return out


def is_variant(cfg: dict) -> bool:
    """A run asked for something beyond its page's protocol (an ablation or a tuned setting); a
    study whose best trial is the defaults re-runs the plain row itself."""
    return bool(asked(cfg))


def describe(spec: dict, latent_dim: int | None = None) -> str:
    dim = latent_dim or spec["method_config"].get("latent_dim")
    return (f"d={dim} " if dim else "") + f"seed={spec['seed']}"


def run(spec: dict) -> str:
    """`ae (loss=l1) d=64 seed=0`: one run's row name, size and seed (progress lines)."""
    return f"{name(spec)} {describe(spec)}"


def title(spec: dict, latent_dim: int | None = None) -> str:
    """`ae d=64 seed=0 on MNIST (...)`: a run's name in figure titles."""
    dataset = spec["dataset"].get("title", spec["dataset"]["name"])
    return f"{name(spec)} {describe(spec, latent_dim)} on {dataset}"


def purpose(text: str) -> Purpose:
    """A stored purpose ("grid", "trial:<study>", ...) as a Purpose."""
    return Purpose.parse(text)


def only_trial(run: dict) -> bool:
    purposes = [purpose(p) for p in run["config"].get("purposes", [])]
    return bool(purposes) and all(p.kind == "trial" for p in purposes)


def short(v) -> str:
    if isinstance(v, list | tuple):
        return ",".join(map(short, v))
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(df) -> str:
    """A DataFrame as a Markdown table whose every text cell is safe there: `|` escaped and line
    breaks made spaces, whatever a learner's file path or a recorded override holds."""

    def cell(v):
        return " ".join(v.replace("|", "\\|").splitlines()) if isinstance(v, str) else v

    return df.map(cell).to_markdown(index=False, disable_numparse=True)
