"""Tables from stored runs: one row per run (`frame`), mean ± std over seeds (`summarize`), and
every table a page shows. The measures come from the evaluator registry (bench/evaluators/):
a new evaluator's columns appear here with no edit. Nothing here writes a file or reads the
store: bench/report/__init__.py lays the tables out on pages, bench/report/plots.py draws."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench import evaluators, registry, store
from bench.report import labels
from bench.store import compat

KIND_ORDER = {"baseline": 0, "learner": 1, "reference": 2}
HEADLINE = "linear"  # the column a page ranks by and a study optimises (validation: linear_val)
LOSSLESS_DB = 99.0  # PSNR is capped at 100 dB (exact): at or above this, a reconstruction is lossless


def registered(runs: list[dict]) -> list[dict]:
    """`runs` without those of learners no longer registered (their file deleted or broken),
    with one warning line naming them; an outside learner's runs stay (their config records it)."""
    gone = sorted({r["config"]["method"] for r in runs if not registry.recall(r["config"])})
    if gone:
        count = sum(r["config"]["method"] in gone for r in runs)
        store.warn(
            f"{count} stored run(s) of {', '.join(gone)}, no longer registered, are left out; restore the "
            "learner's file in methods/ or delete those folders under runs/"
        )
    return [r for r in runs if r["config"]["method"] not in gone]


def metrics() -> list[str]:
    """The per-run numbers a summary averages over seeds: every main-table column, then time."""
    return [c.key for c in evaluators.columns("header")] + ["train_time"]


def frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run, named by its learner and recorded overrides (see labels.name)."""
    rows = []
    for r, label in zip(runs, labels.labels(runs)):
        m, c = r["metrics"], r["config"]
        ok = m.get("status") == "ok"
        env = m.get("env") or {}
        cells = {}
        for e in evaluators.all():
            cells.update(e.cells(m) if ok else {col.key: None for col in e.columns})
        rows.append(
            {
                "key": r["key"],
                "dataset": c["dataset"]["slug"],
                "learner": label,
                "method": c["method"],
                "variant": labels.is_variant(c),
                "kind": kind(c["method"]),
                "seed": c["seed"],
                "latent_dim": m.get("latent_dim") or c["method_config"].get("latent_dim"),
                "params": m.get("params"),
                "status": m.get("status", "?"),
                **cells,
                "train_time": (m.get("train") or {}).get("time_s") if ok else None,
                "wall_time": m.get("wall_time_s"),
                "git_sha": env.get("git_sha"),
                "uncommitted": not env.get("git_sha") or env["git_sha"].endswith("-dirty"),
                "stale": bool(stale := compat.stale_by(m)),
                "stale_by": ",".join(stale),
                "device": env.get("device"),
                "threads": env.get("threads"),
                "torch": env.get("torch"),
                "overrides": json.dumps(c.get("overrides", {}), sort_keys=True),
                "purposes": ",".join(c.get("purposes", [])),
                "protocol": json.dumps(m["protocol"]) if isinstance(m.get("protocol"), list) else None,
            }
        )
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds for each (learner, latent_dim)."""
    if df.empty:
        return pd.DataFrame()
    g = df.groupby(["learner", "latent_dim"], sort=False)
    out = g.agg(
        method=("method", "first"),
        variant=("variant", "first"),
        kind=("kind", "first"),
        params=("params", "first"),
        n=("seed", "nunique"),
        uncommitted=("uncommitted", "any"),
        stale=("stale", "any"),
    )
    for col in metrics():
        values = pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, df.index)
        grouped = values.groupby([df["learner"], df["latent_dim"]], sort=False)
        out[f"{col}_mean"] = grouped.mean()
        out[f"{col}_std"] = grouped.std()
    for col in [c for c in df.columns if "/draws" in c]:  # label efficiency: seeds x draws pooled
        pooled = g[col].agg(lambda cells: [v for cell in cells if isinstance(cell, list) for v in cell])
        out[f"{col[: -len('/draws')]}_mean"] = pooled.map(lambda v: np.mean(v) if v else np.nan)
        out[f"{col[: -len('/draws')]}_std"] = pooled.map(
            lambda v: np.std(v, ddof=1) if len(v) > 1 else np.nan
        )
    out = out.reset_index()
    out["below_pca"] = _below_pca(out)
    out["order"] = out["kind"].map(KIND_ORDER)
    return out.sort_values(["order", "learner", "latent_dim"]).drop(columns="order")


