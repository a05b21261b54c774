"""The page sections that rest on a run's kept artifacts rather than its numbers alone: which
differences are real (test predictions, bench/report/significance.py), latent maps (bench/evaluators/
latent_map.py) and label-free measures against the labels (bench/report/labelfree.py). Each returns its
markdown lines and draws its figure; bench/report/__init__.py places them on the dataset's page."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import registry, store
from bench.report import labelfree, labels, significance, statplots, tables

PAIRWISE_MAX = 16  # learners in the pairwise figure (plain learners and baselines at the main size)


def main_dim(summary) -> int:
    """The page's main latent size: the one most plain learners were run at (the larger on a tie;
    every learner where all rows name a setting, e.g. a grid run with `--set`)."""
    plain = summary[~summary["variant"]] if (~summary["variant"]).any() else summary
    counts = plain.groupby("latent_dim")["learner"].nunique()
    return int(max(counts.index, key=lambda d: (counts[d], d)))


def correct(df) -> dict[str, np.ndarray | None]:
    """{run key: whether its linear probe got each test image right}, None where the run kept no
    predictions (stored before they were kept) or they cannot be read."""
    return {key: _kept(key)[0] for key in df.loc[df["status"] == "ok", "key"]}


def _kept(key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(whether run `key`'s linear probe got each test image right, the labels it was scored on)
    from its kept predictions; (None, None) where it kept none or they cannot be read."""
    p = store.load_artifact(store.run_dir(key), "predictions")
    ok = p is not None and "linear" in p and "y" in p and p["linear"].shape == p["y"].shape
    return ((p["linear"] == p["y"]), p["y"]) if ok else (None, None)


def significance_marks(summary, df, right: dict) -> tuple[pd.DataFrame, dict]:
    """The summary with each row's mark (`mark`: ▲ best, = tied) and the intervals behind it;
    `right`: `correct(df)`."""
    intervals = significance.versus_best(summary, df, right)
    marks = significance.marks(summary, intervals)
    keys = zip(summary["learner"], summary["latent_dim"].astype(int))
    return summary.assign(mark=[marks.get(k, "") for k in keys]), intervals


def real_differences(slug, title, summary, df, intervals, right: dict) -> list[str]:
    """'Which differences are real': every row against the best at its size, and the figure."""
    text = significance.table(summary, intervals)
    if not text:
        return []
    lines = [
        "## Which differences are real",
        "",
        "Each row's test linear accuracy minus the best learner's at the same latent size (points), "
        "with a 95% interval that counts both the training seed and the finite test set: the runs "
        "are paired by seed and by test image (their kept test predictions) and the interval is "
        "that of a crossed seeds x images design (bench/report/significance.py says how and cites why). "
        "*tied*: the interval contains 0, so this data does not separate the row from the best; "
        "it is marked = in the main table, and the best ▲. "
        "Where runs kept no test predictions the interval rests on the seeds' spread alone (the test "
        "set's noise is not counted); with a single seed, on the test images alone; a single seed "
        "without predictions is not tested (*accounts for* says which). Intervals are not corrected "
        "for the many comparisons, nor for the best being chosen on the same test split: a tie is "
        "the safer reading, a narrow separation the bolder.",
        "",
        text,
        "",
    ]
    dim = main_dim(summary)
    plain = summary[~summary["variant"]] if (~summary["variant"]).any() else summary
    plain = plain[(plain["latent_dim"] == dim) & plain["linear_mean"].notna()]
    names = list(plain.sort_values("linear_mean", ascending=False)["learner"])[:PAIRWISE_MAX]
    if len(names) > 1:
        cells = significance.pairwise(df, names, dim, right)
        name = f"{slug}-pairwise.png"
        statplots.pairwise_png(store.results_dir() / name, names, cells, f"{title}, d={dim}")
        lines += [f"![pairwise differences at d={dim}]({name})", ""]
    return lines


