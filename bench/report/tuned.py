"""The page's section 'Tuned at equal budget': each learner's `bench compare` study (the same
number of trials, objective and pruner for every learner) against its defaults, and which of the
two a learner is reported with (`choose`: validation decides, the test split never does)."""

from __future__ import annotations

import pandas as pd

from bench import evaluators, registry
from bench.report import labels
from bench.report.tables import HEADLINE, pm

STUDY_PREFIX = "compare-"


def choose(default: list[float], tuned: list[float]) -> str:
    """Which configuration a learner is reported with: its best trial only if that beats its
    defaults on mean validation accuracy at the full budget ("defaults" when there are none)."""
    if not tuned:
        return "defaults"
    # accuracies are stored as float32: equal counts of correct images can differ past the 7th digit
    return "best trial" if not default or mean(tuned) > mean(default) + 1e-6 else "defaults"


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _studies(every: list[dict], slug: str) -> dict[str, dict]:
    """The `bench compare` studies of dataset `slug`: trials, epochs and compute of each."""
    found: dict[str, dict] = {}
    for r in every:
        purposes = [labels.purpose(p) for p in r["config"].get("purposes", [])]
        name = next(
            (p.study for p in purposes if p.kind in ("tuned", "trial") and p.study.startswith(STUDY_PREFIX)),
            None,
        )
        if name and r["config"]["dataset"]["slug"] == slug:
            s = found.setdefault(
                name, {"trials": 0, "seconds": 0.0, "method": r["config"]["method"], "epochs": set()}
            )
            s["seconds"] += r["metrics"].get("wall_time_s") or 0
            if any(p.kind == "trial" for p in purposes):
                s["trials"] += 1
                s["epochs"].add((r["config"].get("train") or {}).get("epochs"))
    return found


def _with_purpose(df: pd.DataFrame, purpose: str) -> pd.DataFrame:
    return df[df["purposes"].map(lambda p: purpose in p.split(","))]


def table(every: list[dict], runs: list[dict], summary, df) -> tuple[str, list[str]] | None:
    """(markdown table, rank changes) of the dataset's equal-budget comparison, or None. `every`:
    the whole store (trials included); `runs`, `summary`, `df`: the page's."""
    studies = _studies(every, runs[0]["config"]["dataset"]["slug"] if runs else None)
    rows, ranks = [], {"default": {}, "tuned": {}}
    head = HEADLINE
    for study, s in sorted(studies.items()):
        tuned = _with_purpose(df, f"tuned:{study}")
        if tuned.empty:
            continue
        dim = tuned["latent_dim"].iloc[0]
        at_dim = summary[summary["latent_dim"] == dim]
        best = at_dim[at_dim["learner"] == tuned["learner"].iloc[0]].iloc[0]
        defaults = _with_purpose(df, f"default:{study}")
        plain = at_dim[at_dim["learner"].isin(set(defaults["learner"]))]
        d = plain.iloc[0] if len(plain) else None  # studies from before the defaults were marked: none
        default_val, tuned_val = list(defaults[f"{head}_val"].dropna()), list(tuned[f"{head}_val"].dropna())
        kept = choose(default_val, tuned_val)
        t = d if kept == "defaults" else best
        tuned_runs = [r for r in runs if r["key"] in set(tuned["key"])]
        settings = tuned_runs[0]["config"].get("overrides", {})
        reference = registry.is_reference(s["method"])
        row = {
            "learner": s["method"] + (" (reference)" if reference else ""),
            "latent dim": int(dim),
            f"{head} % default": "-" if d is None else pm(d[f"{head}_mean"], d[f"{head}_std"], 100),
            f"{head} % tuned": pm(t[f"{head}_mean"], t[f"{head}_std"], 100),
            "Δ": "-" if d is None else f"{(t[f'{head}_mean'] - d[f'{head}_mean']) * 100:+.2f}",
            "validation % default / best trial": "-"
            if d is None
            else f"{mean(default_val) * 100:.2f} / {mean(tuned_val) * 100:.2f}",
            "kept": kept,
        }
        for col in evaluators.columns("compare"):
            before = "-" if d is None else pm(d[f"{col.key}_mean"], None, col.scale)
            row[col.compare] = f"{before} / {pm(t[f'{col.key}_mean'], None, col.scale)}"
        epochs = sorted({(r["config"].get("train") or {}).get("epochs") for r in tuned_runs})
        row |= {
            "best trial's settings": ", ".join(f"{k}={labels.short(v)}" for k, v in settings.items())
            or "(defaults)",
            "trials finished (epochs)": f"{s['trials']} ({labels.short(sorted(s['epochs']))})",
            "re-run epochs": labels.short(epochs),
            "compute h": f"{s['seconds'] / 3600:.2f}",
        }
        rows.append(row)
        if not reference and d is not None:
            ranks["default"][s["method"]] = d[f"{head}_mean"]
            ranks["tuned"][s["method"]] = t[f"{head}_mean"]
    if not rows:
        return None
    return labels.markdown(pd.DataFrame(rows)), rank_changes(ranks)


def rank_changes(ranks: dict) -> list[str]:
    """Learners whose place by headline accuracy differs between the default and tuned tables."""
    order = {k: sorted(v, key=lambda m: -v[m]) for k, v in ranks.items()}
    lines = []
    for m in order["tuned"]:
        a, b = order["default"].index(m) + 1, order["tuned"].index(m) + 1
        if a != b:
            lines.append(f"{m}: {a} -> {b}")
    return lines


def section(every, runs, summary, df) -> list[str]:
    """'Tuned at equal budget': each learner's `bench compare` study against its defaults."""
    found = table(every, runs, summary, df)
    if not found:
        return []
    text, moves = found
    return [
        "## Tuned at equal budget",
        "",
        "Each learner tuned by its own Optuna study with the same number of trials, the same "
        "objective (validation linear accuracy), per-trial budget, sampler and pruner "
        "(`python -m bench compare`), whose first trial is the learner's defaults; its best "
        "configuration re-run over the seeds at the full budget. *Kept*: the configuration with "
        "the higher mean validation accuracy at the full budget, defaults or best trial (the "
        "test split chooses nothing); *tuned* columns are the kept configuration's. Trials "
        "finished: those that ran to the end (the median pruner stopped the others), with their "
        "epochs, which may be fewer than the re-runs'. "
        "Compute: the study's trials and re-runs, wall time. Baselines have nothing to tune: "
        "their rows in the main table are the floors.",
        "",
        text,
        "",
        "Rank changes by linear accuracy, default -> tuned: "
        + ("; ".join(moves) if moves else "none: every learner keeps its place")
        + ".",
        "",
    ]
