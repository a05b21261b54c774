"""Do label-free measures predict the linear probe? Per dataset, the Spearman rank correlation of
each spectrum measure (RankMe, alpha-ReQ, NESum, stable rank: bench/evaluators/rankme.py and
spectrum.py) with test linear accuracy over the stored runs of trained representation learners
(autoencoders and view-based learners; the untrained baselines and the supervised reference are
drawn, not counted)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report import labels

MEASURES = {"rankme": "RankMe", "alpha_req": "alpha-ReQ", "nesum": "NESum", "stable_rank": "stable rank"}
COUNTED = ("autoencoders", "views")


def correlations(df: pd.DataFrame, main_dim: int | None) -> pd.DataFrame:
    """One row per measure: runs counted, Spearman rho and its p-value over every latent size,
    and rho at the page's main latent size (`main_dim`)."""
    ok = df[(df["status"] == "ok") & df["family"].isin(COUNTED) & df["linear"].notna()]
    rows = []
    for key, name in MEASURES.items():
        have = ok[ok[key].notna()] if key in ok else ok.iloc[:0]
        rho, p = spearman(have[key], have["linear"])
        at = have[have["latent_dim"] == main_dim]
        rho_main, _ = spearman(at[key], at["linear"])
        rows.append(
            {
                "measure": name,
                "key": key,
                "runs": len(have),
                "rho": rho,
                "p": p,
                "runs_main": len(at),
                "rho_main": rho_main,
            }
        )
    return pd.DataFrame(rows)


def spearman(x, y) -> tuple[float, float]:
    """(rho, two-sided p) of Spearman's rank correlation; NaN for fewer than 3 points or a constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    from scipy import stats  # here, not at import: the verbs that draw no page never pay for it

    r = stats.spearmanr(x, y)
    return float(r.statistic), float(r.pvalue)


def table(corr: pd.DataFrame, main_dim: int | None) -> str:
    def num(v, fmt):
        return "-" if pd.isna(v) else format(v, fmt)

    rows = [
        {
            "measure": r.measure,
            "runs": r.runs,
            "Spearman ρ (every latent size)": num(r.rho, "+.2f"),
            "p": num(r.p, ".2g"),
            f"runs at d={main_dim}": r.runs_main,
            f"ρ at d={main_dim}": num(r.rho_main, "+.2f"),
        }
        for r in corr.itertuples()
    ]
    return labels.markdown(pd.DataFrame(rows))
