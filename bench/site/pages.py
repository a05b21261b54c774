"""The explorer's pages above the runs: the leaderboard (index.html), each dataset's page (its
Markdown page with the main table made sortable and filterable, rows linked to their runs,
interactive charts and latent maps) and every other Markdown page of the store (transfer, study,
findings, overview) as HTML. A new evaluator's column, learner or dataset appears with no edit
here: the tables come from the evaluator registry and the pages from the store."""

from __future__ import annotations

import re

import numpy as np

from bench import store
from bench.report import tables
from bench.site import charts, leaderboard
from bench.site.data import Page, family, setting
from bench.site.html import controls, esc, from_markdown, select_filter, table, text_filter

SETTINGS = [("", "all"), ("default", "default"), ("tuned", "tuned"), ("ablation", "ablation")]


def anchor(learner: str, dim) -> str:
    """A table row's id on its page (run pages link to it)."""
    return "row-" + re.sub(r"[^a-z0-9]+", "-", f"{learner} {int(dim)}".lower()).strip("-")


def run_href(key: str, up: str = "") -> str:
    return f"{up}runs/{key}.html"


def index(rows: list[leaderboard.Row], ranked: dict[str, list[str]], pages: list[Page]) -> str:
    """The leaderboard page's body."""
    if not rows:
        return (
            "<h1>Leaderboard</h1><p>The store has no finished in-domain runs yet: "
            "<code>python -m bench run</code> makes some, then <code>python -m bench site</code>.</p>"
        )
    titles = {p.name: p.title for p in pages}
    names = sorted({n for r in rows for n in r.cells}, key=lambda n: list(titles).index(n))
    headers = ["#", "learner", "family", "setting", "size", *[titles[n] for n in names]]
    headers += ["mean rank", "rank interval", "tied group"]
    out = []
    for r in rows:
        cells = {
            "learner": esc(r.name),
            "family": esc(family(r.method)),
            "setting": r.setting,
            "size": "main" if r.group == "main" else f"d={r.group}",
            "_attrs": {"family": family(r.method), "setting": r.setting, "group": r.group},
            "_sort": {},
        }
        if not np.isnan(r.mean_rank):
            cells["mean rank"] = f"{r.mean_rank:.2f}"
            cells["rank interval"] = f"[{r.interval[0]:.1f}, {r.interval[1]:.1f}]"
            cells["tied group"] = f'<span class="group">{r.tie}</span>'
        else:
            why = (
                "a reference: trained with labels"
                if r.kind == "reference"
                else "not on every dataset of its group"
            )
            cells["mean rank"] = f'<span class="muted" data-tip="{why}">-</span>'
        for n in names:
            if n not in r.cells:
                continue
            s = r.cells[n][0]
            text, ci = leaderboard.cell(r, n)
            link = f"{n}.html#{anchor(s.learner, s.latent_dim)}"
            tip = f"{s.learner} d={int(s.latent_dim)}, {s.n} seed(s)"
            whisker = ""
            if ci:
                tip += f"; 95% bootstrap interval {ci[0]:.2f}-{ci[1]:.2f}"
                lo, hi = max(ci[0] - 10, 0), min(ci[1] + 10, 100)  # a 20-point window around it
                span = max(hi - lo, 1e-9)
                left, width = (ci[0] - lo) / span * 100, (ci[1] - ci[0]) / span * 100
                mid = (s.linear_mean * 100 - lo) / span * 100
                whisker = (
                    f'<span class="whisker"><span style="left:{left:.0f}%;width:{max(width, 1):.0f}%"></span>'
                    f'<i style="left:{mid:.0f}%"></i></span>'
                )
            cells[titles[n]] = (
                f'<a class="acc" href="{link}" data-page="{n}" data-learner="{esc(s.learner)}" '
                f'data-dim="{int(s.latent_dim)}" data-tip="{esc(tip)}">{text}</a>{whisker}'
            )
            cells["_sort"][titles[n]] = f"{s.linear_mean * 100:.4f}"
        cells["#"] = ""
        out.append(cells)
    place = {}
    for cells, r in zip(out, rows):  # its place in its group's ranking
        if not np.isnan(r.mean_rank):
            place[r.group] = place.get(r.group, 0) + 1
            cells["#"] = str(place[r.group])
    groups = [("main", "main (each page's main size)")] + [
        (g, f"d={g}") for g in sorted({r.group for r in rows} - {"main"}, key=int)
    ]
    fams = [("", "all")] + [(f, f) for f in leaderboard.families(rows)]
    ranked_text = "; ".join(
        f"{'main sizes' if g == 'main' else 'd=' + g}: {', '.join(titles[n] for n in ns)}"
        for g, ns in sorted(ranked.items(), key=lambda item: (item[0] != "main", leaderboard.size(item[0])))
    )
    filters = controls(
        text_filter("leaderboard"),
        select_filter("leaderboard", "group", "latent size", groups, chosen="main"),
        select_filter("leaderboard", "family", "family", fams),
        select_filter("leaderboard", "setting", "setting", SETTINGS[:3]),
    )
    numeric = {"mean rank", "rank interval", "tied group", *[titles[n] for n in names]}
    return (
        "<h1>Leaderboard</h1>"
        '<p class="lede">Test linear-probe accuracy (%) of every learner on every dataset, as each '
        "dataset's page prints it (mean ± std over seeds), and a mean rank over the datasets with a "
        "95% rank interval. Click a column to sort, a number to open its row, a learner's page for its "
        "runs. Ranked over: "
        f"{esc(ranked_text) or 'no group has two learners on every dataset'}.</p>"
        + table("leaderboard", headers, out, numeric=numeric, filters=filters)
        + "<h2>How the ranks are computed</h2>"
        + "".join(f"<p>{esc(p)}</p>" for p in _doc_paragraphs())
    )


