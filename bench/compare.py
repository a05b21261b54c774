"""A fair comparison: every learner gets the same tuning budget (`bench compare`).

For every trainable learner, one Optuna study `compare-<dataset>-<learner>` over that learner's
own search space, with the same objective (validation linear accuracy), the same number of
trials, the same per-trial budget, the same seeded TPE sampler and median pruner; then the best
configuration of each is re-run over the grid's seeds at the full budget. The studies are
ordinary `bench tune` studies (resumable, and spread over machines with `--storage`). The
dataset page then gains a "Tuned at equal budget" table (default beside tuned, the settings
found, trials and compute spent) and the rank changes between the two.
"""

from __future__ import annotations

import copy

import pandas as pd

from bench import BenchError, labels, registry, store, tune

PREFIX = "compare-"


def study_name(slug: str, method: str) -> str:
    return f"{PREFIX}{slug}-{method}"


def learners(methods: list[str] | None) -> list[str]:
    """The learners to compare: every registered trainable one with a search space by default."""
    names = methods or [m for m in registry.names() if registry.get(m).trainable]
    for m in names:
        if not registry.get(m).trainable:
            raise BenchError(f"{m} is a baseline (nothing to tune); it appears untuned as a floor")
        if not registry.tunable(m):
            raise BenchError(f"{m} declares no search space: it cannot be tuned")
    return names


def trial_config(cfg, method: str, trial_epochs: int | None):
    """The trial budget: the learner's own budget, with `trial_epochs` epochs if given."""
    cfg = copy.deepcopy(cfg)
    if trial_epochs:
        cfg.train_overrides[method] = {**cfg.train_overrides.get(method, {}), "epochs": trial_epochs}
    return cfg


def _evaluation_seconds(m: dict) -> float:
    """A run's evaluation time: recorded since it was; before, its wall time less its training,
    unless it was evaluated from a cached checkpoint (then its wall time is all evaluation)."""
    if "eval_time_s" in m:
        return m["eval_time_s"]
    wall, train = m.get("wall_time_s") or 0.0, (m.get("train") or {}).get("time_s", 0.0)
    return wall - train if wall > train else wall


def seconds_per_trial(runs: list[dict], slug: str, method: str, epochs: int) -> float | None:
    """Estimate from the store: the learner's mean training seconds per epoch on this dataset
    (runs of any size and purpose) times the trial's epochs, plus its mean evaluation time."""
    rates = []
    for r in runs:
        c, m = r["config"], r["metrics"]
        train = m.get("train") or {}
        if c["dataset"]["slug"] == slug and c["method"] == method and train.get("epochs"):
            rates.append((train["time_s"] / train["epochs"], _evaluation_seconds(m)))
    if not rates:
        return None
    per_epoch = sum(r[0] for r in rates) / len(rates)
    return per_epoch * epochs + sum(r[1] for r in rates) / len(rates)


def plan(
    cfg, slug: str, methods: list[str], trials: int, trial_epochs: int | None
) -> tuple[list[str], float]:
    """Lines describing the planned compute, and its total in hours (unknown learners: 0)."""
    runs = store.load_runs()
    lines, total = [], 0.0
    for m in methods:
        trial_cfg = trial_config(cfg, m, trial_epochs)
        epochs, full = trial_cfg.train_for(m).epochs, cfg.train_for(m).epochs
        per = seconds_per_trial(runs, slug, m, epochs)
        rerun = seconds_per_trial(runs, slug, m, full)
        cost = None if per is None else per * trials + (rerun or 0) * len(cfg.grid.seeds)
        total += cost or 0
        lines.append(
            f"  {m:<12} {trials} trials x {epochs} epochs + {len(cfg.grid.seeds)} re-runs x {full} epochs: "
            + ("no run of it in the store to estimate from" if cost is None else f"~{cost / 3600:.2f} h")
        )
    return lines, total / 3600


def run(cfg, ds, methods, trials, storage, device, trial_epochs, sampler_seed=0, prune=True) -> None:
    """Every learner's study (resumed if it exists), then its best configuration re-run."""
    for method in methods:
        name = study_name(ds.slug, method)
        study, url = tune.open_study(name, storage, False, sampler_seed, prune)
        print(f"study {name}: {trials} trials of {method}")
        tune.optimize(study, url, trial_config(cfg, method, trial_epochs), ds, method, trials, device, prune)
        if study.get_trials(deepcopy=False, states=(tune.TrialState.RUNNING,)):
            print(f"  {name}: trials still running on other workers; its re-runs are left to them")
            continue
        best = study.best_trial
        print(f"  best trial {best.number}: validation accuracy {best.value:.2%} {best.params}")
        for m in tune.rerun_best(study, cfg, ds, method, device):
            if m.get("status") == "ok":
                print(f"  tuned re-run: linear {m['linear']['test_acc']:.2%} (test)")


