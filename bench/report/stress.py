"""The page section 'Under stress': the linear probe's calibration (bench/evaluators/calibration.py)
and out-of-distribution detection from the latents (bench/evaluators/ood.py), per learner, and
whether clean accuracy predicts them. A page whose runs measured neither has no such section."""

from __future__ import annotations

import pandas as pd
from scipy.stats import spearmanr

from bench.report import labels
from bench.report.tables import pm

COLUMNS = (  # (frame column, table heading, scale, digits)
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


def section(summary, df) -> list[str]:
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
        "it (*n*). **Calibration** of the linear probe on test, before and after temperature scaling "
        "fitted on the validation slice (ECE over 15 equal-width confidence bins; NLL; Brier). **OOD "
        "detection**: AUROC and FPR at 95% TPR of telling the test images from out-of-distribution "
        "images by a latent score: kNN distance to the training latents (label-free, Sun et al. 2022) "
        "or Mahalanobis distance to the nearest class mean (Lee et al. 2018); averaged over the sources "
        "the runs declare (uniform noise, Gaussian noise, inverted validation images by default; "
        "bench/evaluators/ood.py). `python -m bench evaluate KEY` draws a run's reliability diagram.",
        "",
        labels.markdown(pd.DataFrame(rows)),
        "",
    ]
    if len(pairs) >= 4:
        acc = [a for a, _ in pairs]
        said = []
        for c, head, *_ in COLUMNS:
            if c in have and c in ("ece_ts", "ood_knn_auroc", "ood_maha_auroc"):
                rho = spearmanr(acc, [p[c] for _, p in pairs]).statistic
                said.append(f"{head}: rho {rho:+.2f}")
        lines += [
            f"Does clean linear accuracy predict them? Spearman rank correlation over the {len(pairs)} "
            "rows above: " + "; ".join(said) + ".",
            "",
        ]
    return lines