def latent_maps(slug, title, summary, df, classes) -> list[str]:
    """'What the latents look like': the t-SNE map of every plain learner at the main latent size
    (its lowest seed that kept one), side by side."""
    dim = main_dim(summary)
    plain = summary[~summary["variant"]] if (~summary["variant"]).any() else summary
    at_dim = set(plain.loc[plain["latent_dim"] == dim, "method"])
    # a baseline whose size is fixed (raw pixels) is drawn at its own size
    plain = plain[
        (plain["latent_dim"] == dim) | ((plain["kind"] == "baseline") & ~plain["method"].isin(at_dim))
    ]
    panels, missing = [], []
    for s in plain.itertuples():
        own = "" if s.latent_dim == dim else f" d={int(s.latent_dim)}"
        runs = df[(df["learner"] == s.learner) & (df["latent_dim"] == s.latent_dim) & (df["status"] == "ok")]
        found = None
        for r in runs.sort_values("seed").itertuples():
            if (m := store.load_artifact(store.run_dir(r.key), "latent_map")) is not None:
                found = (r, m)
                break
        if found is None:
            missing.append(s.learner + own)
            panels.append({"name": s.learner + own, "acc": s.linear_mean, "xy": None, "y": None})
        else:
            r, m = found
            name = f"{s.learner}{own} (seed {r.seed})"
            panels.append({"name": name, "acc": r.linear, "xy": m["xy"], "y": m["y"]})
    if len(panels) == len(missing):
        return [
            "## Latent maps",
            "",
            f"Every panel is missing ({', '.join(missing)}): no run at d={dim} has "
            f"kept a latent map yet, and their latents are not cached here. `python -m bench verify "
            f"--dataset {slug} --outdated --adopt` re-measures the runs (retraining them) and keeps "
            "one.",
            "",
        ]
    name = f"{slug}-latent-maps.png"
    points = max(len(p["y"]) for p in panels if p["y"] is not None)
    statplots.latent_maps_png(
        store.results_dir() / name,
        panels,
        classes,
        f"{title}: t-SNE of the same {points} test latents, d={dim}",
    )
    lines = [
        "## Latent maps",
        "",
        f"A 2-D t-SNE map (scikit-learn, perplexity 30, PCA initialisation, seed 0) of the same "
        f"class-balanced sample of {points} test images' standardised latents, for every learner at "
        f"d={dim} (baselines included, raw pixels at their own size; the lowest seed that kept a map; "
        "panel title: that run's "
        "linear accuracy). Axes: centred, rotated onto the map's principal axes and scaled to unit "
        "radius, class 0 towards the lower left; t-SNE keeps neighbourhoods, not distances between "
        "clusters.",
        "",
        f"![latent maps]({name})",
        "",
    ]
    if missing:
        lines += [
            f"Missing panels ({len(missing)}): {', '.join(missing)}: their runs predate the latent "
            "map and their latents are not cached here (re-measuring them means retraining: "
            f"`python -m bench verify --dataset {slug} --outdated --adopt`).",
            "",
        ]
    return lines


def family(method: str) -> str:
    kind = tables.kind(method)
    if kind != "learner":
        return {"baseline": "baselines", "reference": "reference"}[kind]
    return registry.trait(method, "family", "") or "other"  # "other": a learner no longer registered


