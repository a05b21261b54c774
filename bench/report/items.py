"""Per-image values of the stress measures, read from what runs keep, so that their intervals count
the test images as well as the seeds (the crossed design of bench/report/significance.py).

A measure's items are values whose mean, run by run, is the stored number:
- `corrupted`: for each corruption, each image's accuracy over the severities (corrupted.npz);
- `nll`, `brier` (and `_ts`, temperature-scaled): each test image's own (calibrated.npz);
- `ood_knn_auroc`, `ood_maha_auroc`: placement values (DeLong et al. 1988), the share of a
  source's OOD images each test image outscores, averaged over the sources; and as second items
  the share of test images each OOD image is outscored by, weighted so their mean is the same
  AUROC (ood_scores.npz).
ECE and FPR@95 are not means over images (bins and a quantile pool them): their intervals count
the seeds only, as do those of runs stored before their evaluator kept the per-image file.
"""

from __future__ import annotations

import numpy as np

from bench import store
from bench.report import significance

LOWER_IS_BETTER = {"ece", "ece_ts", "nll", "nll_ts", "brier", "brier_ts", "ood_knn_fpr95", "ood_maha_fpr95"}
_SCORE = {"ood_knn_auroc": 0, "ood_maha_auroc": 1}  # the column of ood_scores.npz


def of(run: dict, measure: str, memo: dict | None = None):
    """(items, second items or None) of a finished run for `measure`, or None where not kept;
    `memo` keeps what was read (each file once) for a page's other comparisons."""
    memo = {} if memo is None else memo
    if (run["key"], measure) not in memo:
        memo[run["key"], measure] = _items(run, measure, memo)
    return memo[run["key"], measure]


def _items(run: dict, measure: str, memo: dict):
    def load(name: str):
        if (run["key"], name) not in memo:
            memo[run["key"], name] = store.load_artifact(store.run_dir(run["key"]), name)
        return memo[run["key"], name]

    if measure == "corrupted":
        found, arrays = run["metrics"].get("corruptions"), load("corrupted")
        if arrays is None or not isinstance(found, dict):
            return None
        from bench.evaluators import corruptions

        hit = corruptions.unpacked(arrays, int(found["images"]))
        group = arrays["which"] // 10
        return np.concatenate([hit[group == g].mean(0) for g in dict.fromkeys(group.tolist())]), None
    if measure.split("_")[0] in ("nll", "brier"):
        arrays = load("calibrated")
        name, scaled = measure.split("_")[0], measure.endswith("_ts")
        return None if arrays is None else (arrays[name][:, int(scaled)].astype(np.float64), None)
    if measure in _SCORE:
        arrays = load("ood_scores")
        return None if arrays is None else placements(arrays["score"][:, _SCORE[measure]], arrays["source"])
    return None


def placements(score: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The test images' (source -1) placement values averaged over the sources, and the OOD
    images' weighted so that their mean is the mean AUROC over the sources too."""
    score = score.astype(np.float64)
    inside = score[source == -1]
    ranked = np.sort(inside)
    sources = [s for s in np.unique(source) if s >= 0]
    first, second, total = np.zeros(len(inside)), [], int((source >= 0).sum())
    for s in sources:
        outside = score[source == s]
        ordered = np.sort(outside)
        below = np.searchsorted(ordered, inside, "left")
        tied = np.searchsorted(ordered, inside, "right") - below
        first += (below + tied / 2) / len(outside) / len(sources)
        lo, hi = np.searchsorted(ranked, outside, "left"), np.searchsorted(ranked, outside, "right")
        above = (len(inside) - hi + (hi - lo) / 2) / len(inside)  # the test images that outscore it
        second.append(above * total / (len(sources) * len(outside)))
    return first, np.concatenate(second)


def compare(a: dict[int, tuple], b: dict[int, tuple]) -> significance.Interval:
    """`a` minus `b`, each {seed: (stored value, items or None)}: significance.between, over seeds
    and images where both kept the same items on every shared seed, else over the seeds alone."""

    def runs(side):
        return {s: {"acc": v, "correct": k and k[0], "also": k and k[1]} for s, (v, k) in side.items()}

    return significance.between(runs(a), runs(b))


def _mean_items(found: list) -> tuple | None:
    """The mean of several runs' items (a family's learners on one seed), or None if any lacks them."""
    shapes = {(f[0].shape, None if f[1] is None else f[1].shape) for f in found if f is not None}
    if any(f is None for f in found) or len(shapes) != 1:
        return None
    second = None if found[0][1] is None else np.mean([f[1] for f in found], 0)
    return np.mean([f[0] for f in found], 0), second


def by_seed(rows, runs: dict[str, dict], measure: str, memo: dict) -> dict[str, dict[int, tuple]]:
    """{group: {seed: (value, items)}} of the frame `rows` (one per run; `group` a column, the
    learners of a group on one seed averaged) where `measure` was measured."""
    pooled: dict[str, dict[int, list]] = {}
    for r in rows.dropna(subset=[measure]).itertuples():
        pooled.setdefault(r.group, {}).setdefault(int(r.seed), []).append((getattr(r, measure), r.key))
    return {
        group: {
            seed: (
                float(np.mean([v for v, _ in found])),
                _mean_items([of(runs[k], measure, memo) for _, k in found]),
            )
            for seed, found in seeds.items()
        }
        for group, seeds in pooled.items()
    }


def basis(iv: significance.Interval) -> str:
    return "seeds and images" if iv.basis == significance.SEEDS_AND_TEST else "seeds"
