"""Which differences are real: intervals on the difference in test accuracy of two learners.

Two learners are compared on the runs they share a seed of, image by image: for seed s and test
image i, D[s, i] = (A right) - (B right), each in {-1, 0, 1}. Their difference is the mean of D,
and its uncertainty has two sources, the training seed and the finite test set, crossed (every
seed is scored on the same test images). The variance of the mean of a two-way crossed design
with seed, image and interaction effects (D = delta + a_s + b_i + e_si) is estimated from the
ANOVA mean squares,

    Var = sigma2_seed / S + sigma2_image / n + sigma2_interaction / (S n)
        = (MS_seed + MS_image - MS_residual) / (S n)

(Cronbach et al. 1972, *The Dependability of Behavioral Measurements*; Brennan 2001,
*Generalizability Theory*, ch. 3), the image term left out where it estimates below zero, and a t
interval on Satterthwaite's (1946) degrees of freedom, which fall to S - 1 when the seed term
dominates (then it is the paired t test over seeds). It is the analytic form of the paired
bootstrap over test images within seeds, combined with the seeds' own spread (Bouthillier et
al. 2021, "Accounting for Variance in Machine Learning Benchmarks", argue for counting both);
with three seeds, resampling seeds would see only ten distinct draws and understate their
spread, which the t quantile does not.

Fallbacks, each named where it is shown: runs stored without test predictions are compared by
their per-seed accuracies alone (a paired t interval over seeds: the test set's noise is not
counted); a single shared seed gets an interval over the test images alone but no verdict (the
training seed's noise, often the larger, is not counted: on a simulated null with seed noise it
"finds" a difference most of the time); a single seed without predictions gets nothing.
Nothing here corrects for comparing many pairs, or for the best learner being chosen by the same
test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.report import labels

LEVEL = 0.95
SEEDS_AND_TEST = "seeds + test images"
SEEDS_ONLY = "seeds only (no test predictions kept)"
TEST_ONLY = "test images only (1 seed)"
UNTESTED = "untested (1 seed, no predictions)"


@dataclass(frozen=True)
class Interval:
    """The difference a - b in accuracy (a fraction), its `LEVEL` interval [lo, hi] (NaN where
    untested), the seeds it paired and what it accounts for (`basis`)."""

    diff: float
    lo: float
    hi: float
    seeds: int
    basis: str

    @property
    def tested(self) -> bool:
        """Whether the interval can carry a verdict: it counts the training seed's noise (a single
        seed cannot; its interval, on the test images alone, is shown but decides nothing)."""
        return self.basis in (SEEDS_AND_TEST, SEEDS_ONLY) and not math.isnan(self.lo)

    @property
    def real(self) -> bool:
        """The interval excludes zero: a difference the data support."""
        return self.tested and (self.lo > 0 or self.hi < 0)


def crossed(a: np.ndarray, b: np.ndarray, level: float = LEVEL, also=None) -> Interval:
    """Interval on mean(a) - mean(b) for per-image arrays (S seeds, n test images: correctness,
    or any per-image value whose mean is the measure), paired by seed and image: the crossed
    seeds x images design of the module docstring.

    `also` = (a2, b2): a second set of items (S, n2) whose per-seed means equal those of (a, b),
    e.g. an AUROC's placement values over the OOD images beside those over the test images (DeLong
    et al. 1988); its image term is added, the seeds' counted once."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    s, n = d.shape
    mean = float(d.mean())
    d2 = None if also is None else np.asarray(also[0], np.float64) - np.asarray(also[1], np.float64)
    if s == 1:  # one seed: the images' spread alone
        var, df, basis = d[0].var(ddof=1) / n, n - 1, TEST_ONLY
        if d2 is not None:
            var2 = d2[0].var(ddof=1) / d2.shape[1]
            df = _satterthwaite([(1, var, n - 1), (1, var2, d2.shape[1] - 1)], var + var2)
            var += var2
    else:
        ms_seed = n * ((d.mean(1) - mean) ** 2).sum() / (s - 1)
        ms_image, ms_resid = _image_squares(d)
        terms = _terms(ms_seed, ms_image, ms_resid, s, n)
        if d2 is not None:
            terms += _terms(0.0, *_image_squares(d2), s, d2.shape[1])[1:]
        var = sum(c * ms for c, ms, _ in terms)
        df = _satterthwaite(terms, var)
        basis = SEEDS_AND_TEST
    return _interval(mean, var, df, s, basis, level)