def label_free(slug, title, summary, df) -> list[str]:
    """'Label-free measures against the labels': Spearman rho of each with linear accuracy."""
    df = df.assign(family=df["method"].map(family))
    dim = main_dim(summary)
    corr = labelfree.correlations(df, dim)
    if not corr["runs"].any():
        return []
    name = f"{slug}-label-free.png"
    drawn = ["family", "linear", *(k for k in corr["key"] if k in df)]  # what it draws, no more
    statplots.label_free_png(
        store.results_dir() / name,
        df.loc[df["status"] == "ok", drawn],
        corr,
        f"{title}: label-free measures against the linear probe",
    )
    return [
        "## Label-free measures against the labels",
        "",
        "Does a measure that sees no label predict linear-probe accuracy? Spearman rank correlation "
        "over the page's runs of trained representation learners (autoencoders and view-based "
        "learners, every seed a point; baselines and the supervised reference are drawn, not "
        "counted). RankMe: effective rank of the raw training latents; alpha-ReQ: the decay "
        "exponent of their covariance eigenspectrum (lower = flatter); NESum: covariance "
        "eigenvalues over the largest, summed; stable rank: squared singular values over the "
        "largest, summed (bench/evaluators/rankme.py, spectrum.py). Runs stored before a measure "
        "existed are not counted for it. p treats every run as independent; a learner's seeds are not, so "
        "read it as optimistic.",
        "",
        labelfree.table(corr, dim),
        "",
        f"![label-free measures]({name})",
        "",
    ]


def transfer_gaps(summary, df, home, a_side: str, b_side: str) -> list[str]:
    """'Which transfer gaps are real': each row's transfer accuracy on B minus the same learner's
    trained on B, with the interval of bench/report/significance.py, paired by seed and by B's test image
    (both runs probe the same test images; where their kept labels differ, by seed alone) on a
    transfer page (bench/report/transfer.py); `df`, `home`: the transfer and in-domain runs, each row with
    its `like` (the settings the two must share)."""
    if home is None:
        return []
    df = df[(df["status"] == "ok") & df["linear"].notna()]
    rows = []
    for learner, dim in zip(summary["learner"], summary["latent_dim"]):
        t = df[(df["learner"] == learner) & (df["latent_dim"] == dim)]
        if t.empty:
            continue
        h = home[(home["method"] == t["method"].iloc[0]) & (home["latent_dim"] == dim)]
        h = h[(h["like"] == t["like"].iloc[0]) & h["linear"].notna()]
        if h.empty:
            continue
        there, here = _outcomes(t), _outcomes(h)
        for s in set(there) & set(here):
            if not _same(there[s]["y"], here[s]["y"]):
                there[s]["correct"] = here[s]["correct"] = None
        iv = significance.between(there, here)
        verdict = significance.verdict(iv)
        rows.append(
            {
                "learner": learner,
                "latent dim": int(dim),
                "transfer - in-domain (points)": f"{iv.diff * 100:+.2f}",
                "95% interval": "-" if np.isnan(iv.lo) else f"[{iv.lo * 100:+.2f}, {iv.hi * 100:+.2f}]",
                "verdict": {"tied": "kept", "below": "lost", "above": "gained"}.get(verdict, verdict),
                "seeds": str(iv.seeds),
                "accounts for": iv.basis,
            }
        )
    if not rows:
        return []
    return [
        "",
        "## Which transfer gaps are real",
        "",
        f"Each row's test linear accuracy on {b_side} after training on {a_side}, minus the same "
        f"learner's (same latent size and settings) trained on {b_side} itself, in points, with a 95% "
        "interval: the two are paired by seed and by test image, both probing the same test images, "
        "and the interval is that of the crossed seeds x images design of the dataset pages' *Which "
        "differences are real* (bench/report/significance.py). *kept*: the interval contains 0, so this data "
        "shows no loss out of domain; *lost* / *gained*: it excludes 0. With a single shared seed the "
        "interval counts the test images alone and carries no verdict.",
        "",
        labels.markdown(pd.DataFrame(rows)),
    ]


def _outcomes(rows) -> dict[int, dict]:
    """{seed: {"acc", "correct", "y"}} of a row's runs: `correct` (its linear probe right on each
    test image) and `y` (the labels it was scored on) from its kept predictions, else None."""
    out = {}
    for r in rows.itertuples():
        right, y = _kept(r.key)
        out[int(r.seed)] = {"acc": float(r.linear), "correct": right, "y": y}
    return out


def _same(y1, y2) -> bool:
    return y1 is not None and y2 is not None and y1.shape == y2.shape and bool((y1 == y2).all())