# --- the report's table -------------------------------------------------------------------


def _study_of(run: dict) -> str | None:
    for p in run["config"].get("purposes", []):
        kind, _, name = p.partition(":")
        if kind in ("tuned", "trial") and name.startswith(PREFIX):
            return name
    return None


def table(runs: list[dict], summary: pd.DataFrame, df: pd.DataFrame) -> tuple[str, list[str]] | None:
    """(markdown table, rank changes) of the dataset's equal-budget comparison, or None."""
    from bench.report import _pm

    every = store.load_runs()
    slug = runs[0]["config"]["dataset"]["slug"] if runs else None
    studies: dict[str, dict] = {}
    for r in every:
        name = _study_of(r)
        if name and r["config"]["dataset"]["slug"] == slug:
            s = studies.setdefault(
                name, {"trials": 0, "seconds": 0.0, "method": r["config"]["method"], "epochs": set()}
            )
            s["seconds"] += r["metrics"].get("wall_time_s") or 0
            if any(p.startswith("trial:") for p in r["config"].get("purposes", [])):
                s["trials"] += 1
                s["epochs"].add((r["config"].get("train") or {}).get("epochs"))
    if not studies:
        return None
    tuned_keys = {r["key"] for r in runs if (_study_of(r) or "") in studies and _is_tuned(r)}
    rows, ranks = [], {"default": {}, "tuned": {}}
    for _, s in sorted(studies.items()):
        tuned = df[df["key"].isin(tuned_keys) & (df["method"] == s["method"])]
        if tuned.empty:
            continue
        dim = tuned["latent_dim"].iloc[0]
        t = summary[(summary["learner"] == tuned["learner"].iloc[0]) & (summary["latent_dim"] == dim)].iloc[0]
        plain = summary[
            (summary["method"] == s["method"]) & ~summary["variant"] & (summary["latent_dim"] == dim)
        ]
        d = plain.iloc[0] if len(plain) else None
        settings = next(r for r in runs if r["key"] in set(tuned["key"]))["config"].get("overrides", {})
        rows.append(
            {
                "learner": s["method"] + (" (reference)" if registry.is_reference(s["method"]) else ""),
                "latent dim": int(dim),
                "linear % default": "-" if d is None else _pm(d.linear_mean, d.linear_std, 100),
                "linear % tuned": _pm(t.linear_mean, t.linear_std, 100),
                "Δ": "-" if d is None else f"{(t.linear_mean - d.linear_mean) * 100:+.2f}",
                "MLP % default / tuned": _pair(d, t, "mlp_mean", 100),
                "kNN % default / tuned": _pair(d, t, "knn_mean", 100),
                "PSNR default / tuned": _pair(d, t, "psnr_mean", 1),
                "tuned settings": ", ".join(f"{k}={labels._short(v)}" for k, v in settings.items())
                or "(defaults)",  # noqa: SLF001
                "trials finished (epochs)": f"{s['trials']} ({labels._short(sorted(s['epochs']))})",  # noqa: SLF001
                "re-run epochs": labels._short(  # noqa: SLF001
                    sorted(
                        {
                            (r["config"].get("train") or {}).get("epochs")
                            for r in runs
                            if r["key"] in set(tuned["key"])
                        }
                    )
                ),
                "compute h": f"{s['seconds'] / 3600:.2f}",
            }
        )
        if not registry.is_reference(s["method"]) and d is not None:
            ranks["default"][s["method"]] = d.linear_mean
            ranks["tuned"][s["method"]] = t.linear_mean
    if not rows:
        return None
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), rank_changes(ranks)


def _pair(default, tuned, column: str, scale: float) -> str:
    from bench.report import _pm

    before = "-" if default is None else _pm(getattr(default, column), None, scale)
    return f"{before} / {_pm(getattr(tuned, column), None, scale)}"


def _is_tuned(run: dict) -> bool:
    return any(p.startswith(f"tuned:{PREFIX}") for p in run["config"].get("purposes", []))


def rank_changes(ranks: dict) -> list[str]:
    """Learners whose place by linear accuracy differs between the default and tuned tables."""
    order = {k: sorted(v, key=lambda m: -v[m]) for k, v in ranks.items()}
    lines = []
    for m in order["tuned"]:
        a, b = order["default"].index(m) + 1, order["tuned"].index(m) + 1
        if a != b:
            lines.append(f"{m}: {a} -> {b}")
    return lines