def _below_pca(summary: pd.DataFrame) -> pd.Series:
    """A reconstructing learner whose test PSNR is below PCA's at the same latent size: PCA is the
    best linear code of that size, so such a learner is undertrained for reconstruction. Where
    PCA is lossless (as many components as pixels: PSNR at its 100 dB cap) every learner is below
    it and the flag would say nothing: there it is not set."""
    pca = summary[(summary["method"] == "pca") & ~summary["variant"]].set_index("latent_dim")["psnr_mean"]
    floor = summary["latent_dim"].map(pca[pca < LOSSLESS_DB])
    return (summary["method"] != "pca") & summary["psnr_mean"].notna() & (summary["psnr_mean"] < floor)


def kind(method: str) -> str:
    """baseline (untrained floor), learner, or reference (trained with labels: a ceiling); a
    learner no longer registered (an old run) is shown as a learner."""
    if not registry.trait(method, "trainable", True):
        return "baseline"
    return "reference" if registry.trait(method, "needs_labels", False) else "learner"


def pm(mean, std, scale=1.0, digits=2) -> str:
    """`97.50 ± 0.12`: a mean (and its spread, when there is one) scaled and rounded; `-` for none."""
    if pd.isna(mean):
        return "-"
    text = f"{mean * scale:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {std * scale:.{digits}f}"


def _cell(s, col: evaluators.Column) -> str:
    mean = getattr(s, f"{col.key}_mean")  # the headline's cell carries its significance mark
    text = pm(mean, getattr(s, f"{col.key}_std") if col.spread else None, col.scale, col.digits)
    if col.key == HEADLINE:
        return text + getattr(s, "mark", "")
    return text + (" (< PCA)" if col.key == "psnr" and s.below_pca else "")


def main_table(summary: pd.DataFrame) -> str:
    return labels.markdown(pd.DataFrame(main_rows(summary)))


def main_rows(summary: pd.DataFrame) -> list[dict]:
    """The main table's rows, {header: cell text}, as a page shows them (results explorer too)."""
    return [
        {
            "learner": s.learner + (" †" if s.uncommitted else "") + (" ‡" if s.stale else ""),
            "latent dim": int(s.latent_dim),
            "params": f"{int(s.params):,}",
            **{col.header: _cell(s, col) for col in evaluators.columns("header")},
            "train s": pm(s.train_time_mean, None, 1, 0) if s.train_time_mean else "-",
            "n": s.n,
        }
        for s in summary.itertuples()
    ]


def latent_table(summary: pd.DataFrame) -> str:
    """Headline accuracy (%) per learner (rows) and latent size (columns)."""
    mean, std = summary[f"{HEADLINE}_mean"], summary[f"{HEADLINE}_std"]
    cells = summary.assign(cell=[pm(m, s, 100) for m, s in zip(mean, std)])
    table = cells.pivot_table(
        index="learner", columns="latent_dim", values="cell", aggfunc="first", sort=False
    ).fillna("")
    table = table[sorted(table.columns)]
    table.columns = [f"d={int(c)}" for c in table.columns]
    return labels.markdown(table.reset_index())


