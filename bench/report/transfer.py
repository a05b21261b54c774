"""Transfer pages: results/<A>-to-<B>.md, every learner's probe accuracies on B's labels after
training on A, with B's (and A's) in-domain rows beside. The probe data itself: bench/data/probes.py."""

from __future__ import annotations

from bench.report import labels


def tag(d: dict, dataset: dict) -> str:
    """A side's page name: its slug, and its classes when a subset (`cifar10-classes0-4`)."""
    keep = d.get("classes") or []
    if not keep:
        return dataset["slug"]
    runs = keep == list(range(keep[0], keep[-1] + 1))
    return f"{dataset['slug']}-classes" + (f"{keep[0]}-{keep[-1]}" if runs else "_".join(map(str, keep)))


def page_name(cfg: dict) -> str:
    """results/<this>.md of a transfer run: `mnist-to-digits`."""
    return f"{tag(cfg['data'], cfg['dataset'])}-to-{tag(cfg['probe']['data'], cfg['probe']['dataset'])}"


def is_transfer(run: dict) -> bool:
    return bool(run["config"].get("probe"))


def pages(every: list[dict]) -> list[str]:
    """The transfer pages the store's runs make (`mnist-to-digits`, ...)."""
    return sorted({page_name(r["config"]) for r in every if is_transfer(r)})


def page(name: str, every: list[dict]) -> str | None:
    """results/<name>.md: every learner's probe accuracies on B's labels after training on A,
    beside the in-domain rows of B (trained on B) and of A, and whether the ranking holds."""
    from bench.report import sections, tables

    runs = [
        r for r in every if is_transfer(r) and page_name(r["config"]) == name and not labels.only_trial(r)
    ]
    runs = tables.registered(runs)
    ok = [r for r in runs if r["metrics"].get("status") == "ok"]
    if not ok:
        return None
    c = ok[0]["config"]
    a, b = c["dataset"], c["probe"]["dataset"]
    df = tables.frame(ok)
    asked = dict(zip(df["learner"], df["overrides"]))
    summary = tables.summarize(df)
    # in-domain: the same dataset and the same classes (a 5-class probe is compared with 5-class rows)
    home_a = _means(_home(every, a["slug"], c["data"].get("classes") or []))
    rows_b = _home(every, b["slug"], c["probe"]["data"].get("classes") or [])
    home_b = _means(rows_b)
    a_side, b_side = side(a, c["data"]), side(b, c["probe"]["data"])
    rows = []
    for s in summary.itertuples():
        key = (s.method, int(s.latent_dim), _like(asked[s.learner]))
        on_b, on_a = home_b.get(key), home_a.get(key)
        rows.append(
            {
                "learner": s.learner + (" †" if s.uncommitted else "") + (" ‡" if s.stale else ""),
                "latent dim": int(s.latent_dim),
                f"linear % on {b_side}": tables.pm(s.linear_mean, s.linear_std, 100),
                "MLP %": tables.pm(s.mlp_mean, s.mlp_std, 100),
                "kNN %": tables.pm(s.knn_mean, s.knn_std, 100),
                f"in-domain linear % on {b_side}": "-" if on_b is None else f"{100 * on_b:.2f}",
                "transfer - in-domain": "-" if on_b is None else f"{100 * (s.linear_mean - on_b):+.2f}",
                f"linear % on {a_side} (trained there)": "-" if on_a is None else f"{100 * on_a:.2f}",
                "n": s.n,
            }
        )
    import pandas as pd

    table = labels.markdown(pd.DataFrame(rows))
    commands = sorted({r["config"].get("command") for r in ok if r["config"].get("command")})
    lines = [
        f"# {side(a, c['data'])} -> {side(b, c['probe']['data'])}: trained on one, probed on the other",
        "",
        f"- **Trained on:** {a['provenance']}{_subset(c['data'], a)}; each learner trains on its training "
        "images as on its own page (the same runs' checkpoints, where cached).",
        f"- **Probed on:** {b['provenance']}{_subset(c['probe']['data'], b)}; its images "
        f"{c['probe']['adapt']}. The frozen encoder's latents of its train, validation and test images "
        "are probed with its labels by the same evaluator: its seeded validation slice picks every "
        "hyperparameter, its test split is scored once.",
        f"- **In-domain columns:** the same learner, latent size and settings trained on {b_side} "
        f"itself, {_which(c['probe']['data'])} (its page's rows), and on {a_side}, mean over their "
        "seeds; `-`: no such run in the store.",
        "- **Reproduce:** " + ("; ".join(f"`{x}`" for x in commands) or "see the runs' config.json"),
        "",
        "## Transfer table",
        "",
        f"Test accuracy (%) of probes on {b_side}'s labels, mean ± std over n seeds.",
        "",
        table,
        "",
        *_stale(df),
        *_ranking(summary, asked, home_b, b_side),
        *sections.transfer_gaps(summary, df.assign(like=df["overrides"].map(_like)), rows_b, a_side, b_side),
    ]
    return "\n".join(lines) + "\n"