def _doc_paragraphs() -> list[str]:
    text = leaderboard.__doc__.split("\n\n")[1:]
    return [" ".join(p.split()) for p in text]


def dataset(page: Page, markdown_text: str | None) -> str:
    """A dataset page's body: its Markdown page with the interactive main table and charts."""
    generated = main_table(page) + charts_section(page)
    if markdown_text is None:
        return (
            f"<h1>{esc(page.title)}</h1>{generated}<p class=muted>results/{page.name}.md is not in the "
            "store: <code>python -m bench report</code> writes it.</p>"
        )
    body = from_markdown(markdown_text, page.name)
    start = body.find('id="main-table"')
    if start < 0 or page.summary.empty:
        return body
    a = body.index('<div class="controls">', start)
    b = body.index("</table></div>", a) + len("</table></div>")
    return body[:a] + generated + body[b:]


def main_table(page: Page) -> str:
    if page.summary.empty:
        return "<p>No finished runs yet.</p>"
    texts = tables.main_rows(page.summary)
    headers = list(texts[0]) + ["runs"]
    rows = []
    for s, text in zip(page.summary.itertuples(), texts):
        keys = list(page.rows(s.learner, s.latent_dim)["key"])
        how = setting(page, s) or "ablation"
        cells = {h: esc(v) for h, v in text.items()}
        if keys:
            cells["learner"] = (
                f'<a id="{anchor(s.learner, s.latent_dim)}" href="{run_href(keys[0])}">{cells["learner"]}</a>'
            )
        seeds = page.rows(s.learner, s.latent_dim)["seed"]
        cells["runs"] = " ".join(f'<a href="{run_href(k)}">s{sd}</a>' for k, sd in zip(keys, seeds))
        cells["_attrs"] = {"family": family(s.method), "dim": str(int(s.latent_dim)), "setting": how}
        rows.append(cells)
    dims = sorted({int(d) for d in page.summary["latent_dim"]})
    filters = controls(
        text_filter("main"),
        select_filter(
            "main",
            "family",
            "family",
            [("", "all")] + [(f, f) for f in sorted({family(m) for m in page.summary["method"]})],
        ),
        select_filter("main", "dim", "latent dim", [("", "all")] + [(str(d), str(d)) for d in dims]),
        select_filter("main", "setting", "setting", SETTINGS),
    )
    numeric = [h for h in headers if h not in ("learner", "runs")]
    return table("main", headers, rows, numeric=numeric, filters=filters)


