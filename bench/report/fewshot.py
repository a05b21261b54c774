"""The page's "Few-shot episodes" section: the k-shot table (bench/evaluators/fewshot.py) and the
figure of linear accuracy against k, one line per learner at the page's main latent size."""

from __future__ import annotations

import numpy as np

from bench import store
from bench.report import plots, sections, statplots, tables


def section(slug: str, title: str, summary, df) -> list[str]:
    shots = tables.fewshot_frame(summary, df)
    table = tables.fewshot_table(shots)
    if table is None:
        return []
    dim = sections.main_dim(summary)
    linear = shots[(shots["probe"] == "linear") & ~shots["variant"]]
    mine = [not plots.takes_latent_dim(m) or d == dim for m, d in zip(linear["method"], linear["latent_dim"])]
    linear = linear.loc[np.asarray(mine, bool)]
    lines = {
        learner: [(int(r.k), float(r.mean), float(r.half)) for r in rows.itertuples()]
        for learner, rows in linear.groupby("learner", sort=False)
    }
    name = f"{slug}-fewshot.png"
    if lines:
        statplots.fewshot_png(
            store.results_dir() / name,
            lines,
            plots.palette(summary["learner"]),
            f"{title}: k-shot episodes, linear probe (d={dim})",
        )
    ks = sorted(set(shots["k"]))
    classes = int(df[f"shots-{ks[0]}"].dropna().iloc[0]) // ks[0]
    return [
        "## Few-shot episodes",
        "",
        f"Test accuracy (%) of the linear probe and kNN fitted on k labelled training images of each "
        f"of the {classes} classes, over seeded episodes (episode e draws the same images for every "
        "learner and seed; its 1-shot set is inside its 5-shot set); mean over seeds x episodes (their "
        "number: *episodes*) ± the half-width of its 95% t-interval. The validation slice (all its "
        "labels) picks the weight decay and k per episode; each episode's test score is read once. "
        "Runs stored before this evaluator existed show `-`.",
        "",
        table,
        "",
        *([f"![accuracy vs k]({name})", ""] if lines else []),
    ]