def _image_squares(d: np.ndarray) -> tuple[float, float]:
    """The image and residual mean squares of a seeds x images array."""
    s, n = d.shape
    mean, by_seed, by_image = d.mean(), d.mean(1), d.mean(0)
    ms_image = s * ((by_image - mean) ** 2).sum() / (n - 1)
    resid = d - by_seed[:, None] - by_image[None, :] + mean
    return ms_image, (resid**2).sum() / ((s - 1) * (n - 1))


def _terms(ms_seed, ms_image, ms_resid, s, n) -> list[tuple[float, float, int]]:
    """(coefficient, mean square, degrees of freedom) whose sum estimates Var(mean D): the seeds'
    own spread, MS_seed / (S n) = var(per-seed differences) / S, which holds the seed and the
    interaction terms, plus the test images' shared term (MS_image - MS_residual) / (S n) where
    that estimates above zero. The seed term is never dropped: with three seeds its estimate is
    noisy, and the t quantile on its few degrees of freedom is what pays for that."""
    c = 1 / (s * n)
    terms = [(c, ms_seed, s - 1)]
    if ms_image > ms_resid:
        terms += [(c, ms_image, n - 1), (-c, ms_resid, (s - 1) * (n - 1))]
    return terms


def _satterthwaite(terms, var: float) -> float:
    denom = sum((c * ms) ** 2 / df for c, ms, df in terms if df > 0)
    return var**2 / denom if denom > 0 else math.inf


def seeds_only(a: list[float], b: list[float], level: float = LEVEL) -> Interval:
    """Interval on mean(a) - mean(b) from paired per-seed accuracies alone (a t interval over
    seeds): for runs stored without test predictions. One seed: untested."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(d) < 2:
        return Interval(float(d.mean()) if len(d) else math.nan, math.nan, math.nan, len(d), UNTESTED)
    return _interval(float(d.mean()), d.var(ddof=1) / len(d), len(d) - 1, len(d), SEEDS_ONLY, level)


def _interval(mean, var, df, seeds, basis, level) -> Interval:
    from scipy import stats  # here, not at import: the verbs that draw no page never pay for scipy.stats

    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(max(var, 0.0)) if df > 0 else math.inf
    return Interval(mean, mean - half, mean + half, seeds, basis)


def between(a: dict[int, dict], b: dict[int, dict], level: float = LEVEL) -> Interval:
    """Learner A against learner B, each given as {seed: run} with `acc` (test accuracy, or the
    measure compared) and `correct` (a bool array per test image, or any per-image values whose
    mean is `acc`; None where the run kept none), and optionally `also` (a second set of items,
    see `crossed`): image by image on the shared seeds when every one of them has the same images,
    otherwise by the per-seed values."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return Interval(math.nan, math.nan, math.nan, 0, UNTESTED)
    sides = [[(r[s]["correct"], r[s].get("also")) for s in seeds] for r in (a, b)]
    shapes = {tuple(None if x is None else x.shape for x in kept) for side in sides for kept in side}
    if len(shapes) == 1 and None not in (shape := shapes.pop())[:1]:
        a_items, b_items = (np.stack([kept[0] for kept in side]) for side in sides)
        also = None if shape[1] is None else [np.stack([kept[1] for kept in side]) for side in sides]
        return crossed(a_items, b_items, level, also=also)
    return seeds_only([a[s]["acc"] for s in seeds], [b[s]["acc"] for s in seeds], level)


# --- a page's comparisons -------------------------------------------------------------------------


