"""Tables and plots from the run store: results/<dataset>.md, results/<dataset>-*.png.

Nothing here trains or evaluates: every number is read from results/runs/*/metrics.json, so the
report can be rebuilt at any time with `python -m bench report`. This file lays out the pages;
tables.py makes the tables, plots.py and statplots.py the figures, labels.py the row names,
significance.py the intervals, sections.py the sections that rest on kept artifacts, transfer.py
and study_pages.py the transfer and study pages.
"""

from __future__ import annotations

from bench import store
from bench.report import (
    card,
    cost,
    fewshot,
    labels,
    page,
    plots,
    sections,
    stress,
    study_pages,
    tables,
    transfer,
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
    paths = [p for p in (write(name, runs) for name in homes(runs)) if p]
    paths += [p for p in (write_transfer(name, runs) for name in transfer.pages(runs)) if p]
    for db in sorted((store.results_dir() / "studies").glob("*.db")):
        url = f"sqlite:///{db}"
        try:
            for summary in optuna.get_all_study_summaries(url):
                paths.append(study_pages.write(optuna.load_study(study_name=summary.study_name, storage=url)))
        except Exception as e:  # truncated, garbage: the other pages still come
            store.warn(
                f"{db} is not a readable study database ({type(e).__name__}): its pages are kept as they are"
            )
    return paths


def write_transfer(name: str, every: list[dict]):
    """results/<A>-to-<B>.md of the store's transfer runs (bench/report/transfer.py)."""
    text = transfer.page(name, every)
    if text is None:
        return None
    path = store.results_dir() / f"{name}.md"
    store.write_text(path, text)
    return path


def page_of(cfg: dict) -> str:
    """The page a run's rows are on: results/<this>.md. An in-domain run's is its dataset's slug,
    or `<slug>-classes5-9` when it trained on some classes only (their accuracies are over fewer
    classes: never rows of the whole dataset's page); a transfer's is `<A>-to-<B>`."""
    if cfg.get("probe"):
        return transfer.page_name(cfg)
    return home(cfg["dataset"]["slug"], cfg.get("data", {}).get("classes") or [])


def home(slug: str, classes) -> str:
    """The in-domain page of a dataset's runs on `classes` (empty: every class)."""
    return transfer.tag({"classes": list(classes)}, {"slug": slug})


def write_for(cfg: dict, every: list[dict]):
    """Write the page of the run with config `cfg` (in-domain or transfer)."""
    return (write_transfer if cfg.get("probe") else write)(page_of(cfg), every)


def homes(every: list[dict]) -> list[str]:
    """The in-domain pages of the store's runs (`page_of`), in name order."""
    return sorted({page_of(r["config"]) for r in every if not transfer.is_transfer(r)})


def page_runs(name: str, every: list[dict]) -> list[dict]:
    """The runs whose rows are on in-domain page `name`: study trials, and any run measured only
    by the linear probe (`eval.steer_only`), are left out (a study has its own page)."""
    runs = [
        r
        for r in every
        if not r["config"].get("probe")  # a transfer has its own page
        and page_of(r["config"]) == name
        and not labels.only_trial(r)
        and not r["metrics"].get("steer_only")
    ]
    return tables.registered(runs)


def write(name: str, every: list[dict]):
    """Write results/<name>.md and its plots from the store's in-domain runs whose page it is
    (`page_of`: a dataset's slug, or its slug and a class subset).

    Study trials and steer-only runs are left out (`page_runs`); tuned re-runs are labelled.
    """
    runs = page_runs(name, every)
    out = store.results_dir()
    if not runs:
        return None
    df = tables.frame(runs)
    ok = df[df["status"] == "ok"]
    summary = tables.summarize(ok)
    c0 = runs[0]["config"]
    title = transfer.side(c0["dataset"], c0.get("data", {}))
    figures = plots.dataset_figures(name, title, runs, df, summary)
    more = {}
    if not summary.empty:
        right = sections.correct(df)  # each run's test predictions, read once
        summary, intervals = sections.significance_marks(summary, df, right)
        classes = plots.class_names(runs[0]["config"], len(runs[0]["metrics"].get("confusion") or []))
        more = {
            "real": sections.real_differences(name, title, summary, df, intervals, right),
            "maps": sections.latent_maps(name, title, summary, df, classes),
            "label_free": sections.label_free(name, title, summary, df),
            "fewshot": fewshot.section(name, title, summary, df),
            "cost": cost.section(name, title, summary, df, runs),
            "stress": stress.section(name, title, summary, df, runs),
            "card": card.section(runs, title),
        }
    path = out / f"{name}.md"
    store.write_text(path, page.render(title, runs, df, summary, figures, every, more))
    return path