def label_table(summary: pd.DataFrame, df: pd.DataFrame) -> str | None:
    """Test accuracy (%) of the refitted probes with 1%, 10%, ... and 100% of the training labels."""
    from bench.evaluators.label_efficiency import fractions

    probes, fracs = getattr(evaluators.get("label_efficiency"), "probes", ()), fractions(summary)
    rows = summary[summary[[f"linear@{f}_mean" for f in fracs]].notna().any(axis=1)] if fracs else []
    if not len(rows):
        return None
    counts = {f: int(df[f"labels@{f}"].dropna().iloc[0]) for f in fracs}
    out = []
    for _, s in rows.iterrows():
        row = {"learner": s["learner"], "latent dim": int(s["latent_dim"])}
        for probe, name in probes:
            for f in fracs:
                cell = pm(s[f"{probe}@{f}_mean"], s[f"{probe}@{f}_std"], 100)
                row[f"{name} {float(f):.0%} ({counts[f]:,})"] = cell
            row[f"{name} 100%"] = pm(s[f"{probe}_mean"], s[f"{probe}_std"], 100)
        out.append(row)
    return labels.markdown(pd.DataFrame(out))


def ablation_table(summary: pd.DataFrame) -> str | None:
    """Each variant (a learner label that names a setting) beside its plain learner at the same size.

    A variant with no plain run at its size (say SimCLR trained on its own epoch budget) compares
    with nothing and is left to the main table.
    """
    plain_rows = summary[~summary["variant"]].itertuples()
    base = {(p.method, p.latent_dim): p for p in plain_rows}
    variants = summary[summary["variant"]]
    cols = evaluators.columns("ablation")
    rows = []
    for v in variants.sort_values(["method", "latent_dim", "learner"]).itertuples():
        plain = base.get((v.method, v.latent_dim))
        if plain is None:
            continue
        delta = (getattr(v, f"{HEADLINE}_mean") - getattr(plain, f"{HEADLINE}_mean")) * 100
        for s, shown in ((plain, "-"), (v, f"{delta:+.2f}")):
            row = {"learner": s.learner, "latent dim": int(v.latent_dim)}
            for col in cols:
                row[col.header] = pm(
                    getattr(s, f"{col.key}_mean"), getattr(s, f"{col.key}_std"), col.scale, col.digits
                )
                if col.key == HEADLINE:
                    row[f"Δ {HEADLINE}"] = shown
            row["n"] = s.n
            if row not in rows:
                rows.append(row)
    return labels.markdown(pd.DataFrame(rows)) if rows else None


def fewshot_frame(summary: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (learner, latent size, probe, k) measured by k-shot episodes: the mean over
    seeds x episodes and the half-width of its 95% t-interval (bench/evaluators/fewshot.py)."""
    from bench.evaluators.fewshot import FewShot, interval, shots

    rows = []
    for s in summary.itertuples():
        mine = df[(df["learner"] == s.learner) & (df["latent_dim"] == s.latent_dim)]
        for probe, name in FewShot.probes:
            for k in shots(df.columns):
                column = f"{probe}-{k}shot/draws"
                values = [v for cell in mine.get(column, []) if isinstance(cell, list) for v in cell]
                if values:
                    mean, half, n = interval(values)
                    rows.append(
                        {
                            "learner": s.learner,
                            "latent_dim": s.latent_dim,
                            "method": s.method,
                            "variant": s.variant,
                            "probe": name,
                            "k": k,
                            "mean": mean,
                            "half": half,
                            "n": n,
                        }
                    )
    return pd.DataFrame(rows)


def fewshot_table(shots: pd.DataFrame) -> str | None:
    """Test accuracy (%) per learner (rows) and probe x k (columns), mean ± 95% interval."""
    if shots.empty:
        return None
    cells = shots.assign(
        column=[f"{p} {k}-shot" for p, k in zip(shots["probe"], shots["k"])],
        cell=[pm(m, h, 100) for m, h in zip(shots["mean"], shots["half"])],
    )
    table = cells.pivot_table(
        index=["learner", "latent_dim"], columns="column", values="cell", aggfunc="first", sort=False
    )
    order = [f"{p} {k}-shot" for p in dict.fromkeys(shots["probe"]) for k in sorted(set(shots["k"]))]
    table = table[[c for c in order if c in table.columns]].fillna("-")
    episodes = shots.groupby(["learner", "latent_dim"], sort=False)["n"].max()  # seeds x episodes pooled
    table["episodes"] = episodes.reindex(table.index).astype(int)
    return labels.markdown(table.reset_index().rename(columns={"latent_dim": "latent dim"}))