def groups(df, correct: dict) -> dict[tuple[str, int], dict[int, dict]]:
    """{(learner, latent dim): {seed: {"acc", "correct"}}} of a page's finished runs (`df`, one
    row per run, see bench/report/tables.py `frame`); `correct`: {run key: bool array or None}."""
    out: dict[tuple[str, int], dict[int, dict]] = {}
    for r in df[(df["status"] == "ok") & df["linear"].notna()].itertuples():
        out.setdefault((r.learner, int(r.latent_dim)), {})[int(r.seed)] = {
            "acc": float(r.linear),
            "correct": correct.get(r.key),
        }
    return out


def best_rows(summary) -> dict[int, str]:
    """{latent dim: learner} with the highest mean linear accuracy at that size, where at least two
    learners were run; a reference (trained with labels) is never the best."""
    candidates = summary[(summary["kind"] != "reference") & summary["linear_mean"].notna()]
    shared = candidates.groupby("latent_dim")["learner"].transform("size") > 1  # alone: best of nothing
    best = candidates[shared].sort_values("linear_mean").groupby("latent_dim").tail(1)
    return {int(s.latent_dim): s.learner for s in best.itertuples()}


def versus_best(summary, df, correct: dict) -> dict[tuple[str, int], Interval]:
    """{(learner, dim): interval on its linear accuracy minus the best learner's at its size}."""
    g, best = groups(df, correct), best_rows(summary)
    return {
        (learner, dim): between(runs, g[(best[dim], dim)])
        for (learner, dim), runs in g.items()
        if dim in best and learner != best[dim]
    }


def marks(summary, intervals: dict) -> dict[tuple[str, int], str]:
    """The main table's marks on the linear cell: ▲ the best at its size, = tied with it (its
    interval contains zero), nothing where the difference is real or was not tested."""
    out = {(learner, dim): " ▲" for dim, learner in best_rows(summary).items()}
    kinds = dict(zip(zip(summary["learner"], summary["latent_dim"].astype(int)), summary["kind"]))
    for key, iv in intervals.items():
        if iv.tested and not iv.real and kinds.get(key) != "reference":
            out[key] = " ="
    return out


def table(summary, intervals: dict) -> str:
    """Markdown: each row of the main table against the best at its latent size."""
    import pandas as pd

    best = best_rows(summary)
    rows = []
    for s in summary.sort_values(["latent_dim"], kind="stable").itertuples():
        dim = int(s.latent_dim)
        if dim not in best or pd.isna(s.linear_mean):
            continue
        iv = intervals.get((s.learner, dim))
        row = {"latent dim": dim, "learner": s.learner, "linear %": f"{s.linear_mean * 100:.2f}"}
        if s.learner == best[dim]:
            row |= {
                "Δ vs best (points)": "best",
                "95% interval": "",
                "verdict": "",
                "seeds": str(s.n),
                "accounts for": "",
            }
        elif iv is not None:
            row |= {
                "Δ vs best (points)": f"{iv.diff * 100:+.2f}",
                "95% interval": "-" if math.isnan(iv.lo) else f"[{iv.lo * 100:+.2f}, {iv.hi * 100:+.2f}]",
                "verdict": verdict(iv, s.kind),
                "seeds": str(iv.seeds),
                "accounts for": iv.basis,
            }
        else:
            continue
        rows.append(row)
    return labels.markdown(pd.DataFrame(rows)) if rows else ""


def verdict(iv: Interval, kind: str = "learner") -> str:
    if not iv.tested:
        return "1 seed: no verdict" if iv.seeds == 1 else "untested"
    if not iv.real:
        return "tied"
    return ("above" if iv.diff > 0 else "below") + (" (reference)" if kind == "reference" else "")


def pairwise(df, learners: list[str], dim: int, correct: dict) -> list[list[Interval | None]]:
    """intervals[i][j]: learner i minus learner j at latent size `dim` (None on the diagonal)."""
    g = groups(df, correct)
    return [
        [None if i == j else between(g[(a, dim)], g[(b, dim)]) for j, b in enumerate(learners)]
        for i, a in enumerate(learners)
    ]