def _stale(df) -> list[str]:
    """The ‡ footnote: which evaluator's older numbers a marked row holds, and the command that
    re-measures them."""
    from bench import evaluators

    names = {n for cell in df.loc[df["stale"], "stale_by"] for n in cell.split(",") if n}
    if not names:
        return []
    wrong = "; ".join(e.stale_note for e in evaluators.all() if e.name in names and e.stale_note)
    return [
        f"‡: some of the row's runs were measured by an older evaluator: {wrong}. `python -m bench "
        "verify --stale --adopt` re-measures them (retraining them where no checkpoint is cached).",
        "",
    ]


def side(dataset: dict, d: dict) -> str:
    """A dataset's title, and its classes when a subset: `CIFAR-10 (classes 5,6,7,8,9)`."""
    keep = d.get("classes") or []
    return dataset.get("title", dataset["slug"]) + (f" (classes {','.join(map(str, keep))})" if keep else "")


def _which(d: dict) -> str:
    keep = d.get("classes") or []
    return "all its classes" if not keep else "those classes only"


def _subset(d: dict, dataset: dict) -> str:
    keep = d.get("classes") or []
    return f", classes {', '.join(dataset['classes'])} only" if keep else ""


def _like(overrides: str) -> str:
    """What a transfer row and an in-domain row must share: the settings asked beyond the protocol,
    but for the data's (the class subset is what a transfer changes)."""
    import json

    return json.dumps(
        {k: v for k, v in json.loads(overrides).items() if not k.startswith("data.")}, sort_keys=True
    )


def _home(every: list[dict], slug: str, classes: list[int]):
    """The runs (a `tables.frame`, with each row's `like`) of `slug`'s in-domain rows on exactly
    `classes` (empty: every class; a subset's accuracy is over fewer classes); None without any."""
    from bench.report import tables

    runs = [
        r
        for r in every
        if r["config"]["dataset"]["slug"] == slug
        and not is_transfer(r)
        and not labels.only_trial(r)
        and (r["config"].get("data", {}).get("classes") or []) == list(classes)
        and r["metrics"].get("status") == "ok"
        and not r["metrics"].get("steer_only")
    ]
    if not runs:
        return None
    df = tables.frame(tables.registered(runs))
    return df.assign(like=df["overrides"].map(_like))


def _means(df) -> dict:
    """{(method, latent dim, settings): mean test linear accuracy} of `_home`'s rows."""
    if df is None:
        return {}
    means = df.groupby(["method", "latent_dim", "like"])["linear"].mean()
    return {(m, int(d), like): v for (m, d, like), v in means.items()}


def _ranking(summary, asked: dict, on_b: dict, title: str) -> list[str]:
    """Does the in-domain ranking hold out of domain? Spearman's rho over the trained learners."""
    from scipy.stats import spearmanr

    keys = [(s, (s.method, int(s.latent_dim), _like(asked[s.learner]))) for s in summary.itertuples()]
    pairs = [(s.linear_mean, on_b[k]) for s, k in keys if s.kind == "learner" and k in on_b]
    if len(pairs) < 3:
        return [
            f"Fewer than three trained learners have both a transfer and an in-domain row on {title}: "
            "no ranking is compared."
        ]
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return [
        "## Does the in-domain ranking hold?",
        "",
        f"Spearman's rho between the trained learners' transfer accuracy and their in-domain accuracy on "
        f"{title}, over {len(pairs)} (learner, latent size) rows: **{rho:+.2f}** (+1: the same order).",
    ]
