"""The leaderboard: every learner across the dataset pages, its linear accuracy on each (the
pages' own cells), and a mean rank with a rank interval and tied groups.

Rows are compared within a latent-size group: *main* (each page's main latent size, a baseline of
fixed size such as raw pixels at its own) or one latent size. A row is a learner with its default
settings or its `bench compare` re-run (*tuned*); ablations stay on their pages. The supervised
reference is shown, never ranked: it is a ceiling trained with labels. In a group, the
rows present on every dataset of the group are ranked on each dataset by mean test linear
accuracy (1 = best, ties share the average rank) and the ranks are averaged over datasets.

The rank interval is the 95% percentile interval of that mean rank over `BOOT` bootstrap
replicates. Each replicate resamples a dataset's test images (the same draw for every row, from
the runs' kept test predictions: rows are paired by image) and each row's seeds (with
replacement), recomputes every accuracy and rank, and averages. Rows in one tied group are not
separable from the group's first row: the 95% interval of their difference in mean rank contains
0. With three seeds a seed resample sees only ten distinct draws, so the interval understates the
training seed's noise (the pages' intervals use a t quantile for that reason,
bench/report/significance.py): read the rank interval as a lower bound on the uncertainty. A run
that kept no predictions is resampled over its seeds only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from bench.report.tables import pm
from bench.site.data import Page, family, setting

BOOT = 1000
LEVEL = 0.95


@dataclass
class Row:
    method: str
    setting: str  # default | tuned
    group: str  # "main" or a latent size
    kind: str
    cells: dict = field(default_factory=dict)  # page name -> (summary row, accuracy draws or None)
    mean_rank: float = float("nan")
    interval: tuple[float, float] = (float("nan"), float("nan"))
    tie: int | None = None

    @property
    def name(self) -> str:
        return self.method + (" · tuned" if self.setting == "tuned" else "")


def rows(pages: list[Page], boot: int = BOOT) -> tuple[list[Row], dict[str, list[str]]]:
    """The leaderboard's rows and, per group, the pages it ranks over."""
    found: dict[tuple, Row] = {}
    for page in (p for p in pages if not p.subset and not p.summary.empty):
        plain = page.summary[~page.summary["variant"]]
        sized = set(plain.loc[plain["latent_dim"] == page.main_dim, "method"])  # a fixed size: its own
        for s in page.summary.itertuples():
            how = setting(page, s)
            if how is None or np.isnan(s.linear_mean):
                continue
            at_main = s.latent_dim == page.main_dim or (s.kind == "baseline" and s.method not in sized)
            own = at_main and s.kind == "baseline" and s.latent_dim != page.main_dim
            for group in ["main"] * at_main + [str(int(s.latent_dim))] * (not own):
                row = found.setdefault((s.method, how, group), Row(s.method, how, group, s.kind))
                row.cells.setdefault(page.name, (s, None))
    by_group: dict[str, list[Row]] = {}
    for row in found.values():
        by_group.setdefault(row.group, []).append(row)
    ranked = {}
    for group, members in by_group.items():
        names = sorted({p for r in members for p in r.cells})
        complete = [r for r in members if set(r.cells) == set(names) and r.kind != "reference"]
        if len(names) > 0 and len(complete) > 1:
            _rank(complete, [p for p in pages if p.name in names], boot)
            ranked[group] = names
    unranked = float("inf")
    order = sorted(
        found.values(),
        key=lambda r: (
            r.group != "main",
            size(r.group),
            unranked if np.isnan(r.mean_rank) else r.mean_rank,
            r.name,
        ),
    )
    return order, ranked


def size(group: str) -> int:
    return int(group) if group.isdigit() else 0


def _rank(rows: list[Row], pages: list[Page], boot: int) -> None:
    """Mean rank, its interval and tied groups of `rows` over `pages` (module docstring)."""
    rng = np.random.default_rng(0)
    observed, draws = [], []
    for page in pages:
        observed.append([r.cells[page.name][0].linear_mean for r in rows])
        acc = _draws(page, rows, boot, rng)
        for r, a in zip(rows, acc):
            r.cells[page.name] = (r.cells[page.name][0], a)
        draws.append(acc)
    point = np.mean([rankdata(-np.asarray(o)) for o in observed], axis=0)
    boot_ranks = np.mean([rankdata(-d, axis=0) for d in draws], axis=0)  # rows x replicates
    lo, hi = np.quantile(boot_ranks, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=1)
    for r, m, a, b in zip(rows, point, lo, hi):
        r.mean_rank, r.interval = float(m), (float(a), float(b))
    order = np.argsort(point, kind="stable")
    tie, leader = 0, None
    for i in order:
        if leader is None or not _tied(boot_ranks[leader] - boot_ranks[i]):
            tie, leader = tie + 1, i
        rows[i].tie = tie


def _tied(diff: np.ndarray) -> bool:
    lo, hi = np.quantile(diff, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return lo <= 0 <= hi


def _draws(page: Page, rows: list[Row], boot: int, rng) -> np.ndarray:
    """Bootstrap draws of each row's mean test accuracy on `page`: rows x replicates."""
    per_row = []
    for r in rows:
        runs = page.rows(r.cells[page.name][0].learner, r.cells[page.name][0].latent_dim)
        right = [page.right.get(k) for k in runs["key"]]
        per_row.append((list(runs["linear"]), right if all(x is not None for x in right) else None))
    lengths = {len(x) for _, rights in per_row if rights for x in rights}
    weights = None
    if len(lengths) == 1:  # every row scored on the same test images: resample them once
        n = lengths.pop()
        idx = rng.integers(0, n, (boot, n))
        weights = np.stack([np.bincount(i, minlength=n) for i in idx], 1).astype(np.float32) / n
    out = np.empty((len(rows), boot))
    for j, (accs, rights) in enumerate(per_row):
        if rights is not None and weights is not None:
            per_seed = np.stack(rights).astype(np.float32) @ weights  # seeds x replicates
        else:  # no kept predictions: the seeds' accuracies alone
            per_seed = np.repeat(np.asarray(accs, np.float64)[:, None], boot, 1)
        pick = rng.integers(0, len(per_seed), (len(per_seed), boot))
        out[j] = np.take_along_axis(per_seed, pick, 0).mean(0)
    return out


def cell(row: Row, page: str) -> tuple[str, tuple[float, float] | None]:
    """The accuracy cell of `row` on `page` as the page prints it (mean ± std over seeds, %),
    and its 95% bootstrap interval where the row is ranked."""
    s, draws = row.cells[page]
    text = pm(s.linear_mean, s.linear_std, 100)
    if draws is None:
        return text, None
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return text, (float(lo) * 100, float(hi) * 100)


def families(rows: list[Row]) -> list[str]:
    return sorted({family(r.method) for r in rows})
