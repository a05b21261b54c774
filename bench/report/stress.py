"""The page section 'Under stress': the linear probe's calibration (bench/evaluators/calibration.py)
and out-of-distribution detection from the latents (bench/evaluators/ood.py), per learner, and
whether clean accuracy predicts them. A page whose runs measured neither has no such section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench import store
from bench.report import items, labels, plots, sections, statplots
from bench.report.tables import pm

COLUMNS = (  # (frame column, table heading, scale, digits)
    ("corrupted", "corrupted %", 100, 2),
    ("corruption_drop", "drop (points)", 100, 2),
    ("corruption_relative", "corrupted / clean %", 100, 1),
    ("ece", "ECE %", 100, 2),
    ("ece_ts", "ECE % (T-scaled)", 100, 2),
    ("nll", "NLL", 1, 3),
    ("nll_ts", "NLL (T-scaled)", 1, 3),
    ("brier", "Brier", 1, 4),
    ("brier_ts", "Brier (T-scaled)", 1, 4),
    ("ood_knn_auroc", "OOD AUROC % kNN", 100, 2),
    ("ood_maha_auroc", "OOD AUROC % Mahalanobis", 100, 2),
    ("ood_knn_fpr95", "FPR@95 % kNN", 100, 2),
    ("ood_maha_fpr95", "FPR@95 % Mahalanobis", 100, 2),
)


def section(slug: str, title: str, summary, df, runs: list[dict]) -> list[str]:
    have = [c for c, *_ in COLUMNS if c in df and pd.to_numeric(df[c], errors="coerce").notna().any()]
    if not have:
        return _unmeasured(runs) if (df["status"] == "ok").any() else []
    ok = df[(df["status"] == "ok")].copy()
    for c in have:
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    rows, pairs, lacking = [], [], []
    for s in summary.itertuples():
        mine = ok[(ok["learner"] == s.learner) & (ok["latent_dim"] == s.latent_dim)]
        measured = mine.dropna(subset=have, how="all")
        if measured.empty:
            lacking.append(f"{s.learner} d={int(s.latent_dim)}")
            continue
        row = {"learner": s.learner, "latent dim": int(s.latent_dim)}
        for c, head, scale, digits in COLUMNS:
            if c in have:
                values = measured[c].dropna()
                row[head] = pm(values.mean(), values.std() if len(values) > 1 else None, scale, digits)
        row["n"] = len(measured)
        rows.append(row)
        pairs.append((measured["linear"].mean(), {c: measured[c].mean() for c in have}))
    lines = [
        "## Under stress",
        "",
        "How the frozen latent holds up beyond clean accuracy, mean ± std over the seeds that measured "
        "it (*n*). "
        + (_corruptions_said(runs) if "corrupted" in have else "")
        + "**Calibration** of the linear probe on test, before and after "
        "temperature scaling fitted on the validation slice (ECE over 15 equal-width confidence bins; "
        "NLL; Brier). **OOD "
        "detection**: AUROC and FPR at 95% TPR of telling the test images from out-of-distribution "
        "images by a latent score: kNN distance to the training latents (label-free, Sun et al. 2022) "
        "or Mahalanobis distance to the nearest class mean (Lee et al. 2018); averaged over the sources "
        "the runs declare (uniform noise, Gaussian noise, inverted validation images by default; "
        "bench/evaluators/ood.py). `python -m bench evaluate KEY` draws a run's reliability diagram.",
        "",
        labels.markdown(pd.DataFrame(rows)),
        "",
    ]
    if lacking:
        lines += [
            f"Not measured under stress ({len(lacking)} rows of the main table, stored before these "
            f"evaluators): {'; '.join(lacking)}. {_remeasure(runs)}",
            "",
        ]
    lines += _by_source(summary, ok, runs)
    lines += _figures(slug, title, summary, df, runs) + _families(summary, ok, have, runs, {})
    if len(pairs) >= 4:
        from scipy.stats import spearmanr  # scipy.stats costs every command ~0.4 s to import

        said = []
        for c, head, *_ in COLUMNS:
            if c in have and c in ("corruption_relative", "ece_ts", "ood_knn_auroc", "ood_maha_auroc"):
                both = [(a, p[c]) for a, p in pairs if not np.isnan(p[c])]
                if len(both) >= 4:
                    rho = spearmanr(*zip(*both)).statistic
                    said.append(f"{head}: rho {rho:+.2f} ({len(both)} rows)")
        lines += [
            "Does clean linear accuracy predict them? Spearman rank correlation over the rows above "
            "that measured each: " + "; ".join(said) + ".",
            "",
        ]
    return lines


def _remeasure(runs) -> str:
    dataset = runs[0]["config"]["dataset"]["slug"]  # a class-split page's runs: the dataset's slug
    how = "measures them (trains them again without cached checkpoints)"
    return f"`python -m bench verify --dataset {dataset} --outdated --adopt` {how}."


def _unmeasured(runs) -> list[str]:
    said = "No run of this page was measured under stress (corruptions, calibration, OOD detection: "
    return ["## Under stress", "", said + "rule 8 of `docs/protocol.md`). " + _remeasure(runs), ""]


SUITES = {
    "MNIST-C": "MNIST-C does (grey images: noise, blur, fog, brightness, contrast, pixelate, JPEG, glass "
    "and motion blur, affine maps, spatter at 5 severities; stripe, lines and edges once)",
    "CIFAR-10-C": "CIFAR-10-C does (noise, blur, fog, brightness, contrast, pixelate, JPEG; 5 severities)",
}


def _corruptions_said(runs) -> str:
    found = [r["metrics"].get("corruptions") for r in runs]
    suites = sorted(
        {d.get("suite", "CIFAR-10-C") for d in found if isinstance(d, dict) and d.get("accuracy")}
    )
    return (
        "**Corruptions**: the clean linear probe on a fixed sample of test images corrupted as "
        + " or as ".join(SUITES.get(s, s) for s in suites)
        + " (bench/evaluators/corruptions.py), its mean accuracy over the corruptions, the drop from "
        "the same images clean (points) and their ratio. "
    )


def _figures(slug, title, summary, df, runs) -> list[str]:
    """Accuracy against severity, and the corruption x learner heat map, of the plain learners at
    the page's main latent size (each learner's runs that measured corruptions, seeds pooled)."""
    dim = sections.main_dim(summary)
    detail = {r["key"]: r["metrics"].get("corruptions") for r in runs}
    measured = df[(df["status"] == "ok") & df["key"].map(lambda k: isinstance(detail.get(k), dict))]
    rows = measured[~measured["variant"]] if (~measured["variant"]).any() else measured  # as main_dim does
    rows = rows[
        [not plots.takes_latent_dim(m) or d == dim for m, d in zip(rows["method"], rows["latent_dim"])]
    ]
    by_learner: dict[str, list[dict]] = {}
    for r in rows.itertuples():
        if isinstance(detail.get(r.key), dict) and detail[r.key].get("accuracy"):
            by_learner.setdefault(r.learner, []).append(detail[r.key])
    if not by_learner:
        return []
    names = list(next(iter(by_learner.values()))[0]["accuracy"])
    lines, heat = {}, []
    for learner, found in by_learner.items():
        sev = sorted({int(s) for d in found for by in d["accuracy"].values() for s in by if s != "-"})
        points = [(0, float(np.mean([d["clean_acc"] for d in found])))]
        for s in sev:  # the graded corruptions (one with a single form has no severity)
            at = [by[str(s)] for d in found for by in d["accuracy"].values() if str(s) in by]
            points.append((s, float(np.mean(at))))
        lines[learner] = points
        heat.append([np.mean([v for d in found for v in d["accuracy"].get(n, {}).values()]) for n in names])
    styles = plots.palette(summary["learner"])
    curve, grid = f"{slug}-corruption-severity.png", f"{slug}-corruptions.png"
    statplots.severity_png(
        store.results_dir() / curve, lines, styles, f"{title}: accuracy under corruption (d={dim})"
    )
    statplots.corruption_heat_png(
        store.results_dir() / grid,
        list(lines),
        names,
        np.asarray(heat),
        f"{title}: accuracy by corruption (d={dim})",
    )
    return [f"![accuracy against corruption severity]({curve})", "", f"![accuracy by corruption]({grid})", ""]


def _by_source(summary, ok, runs) -> list[str]:
    """OOD AUROC per source (kNN / Mahalanobis), mean over the seeds: which shift each latent sees."""
    found = {r["key"]: (r["metrics"].get("ood") or {}).get("sources") for r in runs}
    rows, about = [], {}
    for s in summary.itertuples():
        keys = ok.loc[(ok["learner"] == s.learner) & (ok["latent_dim"] == s.latent_dim), "key"]
        measured = [found[k] for k in keys if isinstance(found.get(k), dict)]
        if not measured:
            continue
        row = {"learner": s.learner, "latent dim": int(s.latent_dim)}
        for name in dict.fromkeys(n for m in measured for n in m):
            at = [m[name] for m in measured if name in m]
            about.setdefault(name, at[0].get("about"))
            knn, maha = (np.mean([a[score]["auroc"] for a in at]) * 100 for score in ("knn", "maha"))
            row[name] = f"{knn:.1f} / {maha:.1f}"
        rows.append(row)
    if not rows:
        return []
    said = "; ".join(f"`{n}`: {a}" for n, a in about.items() if a)
    return [
        "OOD AUROC % by source, kNN / Mahalanobis, mean over seeds (`noise`, `gaussian`: noise images; "
        "`inverted`: the validation images inverted" + (f"; {said}" if said else "") + "):",
        "",
        labels.markdown(pd.DataFrame(rows).fillna("-")),
        "",
    ]


def _families(summary, ok, have, runs, memo) -> list[str]:
    """Reconstruction against invariance: the autoencoders' mean against the view-based learners'
    at the main latent size, per seed (each family's plain learners averaged), and the difference
    with a 95% interval over seeds and images where every run kept its per-image values
    (bench/report/items.py), else over the seeds both families have."""
    dim = sections.main_dim(summary)
    plain = ok[~ok["variant"]] if (~ok["variant"]).any() else ok  # as main_dim picks them
    rows = plain[plain["latent_dim"] == dim].assign(family=lambda d: d["method"].map(sections.family))
    rows = rows.assign(group=rows["family"])
    by_key = {r["key"]: r for r in runs}
    said = []
    for c, head, scale, digits in COLUMNS:
        if c not in have or c in ("nll", "brier", "corruption_drop"):
            continue
        per = items.by_seed(rows[rows["family"].isin(["autoencoders", "views"])], by_key, c, memo)
        if not {"autoencoders", "views"} <= set(per):
            continue
        iv = items.compare(per["views"], per["autoencoders"])
        if iv.seeds < 2:
            continue
        seeds = sorted(set(per["views"]) & set(per["autoencoders"]))
        ae, views = (np.mean([per[f][s][0] for s in seeds]) for f in ("autoencoders", "views"))
        said.append(
            f"{head}: autoencoders {ae * scale:.{digits}f}, view-based {views * scale:.{digits}f}, "
            f"difference {iv.diff * scale:+.{digits}f} [{iv.lo * scale:+.{digits}f}, "
            f"{iv.hi * scale:+.{digits}f}] ({items.basis(iv)})"
        )
    if not said:
        return []
    members = {
        f: ", ".join(sorted(set(rows.loc[rows["family"] == f, "method"]))) for f in ("autoencoders", "views")
    }
    return [
        f"Reconstruction against invariance, at d={dim}: each family's plain learners averaged per seed "
        f"(autoencoders: {members['autoencoders']}; view-based: {members['views']}), the view-based "
        "minus the autoencoders with a 95% interval: over seeds and images (the crossed design of the "
        "significance section; an item is a test image, under one corruption for corrupted accuracy, "
        "or an OOD image too for AUROC) where every run kept its per-image values, else a t-interval "
        "over seeds (ECE and FPR@95, which are not means over images, always). " + "; ".join(said) + ".",
        "",
        *_leaders(rows, by_key, have, memo),
        *_by_corruption(rows, runs),
    ]


def _leaders(rows, by_key, have, memo) -> list[str]:
    """Per measure, the best learner at the main latent size (a reference trained with labels is
    never the best), which learners its 95% interval cannot tell from it, and the runner-up."""
    rows = rows[rows["family"] != "reference"].assign(group=lambda d: d["learner"])
    methods = rows.groupby("learner")["method"].unique()
    short = all(len(m) == 1 for m in methods) and methods.str[0].is_unique  # a learner is its method
    name = (lambda g: methods[g][0]) if short else (lambda g: g)
    out = []
    for c, head, scale, digits in COLUMNS:
        if c not in have or c in ("corruption_drop", "corruption_relative", "ece", "nll", "brier"):
            continue
        per = items.by_seed(rows, by_key, c, memo)
        means = {g: np.mean([v for v, _ in seeds.values()]) for g, seeds in per.items()}
        if len(means) < 2:
            continue
        sign = -1 if c in items.LOWER_IS_BETTER else 1
        ranked = sorted(means, key=lambda g: -sign * means[g])
        best = ranked[0]
        vs = {g: items.compare(per[g], per[best]) for g in ranked[1:]}
        tied = [name(g) for g, iv in vs.items() if iv.tested and not iv.real]
        iv = vs[ranked[1]]
        interval = "-" if np.isnan(iv.lo) else f"[{iv.lo * scale:+.{digits}f}, {iv.hi * scale:+.{digits}f}]"
        out.append({
            "measure": head,
            "best": f"{name(best)} {means[best] * scale:.{digits}f}",
            "tied with it (95%)": ", ".join(tied) or "none",
            "runner-up": name(ranked[1]),
            "difference": f"{iv.diff * scale:+.{digits}f}",
            "95% interval": interval,
            "over": items.basis(iv),
        })  # fmt: skip
    if not out:
        return []
    return [
        "Which learner leads each measure at that size, and which it cannot be told from: each learner "
        "against the best, the same intervals (a tie: the interval contains zero):",
        "",
        labels.markdown(pd.DataFrame(out)),
        "",
    ]


def _by_corruption(rows, runs) -> list[str]:
    """Which corruptions each family survives: per corruption (its severities averaged), the
    families' accuracy and the view-based minus the autoencoders, a 95% t-interval over seeds."""
    from scipy.stats import t as student

    found = {r["key"]: (r["metrics"].get("corruptions") or {}).get("accuracy") for r in runs}
    per: dict[tuple[str, str, int], list[float]] = {}
    for r in rows[rows["family"].isin(["autoencoders", "views"])].itertuples():
        for name, by in (found.get(r.key) or {}).items():
            per.setdefault((name, r.family, r.seed), []).append(sum(by.values()) / len(by))
    out = []
    for name in dict.fromkeys(n for n, _, _ in per):
        have = {f: {s for n, g, s in per if n == name and g == f} for f in ("autoencoders", "views")}
        seeds = sorted(have["autoencoders"] & have["views"])
        if len(seeds) < 2:
            continue
        ae = np.array([np.mean(per[name, "autoencoders", s]) for s in seeds])
        views = np.array([np.mean(per[name, "views", s]) for s in seeds])
        d = views - ae
        half = student.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        lo, hi = (d.mean() - half) * 100, (d.mean() + half) * 100
        out.append({
            "corruption": name.replace("_", " "),
            "autoencoders %": f"{ae.mean() * 100:.1f}",
            "view-based %": f"{views.mean() * 100:.1f}",
            "view-based - autoencoders (points)": f"{d.mean() * 100:+.1f} [{lo:+.1f}, {hi:+.1f}]",
        })  # fmt: skip
    if not out:
        return []
    return [
        "Per corruption (severities averaged), the same families and seeds: which shifts each objective "
        "survives (a 95% t-interval over seeds):",
        "",
        labels.markdown(pd.DataFrame(out)),
        "",
    ]
