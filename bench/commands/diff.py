"""`bench diff A B`: learner A's test linear accuracy minus B's on a dataset's page, per latent
size both were run at, with its 95% interval (bench/report/significance.py says how) and what the
interval accounts for."""

from __future__ import annotations

import numpy as np

from bench import BenchError, store
from bench.report import labels, sections, significance, tables


def add(p) -> None:
    p.add_argument("a", help="a learner's row name as the tables show it (e.g. simclr, 'ae (loss=l1+ssim)')")
    p.add_argument("b", help="the learner it is compared with")
    p.add_argument("--dataset", default="digits", help="the dataset's slug (default digits)")
    p.add_argument("--latent-dim", type=int, help="only this latent size (default: every size both have)")


def main(args, argv) -> None:
    diff(args.a, args.b, args.dataset, args.latent_dim)


def _row(name: str, names: list[str], slug: str) -> str:
    """The page row `name` means: itself, or the one row of that learner when its name lists a
    setting every run shares (say `ae (train.epochs=1)` for `ae`)."""
    if name in names:
        return name
    found = [n for n in names if n.startswith(f"{name} (")]
    if len(found) == 1:
        return found[0]
    raise BenchError(
        f"no learner {name!r} on the {slug} page"
        + (" (several rows start so: name one)" if found else "")
        + f"; its rows: {', '.join(found or names)}"
    )


def diff(a: str, b: str, slug: str, dim: int | None) -> None:
    """Learner A's test linear accuracy minus B's on the page of dataset `slug`,
    per latent size both were run at, with its 95% interval and what it accounts for."""
    runs = [
        r
        for r in store.load_runs()
        if r["config"]["dataset"]["slug"] == slug
        and not labels.only_trial(r)
        and not r["metrics"].get("steer_only")
    ]
    runs = tables.registered(runs)
    if not runs:
        raise BenchError(f"no stored run of dataset {slug!r}: see `python -m bench runs` for the slugs")
    df = tables.frame(runs)
    names = sorted(set(df["learner"]))
    a, b = (_row(name, names, slug) for name in (a, b))
    g = significance.groups(df, sections.correct(df))
    dims = sorted({d for (n, d) in g if n == a} & {d for (n, d) in g if n == b})
    if dim is not None:
        dims = [d for d in dims if d == dim]
    if not dims:
        raise BenchError(
            f"{a!r} and {b!r} share no latent size on the {slug} page" + (f" at d={dim}" if dim else "")
        )
    for d in dims:
        iv = significance.between(g[(a, d)], g[(b, d)])
        ci = "-" if np.isnan(iv.lo) else f"[{iv.lo * 100:+.2f}, {iv.hi * 100:+.2f}]"
        print(
            f"{slug} d={d}: {a} - {b} = {iv.diff * 100:+.2f} points, 95% interval {ci}: "
            f"{significance.verdict(iv)} ({iv.seeds} seed(s); {iv.basis})"
        )
