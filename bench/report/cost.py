"""The page's "What it costs" section: per learner, the FLOPs of its encoder and of a training
step per image, its parameters, training throughput, peak memory and encode latency
(bench/evaluators/cost.py, bench/run/env.py), and the figure of linear accuracy against total
training FLOPs with the Pareto frontier marked."""

from __future__ import annotations

import pandas as pd

from bench import store
from bench.report import labels, plots, sections, statplots
from bench.report.tables import pm


def frame(summary, df, runs: list[dict]) -> pd.DataFrame:
    """One row per (learner, latent size): the cost columns' means over its runs, and its total
    training FLOPs (training FLOPs per image x images seen: epochs x training images)."""
    seen = {
        r["key"]: (r["config"].get("train") or {}).get("epochs", 0)
        * r["metrics"].get("n", {}).get("train", 0)
        for r in runs
    }
    df = df.assign(
        total_flops=[
            f * seen.get(k, 0) if pd.notna(f) else None for f, k in zip(df["train_flops"], df["key"])
        ]
    )
    columns = ["encode_flops", "train_flops", "total_flops", "latency_ms", "images_per_s", "peak_mb"]
    values = df[["learner", "latent_dim"]].join(df[columns].apply(pd.to_numeric, errors="coerce"))
    means = values.groupby(["learner", "latent_dim"], sort=False).mean()
    out = summary[
        ["learner", "latent_dim", "method", "variant", "kind", "params", "linear_mean", "linear_std"]
    ]
    return out.join(means, on=["learner", "latent_dim"])


def section(slug: str, title: str, summary, df, runs: list[dict]) -> list[str]:
    if "encode_flops" not in df or df["encode_flops"].isna().all():
        return []
    costs = frame(summary, df, runs)
    rows = [
        {
            "learner": c.learner,
            "latent dim": int(c.latent_dim),
            "linear %": pm(c.linear_mean, c.linear_std, 100),
            "params": f"{int(c.params):,}",
            "encode MFLOPs/img": _num(c.encode_flops, 1e-6),
            "train MFLOPs/img": _num(c.train_flops, 1e-6),
            "train img/s": _num(c.images_per_s, 1, 0),
            "peak MB": _num(c.peak_mb, 1, 0),
            "encode µs/img": _num(c.latency_ms, 1e3),
        }
        for c in costs.itertuples()
    ]
    lines = [
        "## What it costs",
        "",
        "Per learner: parameters; FLOPs per image of the encoder and of one training step (forward and "
        "backward, every view and target included), counted by `torch.utils.flop_counter` (matmuls, "
        "convolutions, attention); training images per second; peak memory of the run (resident memory "
        "on CPU, allocated on CUDA; runs stored before it was reset per run show the process's peak so "
        "far); encode latency per image on a batch of 256. Means over seeds. FLOPs of runs stored before "
        "this evaluator are counted from their specs (`python -m bench cost`); their latency shows `-`.",
        "",
        labels.markdown(pd.DataFrame(rows)),
        "",
    ]
    dim = sections.main_dim(summary)
    plain = costs[
        ~costs["variant"].astype(bool)
        & pd.Series(
            [not plots.takes_latent_dim(m) or d == dim for m, d in zip(costs["method"], costs["latent_dim"])],
            index=costs.index,
        )
    ]
    points = [
        (c.learner, 0.0 if c.kind == "baseline" else float(c.total_flops), float(c.linear_mean))
        for c in plain.itertuples()
        if pd.notna(c.linear_mean) and (c.kind == "baseline" or pd.notna(c.total_flops))
    ]
    if len(points) > 1:
        references = {c.learner for c in plain.itertuples() if c.kind == "reference"}
        candidates = [p for p in points if p[0] not in references]  # trained with labels: drawn, never on it
        marks = [p[0] not in references and on for p, on in zip(points, frontier(candidates, points))]
        name = f"{slug}-cost-frontier.png"
        statplots.frontier_png(
            store.results_dir() / name,
            [(*p, on) for p, on in zip(points, marks)],
            plots.palette(summary["learner"]),
            f"{title}: accuracy against training compute (d={dim})",
        )
        front = [p[0] for p, on in zip(points, marks) if on]
        lines += [
            f"![accuracy vs training FLOPs]({name})",
            "",
            f"On the frontier at d={dim} (no cheaper learner is as accurate; the supervised reference is "
            f"drawn, not counted): {', '.join(front)}. Training FLOPs: per image x epochs x training "
            "images; untrained baselines cost none.",
            "",
        ]
    return lines


def frontier(candidates: list[tuple], points: list[tuple]) -> list[bool]:
    """Whether each (name, cost, accuracy) of `points` is Pareto-optimal among `candidates`: none
    at most as costly is more accurate, and none cheaper is as accurate."""
    return [
        not any((c2 <= c and a2 > a) or (c2 < c and a2 >= a) for _, c2, a2 in candidates)
        for _, c, a in points
    ]


def _num(value, scale: float, digits: int | None = None) -> str:
    if pd.isna(value):
        return "-"
    v = value * scale
    if digits is not None:
        return f"{v:,.{digits}f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
