"""Tables and plots from the run store: results/<dataset>.md, results/<dataset>-*.png.

Nothing here trains or evaluates: every number is read from results/runs/*/metrics.json, so the
report can be rebuilt at any time with `python -m bench report`.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd

from bench import BenchError, evaluate, labels, plots, registry, store, studies

METRICS = ("linear", "mlp", "knn", "rankme", "mse", "psnr", "ssim", "train_time")

PROTOCOL = (
    "Learners train on training images only (no labels), then are frozen. Latents are extracted "
    "once in eval mode and standardised with training statistics. A fixed, seeded validation slice "
    "of the training split picks every evaluator hyperparameter (probe weight decay, MLP epochs, "
    "kNN k); the test split is scored once per run. Linear = multinomial logistic regression "
    "(L-BFGS), MLP = one hidden layer, kNN = cosine majority vote. Reconstruction metrics are on "
    "the test split, pixels in [0, 1] (PSNR capped at 100 dB: lossless). The encoder's weights "
    "are checked unchanged by evaluation."
)


def write_all(redraw_runs: bool = False) -> list:
    """Rebuild the report of every dataset in the store and of every local study; with
    `redraw_runs`, also every finished run's confusion matrix and reconstruction grid."""
    import optuna

    runs = store.load_runs()
    if redraw_runs:
        for r in runs:
            if r["metrics"].get("status") == "ok":
                title = labels.title(r["config"], r["metrics"].get("latent_dim"))
                m = r["metrics"]
                plots.run_figures(store.run_dir(r["key"]), r["config"], m["confusion"], title, m.get("train"))
    slugs = sorted({r["config"]["dataset"]["slug"] for r in runs})
    paths = [p for p in (write(slug, runs) for slug in slugs) if p]
    for db in sorted((store.results_dir() / "studies").glob("*.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            paths.append(studies.write(optuna.load_study(study_name=summary.study_name, storage=url)))
    return paths


def write(slug: str, runs: list[dict]):
    """Write results/<slug>.md and its plots from the store's `runs` of that dataset.

    Study trials, and any run measured only by the linear probe (`eval.steer_only`), are left out
    (a study has its own page); tuned re-runs are labelled.
    """
    runs = [
        r
        for r in runs
        if r["config"]["dataset"]["slug"] == slug
        and not labels.only_trial(r)
        and not r["metrics"].get("steer_only")
    ]
    out = store.results_dir()
    if not runs:
        return None
    df = frame(runs)
    ok = df[df["status"] == "ok"]
    summary = summarize(ok)
    title = runs[0]["config"]["dataset"].get("title", slug)
    figures = plots.dataset_figures(slug, title, runs, df, summary)
    path = out / f"{slug}.md"
    store.write_text(path, render(title, runs, df, summary, figures))
    return path


def frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run, named by its learner and recorded overrides (see labels.name)."""
    rows = []
    for r, label in zip(runs, labels.labels(runs)):
        m, c = r["metrics"], r["config"]
        ok = m.get("status") == "ok"
        recon = (m.get("recon") or {}) if ok else {}
        env = m.get("env") or {}
        rows.append(
            {
                "key": r["key"],
                "dataset": c["dataset"]["slug"],
                "learner": label,
                "method": c["method"],
                "variant": labels.is_variant(c),
                "kind": _kind(c["method"]),
                "seed": c["seed"],
                "latent_dim": m.get("latent_dim") or c["method_config"].get("latent_dim"),
                "params": m.get("params"),
                "status": m.get("status", "?"),
                "linear": m["linear"]["test_acc"] if ok else None,
                "linear_val": m["linear"]["val_acc"] if ok else None,
                "mlp": (m.get("mlp") or {}).get("test_acc") if ok else None,  # a trial: linear only
                "knn": (m.get("knn") or {}).get("test_acc") if ok else None,
                "rankme": m.get("rankme") if ok else None,
                **(_label_columns(m["label_efficiency"]) if ok and m.get("label_efficiency") else {}),
                "mse": recon.get("mse"),
                "psnr": recon.get("psnr"),
                "ssim": recon.get("ssim"),
                "train_time": (m.get("train") or {}).get("time_s") if ok else None,
                "wall_time": m.get("wall_time_s"),
                "git_sha": env.get("git_sha"),
                "uncommitted": not env.get("git_sha") or env["git_sha"].endswith("-dirty"),
                "stale": evaluate.stale(m),
                "device": env.get("device"),
                "threads": env.get("threads"),
                "torch": env.get("torch"),
                "overrides": json.dumps(c.get("overrides", {}), sort_keys=True),
                "purposes": ",".join(c.get("purposes", [])),
            }
        )
    return pd.DataFrame(rows)


def _label_columns(efficiency: dict) -> dict:
    """`linear@0.01`: the mean over a run's labelled subsets; `linear@0.01/draws`: every draw, kept
    so that a table's spread pools seeds and draws."""
    out = {}
    for fraction, e in efficiency.items():
        for probe in ("linear", "knn"):
            out[f"{probe}@{fraction}"] = sum(e[probe]) / len(e[probe])
            out[f"{probe}@{fraction}/draws"] = list(e[probe])
        out[f"labels@{fraction}"] = e["labels"]
    return out


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
    for col in METRICS:
        out[f"{col}_mean"] = g[col].mean()
        out[f"{col}_std"] = g[col].std()
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
    best linear code of that size, so such a learner is undertrained for reconstruction."""
    pca = summary[(summary["method"] == "pca") & ~summary["variant"]].set_index("latent_dim")["psnr_mean"]
    floor = summary["latent_dim"].map(pca)
    return (summary["method"] != "pca") & summary["psnr_mean"].notna() & (summary["psnr_mean"] < floor)


KIND_ORDER = {"baseline": 0, "learner": 1, "reference": 2}


def _kind(method: str) -> str:
    """baseline (untrained floor), learner, or reference (trained with labels: a ceiling)."""
    try:
        cls = registry.get(method)
    except BenchError:  # a learner no longer registered: an old run, shown as a learner
        return "learner"
    return "baseline" if not cls.trainable else "reference" if cls.needs_labels else "learner"


def _pm(mean, std, scale=1.0, digits=2) -> str:
    if pd.isna(mean):
        return "-"
    text = f"{mean * scale:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {std * scale:.{digits}f}"


def main_table(summary: pd.DataFrame) -> str:
    rows = [
        {
            "learner": s.learner + (" †" if s.uncommitted else "") + (" ‡" if s.stale else ""),
            "latent dim": int(s.latent_dim),
            "params": f"{int(s.params):,}",
            "linear %": _pm(s.linear_mean, s.linear_std, 100),
            "MLP %": _pm(s.mlp_mean, s.mlp_std, 100),
            "kNN %": _pm(s.knn_mean, s.knn_std, 100),
            "RankMe": _pm(s.rankme_mean, None, 1, 1),
            "MSE": _pm(s.mse_mean, s.mse_std, 1, 4),
            "PSNR dB": _pm(s.psnr_mean, s.psnr_std) + (" (< PCA)" if s.below_pca else ""),
            "SSIM": _pm(s.ssim_mean, s.ssim_std, 1, 3),
            "train s": _pm(s.train_time_mean, None, 1, 0) if s.train_time_mean else "-",
            "n": s.n,
        }
        for s in summary.itertuples()
    ]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def latent_table(summary: pd.DataFrame) -> str:
    """Linear-probe accuracy (%) per learner (rows) and latent size (columns)."""
    cells = summary.assign(cell=[_pm(m, s, 100) for m, s in zip(summary.linear_mean, summary.linear_std)])
    table = cells.pivot_table(
        index="learner", columns="latent_dim", values="cell", aggfunc="first", sort=False
    ).fillna("")
    table = table[sorted(table.columns)]
    table.columns = [f"d={int(c)}" for c in table.columns]
    return table.reset_index().to_markdown(index=False, disable_numparse=True)


def fractions(summary: pd.DataFrame) -> list[str]:
    """The label fractions measured in `summary`, smallest first ("0.01", "0.1")."""
    found = {c.split("@")[1].rsplit("_", 1)[0] for c in summary.columns if c.startswith("linear@")}
    return sorted(found, key=float)


def label_table(summary: pd.DataFrame, df: pd.DataFrame) -> str | None:
    """Linear and kNN test accuracy (%) with 1%, 10%, ... and 100% of the training labels."""
    fracs = fractions(summary)
    rows = summary[summary[[f"linear@{f}_mean" for f in fracs]].notna().any(axis=1)] if fracs else []
    if not len(rows):
        return None
    counts = {f: int(df[f"labels@{f}"].dropna().iloc[0]) for f in fracs}
    out = []
    for _, s in rows.iterrows():
        row = {"learner": s["learner"], "latent dim": int(s["latent_dim"])}
        for probe, name in (("linear", "linear"), ("knn", "kNN")):
            for f in fracs:
                cell = _pm(s[f"{probe}@{f}_mean"], s[f"{probe}@{f}_std"], 100)
                row[f"{name} {float(f):.0%} ({counts[f]:,})"] = cell
            row[f"{name} 100%"] = _pm(s[f"{probe}_mean"], s[f"{probe}_std"], 100)
        out.append(row)
    return pd.DataFrame(out).to_markdown(index=False, disable_numparse=True)


def ablation_table(summary: pd.DataFrame) -> str | None:
    """Each variant (a learner label that names a setting) beside its plain learner at the same size.

    A variant with no plain run at its size (say SimCLR trained on its own epoch budget) compares
    with nothing and is left to the main table.
    """
    plain_rows = summary[~summary["variant"]].itertuples()
    base = {(p.method, p.latent_dim): p for p in plain_rows}
    variants = summary[summary["variant"]]
    rows = []
    for v in variants.sort_values(["method", "latent_dim", "learner"]).itertuples():
        plain = base.get((v.method, v.latent_dim))
        if plain is None:
            continue
        for s, delta in ((plain, "-"), (v, f"{(v.linear_mean - plain.linear_mean) * 100:+.2f}")):
            row = {
                "learner": s.learner,
                "latent dim": int(v.latent_dim),
                "linear %": _pm(s.linear_mean, s.linear_std, 100),
                "Δ linear": delta,
                "kNN %": _pm(s.knn_mean, s.knn_std, 100),
                "PSNR dB": _pm(s.psnr_mean, s.psnr_std),
                "SSIM": _pm(s.ssim_mean, s.ssim_std, 1, 3),
                "n": s.n,
            }
            if row not in rows:
                rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else None


def render(title: str, runs: list[dict], df: pd.DataFrame, summary: pd.DataFrame, figures: dict) -> str:
    c0 = runs[0]["config"]
    envs = [r["metrics"].get("env", {}) for r in runs]
    n = next((r["metrics"]["n"] for r in runs if "n" in r["metrics"]), {})
    commands = Counter(r["config"]["command"] for r in runs if r["config"].get("command"))
    lines = [
        f"# {title}",
        "",
        f"- **Data:** {c0['dataset']['provenance']}; train {n.get('train')}, validation "
        f"{n.get('val')}, test {n.get('test')} images.",
        f"- **Protocol:** {PROTOCOL}",
        f"- **Budget (trained learners):** {_budgets(runs)}; baselines are not trained. A learner "
        "whose name lists a setting was asked for it beyond this protocol (`--set`, its own config "
        "table or a study), and differs from the plain row in that setting only.",
        f"- **Hardware:** {_distinct(e.get('device') for e in envs)}; "
        f"torch {_distinct(e.get('torch') for e in envs)}.",
        f"- **Code:** git {_distinct(e.get('git_sha') for e in envs)}; {len(runs)} runs in `results/runs/`.",
        f"- **Reproduce:** {_reproduce(commands)}, then `python -m bench report`.",
        "",
    ]
    diverged = df[df["status"] != "ok"]
    if len(diverged):
        lines += [
            f"**{len(diverged)} run(s) diverged** and are left out of the means: "
            + ", ".join(f"{r.learner} d={r.latent_dim} seed={r.seed}" for r in diverged.itertuples()),
            "",
        ]
    if summary.empty:
        return "\n".join(lines + ["No finished runs yet."]) + "\n"
    lines += [
        "## Main table",
        "",
        "Test accuracy of probes on frozen latents (%), reconstruction quality on the test split, "
        "mean ± std over n seeds; train s = mean training wall time.",
        "",
        main_table(summary),
        "",
        *(
            [
                "Rows marked *reference: trained with labels* are the supervised ceiling for the same "
                "encoder and budget, trained on the training labels: a reference, not a representation "
                "learner, and never counted as the best learner.",
                "",
            ]
            if (summary["kind"] == "reference").any()
            else []
        ),
        *_footnotes(summary),
        "## Linear probe accuracy by latent size",
        "",
        latent_table(summary),
        "",
        f"![accuracy vs latent size]({figures['latent']})",
        "",
    ]
    if "psnr" in figures:
        lines += [f"![accuracy vs PSNR]({figures['psnr']})", ""]
    efficiency = label_table(summary, df)
    if efficiency:
        lines += [
            "## Label efficiency",
            "",
            "Test accuracy (%) of the linear probe and kNN fitted on a class-balanced fraction of the "
            "training labels (labelled images in brackets); for each fraction below 100%, mean ± std "
            "over seeds and draws of the labelled subset (the same subsets for every learner). "
            "Hyperparameters are still chosen on the validation slice. Runs stored before this "
            "evaluator existed show `-`.",
            "",
            efficiency,
            "",
            *([f"![accuracy vs labels used]({figures['labels']})", ""] if "labels" in figures else []),
        ]
    lines += _compare_section(runs, summary, df)
    ablations = ablation_table(summary)
    if ablations:
        lines += [
            "## Ablations",
            "",
            "Each variant beside the plain learner at the same latent size; Δ linear = the variant's "
            "mean linear accuracy minus the plain learner's, in points.",
            "",
            ablations,
            "",
        ]
    if "recon" in figures:
        lines += [
            "## Reconstructions",
            "",
            "The same test images (the first of each class) for every "
            "learner that reconstructs (seed with the lowest number).",
            "",
            f"![reconstructions]({figures['recon']})",
            "",
        ]
    lines += [
        "## Confusion matrix of the best learner",
        "",
        f"![confusion matrix]({figures['confusion']})",
        "",
    ]
    lines += [
        "<details><summary>Runs behind these tables</summary>",
        "",
        df.sort_values(["learner", "latent_dim", "seed"])
        .assign(linear=lambda d: [_pm(v, None, 100) for v in d["linear"]])
        .rename(columns={"latent_dim": "latent dim", "linear": "linear %"})[
            ["key", "learner", "latent dim", "seed", "status", "linear %"]
        ]
        .to_markdown(index=False, disable_numparse=True),
        "",
        "Commands that made them (each skips the runs already stored):",
        "",
        *(f"- `{c}` ({k} run{'s' * (k > 1)})" for c, k in commands.most_common()),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def _compare_section(runs, summary, df) -> list[str]:
    from bench import compare

    found = compare.table(runs, summary, df)
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


def _footnotes(summary: pd.DataFrame) -> list[str]:
    notes = []
    if summary["below_pca"].any():
        notes.append(
            "*(< PCA)*: the learner reconstructs the test split worse than PCA with the same latent "
            "size, the best linear code of that size: it is undertrained for reconstruction at this "
            "budget, and its PSNR says so rather than what the architecture can do."
        )
    if summary["uncommitted"].any():
        notes.append(
            "†: some of the row's runs came from code with uncommitted changes (git SHA `-dirty`); "
            "`python -m bench verify --uncommitted --adopt` retrains them from this commit and replaces them."
        )
    if summary["stale"].any():
        notes.append(
            "‡: some of the row's runs were measured by an older evaluator: a linear probe stopped at "
            "150 plain L-BFGS steps, short of its optimum (results/README.md measures by how much), "
            "and no label efficiency or RankMe. `python -m bench "
            "verify --stale --adopt` re-measures them (from cached checkpoints where there are any)."
        )
    notes.append(
        "RankMe (Garrido et al. 2023): effective rank of the raw training latents, exp of the entropy "
        "of their normalised singular values; label-free, at most the latent size."
    )
    return [line for note in notes for line in (note, "")]


def _budgets(runs: list[dict]) -> str:
    """The protocol's budget(s): the most common one, then any a group of learners has instead
    (e.g. the view-based learners' longer schedule). Runs that asked for another budget are named."""
    by_budget: dict[str, set] = {}
    for r in runs:
        c = r["config"]
        if c["train"] and not any(k.startswith("train.") for k in c.get("overrides", {})):
            by_budget.setdefault(json.dumps(c["train"], sort_keys=True), set()).add(c["method"])
    if not by_budget:
        return "no trained learner in the store yet"
    ordered = sorted(by_budget.items(), key=lambda kv: -len(kv[1]))
    text = _budget(json.loads(ordered[0][0]))
    for budget, methods in ordered[1:]:
        text += f"; {', '.join(sorted(methods))}: {_budget(json.loads(budget))}"
    return text


def _budget(b: dict) -> str:
    return (
        f"{b['epochs']} epochs, batch {b['batch_size']}, AdamW lr {b['lr']} (warmup "
        f"{b['warmup_epochs']} epoch, cosine), weight decay {b['weight_decay']}"
    )


def _reproduce(commands: Counter) -> str:
    if len(commands) == 1:
        return f"`{next(iter(commands))}`"
    if commands:
        return f"the {len(commands)} commands listed under *Runs behind these tables*"
    return "unknown"


def _distinct(values) -> str:
    seen = [v for v, _ in Counter(v for v in values if v).most_common()]
    return ", ".join(str(v) for v in seen) or "unknown"