def charts_section(page: Page) -> str:
    s = page.summary
    if s.empty:
        return ""
    first = {(r.learner, r.latent_dim): k for r, k in zip(s.itertuples(), _first_keys(page))}
    plain = s[~s["variant"] & s["linear_mean"].notna()].to_dict("records")

    def point(r, x, y, series):
        tip = f"{r['learner']} d={int(r['latent_dim'])}: {y:.2f}% ({r['n']} seed{'s' * (r['n'] > 1)})"
        key = first.get((r["learner"], r["latent_dim"]))
        return charts.Point(x, y, tip, series, run_href(key) if key else None)

    figures = [
        charts.scatter(
            [point(r, r["latent_dim"], r["linear_mean"] * 100, r["method"]) for r in plain],
            "Linear accuracy against latent size",
            "latent size (log scale)",
            "linear %",
            logx=True,
            lines=True,
        )
    ]
    rec = [r for r in plain if not np.isnan(r.get("psnr_mean", np.nan))]
    if rec:
        pts = [point(r, r["psnr_mean"], r["linear_mean"] * 100, family(r["method"])) for r in rec]
        figures.append(
            charts.scatter(pts, "Linear accuracy against reconstruction", "test PSNR (dB)", "linear %")
        )
    fracs = [
        c[len("linear@") : -len("_mean")]
        for c in s.columns
        if c.startswith("linear@") and c.endswith("_mean")
    ]
    main = [r for r in plain if r["latent_dim"] == page.main_dim]
    pts = [
        point(r, float(f), r[f"linear@{f}_mean"] * 100, r["method"])
        for r in main
        for f in fracs
        if not np.isnan(r[f"linear@{f}_mean"])
    ]
    if pts:
        pts += [
            point(r, 1.0, r["linear_mean"] * 100, r["method"])
            for r in main
            if any(p.series == r["method"] for p in pts)
        ]
        figures.append(
            charts.scatter(
                pts,
                "Label efficiency",
                "fraction of training labels (log scale)",
                "linear %",
                logx=True,
                lines=True,
            )
        )
    shots = tables.fewshot_frame(s[~s["variant"] & (s["latent_dim"] == page.main_dim)], page.df)
    if not shots.empty:
        lin = shots[shots["probe"] == shots["probe"].iloc[0]]
        pts = [
            charts.Point(
                int(r.k),
                r.mean * 100,
                f"{r.learner}, {r.k}-shot: {r.mean * 100:.2f} ± {r.half * 100:.2f}%",
                r.method,
            )
            for r in lin.itertuples()
        ]
        figures.append(
            charts.scatter(
                pts,
                "k-shot episodes (linear probe)",
                "labelled images per class (log scale)",
                "linear %",
                logx=True,
                lines=True,
            )
        )
    body = (
        "<h2>Interactive charts</h2><p class=muted>Hover a point to name its row; click it to open its run."
    )
    body += '<div class="charts">' + "".join(f"<figure>{f}</figure>" for f in figures if f) + "</div>"
    return body + latent_maps(page)


def _first_keys(page: Page) -> list[str | None]:
    out = []
    for r in page.summary.itertuples():
        keys = list(page.rows(r.learner, r.latent_dim)["key"])
        out.append(keys[0] if keys else None)
    return out


def latent_maps(page: Page) -> str:
    """The latent map of each plain row at the main size (lowest seed that kept one)."""
    s = page.summary
    plain = s[~s["variant"] & (s["latent_dim"] == page.main_dim)]
    figs = []
    for r in plain.itertuples():
        for key, seed in zip(*(page.rows(r.learner, r.latent_dim)[c] for c in ("key", "seed"))):
            m = store.load_artifact(store.run_dir(key), "latent_map")
            if m is not None:
                title = f"{r.learner} d={int(r.latent_dim)} seed {seed}: linear {r.linear_mean * 100:.2f}%"
                figs.append(charts.latent_map(m["xy"], m["y"], page.classes, title))
                break
    if not figs:
        return ""
    return (
        "<h2>Latent maps</h2><p class=muted>t-SNE of test latents (600 points drawn from each run's kept "
        "map); hover a point for its class.</p>" + '<div class="maps">' + "".join(figs) + "</div>"
    )
