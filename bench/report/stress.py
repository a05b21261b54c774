"""The page section 'Under stress': the linear probe's calibration (bench/evaluators/calibration.py)
and out-of-distribution detection from the latents (bench/evaluators/ood.py), per learner, and
whether clean accuracy predicts them. A page whose runs measured neither has no such section."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from bench import store
from bench.report import labels, plots, sections, statplots
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
    ("ood_knn_auroc", "OOD AUROC % kNN", 100, 2),
    ("ood_maha_auroc", "OOD AUROC % Mahalanobis", 100, 2),
    ("ood_knn_fpr95", "FPR@95 % kNN", 100, 2),
    ("ood_maha_fpr95", "FPR@95 % Mahalanobis", 100, 2),
)


def section(slug: str, title: str, summary, df, runs: list[dict]) -> list[str]:
    have = [c for c, *_ in COLUMNS if c in df and pd.to_numeric(df[c], errors="coerce").notna().any()]
    if not have:
        return []
    ok = df[(df["status"] == "ok")].copy()
    for c in have:
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    rows, pairs = [], []
    for s in summary.itertuples():
        mine = ok[(ok["learner"] == s.learner) & (ok["latent_dim"] == s.latent_dim)]
        measured = mine.dropna(subset=have, how="all")
        if measured.empty:
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
        + (
            "**Corruptions**: the clean linear probe on a fixed sample of test images corrupted as "
            "CIFAR-10-C does (noise, blur, fog, brightness, contrast, pixelate, JPEG; 5 severities; "
            "bench/evaluators/corruptions.py), its mean accuracy over them, the drop from the same "
            "images clean (points) and their ratio. "
            if "corrupted" in have
            else ""
        )
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
    lines += _figures(slug, title, summary, df, runs)
    if len(pairs) >= 4:
        acc = [a for a, _ in pairs]
        said = []
        for c, head, *_ in COLUMNS:
            if c in have and c in ("corruption_relative", "ece_ts", "ood_knn_auroc", "ood_maha_auroc"):
                rho = spearmanr(acc, [p[c] for _, p in pairs]).statistic
                said.append(f"{head}: rho {rho:+.2f}")
        lines += [
            f"Does clean linear accuracy predict them? Spearman rank correlation over the {len(pairs)} "
            "rows above: " + "; ".join(said) + ".",
            "",
        ]
    return lines


def _figures(slug, title, summary, df, runs) -> list[str]:
    """Accuracy against severity, and the corruption x learner heat map, of the plain learners at
    the page's main latent size (each learner's runs that measured corruptions, seeds pooled)."""
    dim = sections.main_dim(summary)
    detail = {r["key"]: r["metrics"].get("corruptions") for r in runs}
    rows = df[(df["status"] == "ok") & ~df["variant"]]
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
        sev = sorted({int(s) for d in found for by in d["accuracy"].values() for s in by})
        points = [(0, float(np.mean([d["clean_acc"] for d in found])))]
        for s in sev:
            points.append((s, float(np.mean([by[str(s)] for d in found for by in d["accuracy"].values()]))))
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
