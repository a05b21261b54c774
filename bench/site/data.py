"""What the explorer shows, read from the store the way `bench report` reads it: each in-domain
page's runs, their one-row-per-run frame, the summary over seeds with the significance marks,
and each run's kept test predictions. Nothing is trained or measured here."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench import report
from bench.report import labels, plots, sections, tables, transfer


@dataclass
class Page:
    name: str  # results/<name>.md
    title: str
    runs: list[dict]
    df: pd.DataFrame  # one row per run (tables.frame)
    summary: pd.DataFrame  # mean ± std over seeds per (learner, latent size), with `mark`
    right: dict  # run key -> whether its linear probe got each test image right (or None)
    main_dim: int | None
    classes: list[str]
    subset: bool  # trained on some classes only (never a column of the leaderboard)

    def rows(self, learner: str, dim) -> pd.DataFrame:
        """The finished runs of one table row, lowest seed first."""
        df = self.df
        mine = df[(df["learner"] == learner) & (df["latent_dim"] == dim) & (df["status"] == "ok")]
        return mine.sort_values("seed")


def pages(every: list[dict]) -> list[Page]:
    """Every in-domain page of the store, as `bench report` lays it out."""
    out = []
    for name in report.homes(every):
        runs = report.page_runs(name, every)
        if not runs:
            continue
        c0 = runs[0]["config"]
        df = tables.frame(runs)
        summary = tables.summarize(df[df["status"] == "ok"])
        right, dim = {}, None
        if not summary.empty:
            right = sections.correct(df)
            summary, _ = sections.significance_marks(summary, df, right)
            dim = sections.main_dim(summary)
        classes = plots.class_names(c0, len(runs[0]["metrics"].get("confusion") or []))
        title = transfer.side(c0["dataset"], c0.get("data", {}))
        subset = bool(c0.get("data", {}).get("classes"))
        out.append(Page(name, title, runs, df, summary, right, dim, classes, subset))
    return out


def setting(page: Page, row) -> str | None:
    """ "default" (the learner's own settings), "tuned" (the re-run of its `bench compare` study on
    this dataset) or None (an ablation: a setting asked for by hand, shown on its page only)."""
    if not row.variant:
        return "default"
    study = f"tuned:compare-{page.runs[0]['config']['dataset']['slug']}-{row.method}"
    purposes = page.df.loc[page.df["learner"] == row.learner, "purposes"]
    return "tuned" if any(study in p.split(",") for p in purposes) else None


def family(method: str) -> str:
    return sections.family(method)


def run_title(run: dict) -> str:
    return labels.title(run["config"], run["metrics"].get("latent_dim"))
