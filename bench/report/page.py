"""A dataset's page as Markdown: its header (protocol, budget, hardware, code, how to reproduce),
its tables and figures, the sections of sections.py and tuned.py, and its footnotes. Every word
is made from the runs it is given; bench/report/__init__.py decides which runs and writes it."""

from __future__ import annotations

import json
from collections import Counter

from bench import evaluators
from bench.evaluators.mlp import MLP
from bench.report import labels, tables, tuned
from bench.report.tables import pm
from bench.store import compat

PROTOCOL = (
    "Learners train on training images only (no labels), then are frozen. Latents are extracted "
    "once in eval mode and standardised with training statistics. A fixed, seeded validation slice "
    "of the training split picks every evaluator hyperparameter (probe weight decay, {mlp}, "
    "kNN k); the test split is read once per reported number. Linear = multinomial logistic regression "
    "(L-BFGS), MLP = one hidden layer, kNN = cosine majority vote. Reconstruction metrics are on "
    "the test split, pixels in [0, 1] (PSNR capped at 100 dB: lossless). The encoder's weights "
    "are checked unchanged by evaluation."
)


def protocol(runs: list[dict]) -> str:
    """The page's protocol; what chose the MLP head's settings depends on its versions here."""
    versions = {compat.measured(r["metrics"])["mlp"] for r in runs if r["metrics"].get("status") == "ok"}
    return PROTOCOL.format(mlp=MLP.chosen(versions))


def render(title: str, runs: list[dict], df, summary, figures: dict, every: list[dict], more=None) -> str:
    """The page; `more`: the sections of bench/report/sections.py ("real", "maps", "label_free")."""
    more = more or {}
    c0 = runs[0]["config"]
    envs = [r["metrics"].get("env", {}) for r in runs]
    n = next((r["metrics"]["n"] for r in runs if "n" in r["metrics"]), {})
    commands = Counter(r["config"]["command"] for r in runs if r["config"].get("command"))
    lines = [
        f"# {title}",
        "",
        f"- **Data:** {c0['dataset']['provenance']}; train {n.get('train')}, validation "
        f"{n.get('val')}, test {n.get('test')} images.",
        f"- **Protocol:** {protocol(runs)}"
        + (
            " The [protocol card](#protocol-card) says, per measure, what chose it and how often test "
            "was read."
            if more.get("card")
            else ""
        ),
        f"- **Budget (trained learners):** {_budgets(runs)}; baselines are not trained. A learner "
        "whose name lists a setting was asked for it beyond this protocol (`--set`, its own config "
        "table or a study), and differs from the plain row in that setting only.",
        f"- **Hardware:** {_distinct(e.get('device') for e in envs)}; "
        f"torch {_distinct(e.get('torch') for e in envs)}.",
        f"- **Code:** git {_distinct(e.get('git_sha') for e in envs)}; {len(runs)} runs in `results/runs/`.",
        f"- **Reproduce:** {_reproduce(commands)}, then `python -m bench report`.",
        "",
    ]
    diverged = df[df["status"] != "ok"]
    if len(diverged):
        lines += [
            f"**{len(diverged)} run(s) diverged** and are left out of the means: "
            + ", ".join(f"{r.learner} d={r.latent_dim} seed={r.seed}" for r in diverged.itertuples()),
            "",
        ]
    if summary.empty:
        return "\n".join(lines + ["No finished runs yet."]) + "\n"
    lines += [
        "## Main table",
        "",
        "Test accuracy of probes on frozen latents (%), reconstruction quality on the test split, "
        "mean ± std over n seeds; train s = mean training wall time.",
        "",
        tables.main_table(summary),
        "",
        *(
            [
                "Rows marked *reference: trained with labels* are the supervised ceiling for the same "
                "encoder and budget, trained on the training labels: a reference, not a representation "
                "learner, and never counted as the best learner.",
                "",
            ]
            if (summary["kind"] == "reference").any()
            else []
        ),
        *_footnotes(summary, df),
        *(line for e in evaluators.all() if (n := e.page_note(summary, df)) for line in (n, "")),
        *more.get("real", []),
        "## Linear probe accuracy by latent size",
        "",
        tables.latent_table(summary),
        "",
        f"![accuracy vs latent size]({figures['latent']})",
        "",
    ]
    if "psnr" in figures:
        lines += [f"![accuracy vs PSNR]({figures['psnr']})", ""]
    efficiency = tables.label_table(summary, df)
    if efficiency:
        lines += [
            "## Label efficiency",
            "",
            "Test accuracy (%) of the linear probe and kNN fitted on a class-balanced fraction of the "
            "training labels (labelled images in brackets); for each fraction below 100%, mean ± std "
            "over seeds and draws of the labelled subset (the same subsets for every learner). "
            "Hyperparameters are still chosen on the validation slice. Runs stored before this "
            "evaluator existed show `-`.",
            "",
            efficiency,
            "",
            *([f"![accuracy vs labels used]({figures['labels']})", ""] if "labels" in figures else []),
        ]
    lines += more.get("fewshot", []) + more.get("cost", []) + more.get("stress", [])
    lines += tuned.section(every, runs, summary, df)
    ablations = tables.ablation_table(summary)
    if ablations:
        lines += [
            "## Ablations",
            "",
            "Each variant beside the plain learner at the same latent size; Δ linear = the variant's "
            "mean linear accuracy minus the plain learner's, in points.",
            "",
            ablations,
            "",
        ]
    if "recon" in figures:
        lines += [
            "## Reconstructions",
            "",
            "The same test images (the first of each class) for every "
            "learner that reconstructs (seed with the lowest number).",
            "",
            f"![reconstructions]({figures['recon']})",
            "",
        ]
    lines += more.get("maps", []) + more.get("label_free", [])
    lines += more.get("card", [])
    lines += [
        "## Confusion matrix of the best learner",
        "",
        f"![confusion matrix]({figures['confusion']})",
        "",
    ]
    lines += [
        "<details><summary>Runs behind these tables</summary>",
        "",
        labels.markdown(
            df.sort_values(["learner", "latent_dim", "seed"])
            .assign(linear=lambda d: [pm(v, None, 100) for v in d["linear"]])
            .rename(columns={"latent_dim": "latent dim", "linear": "linear %"})[
                ["key", "learner", "latent dim", "seed", "status", "linear %"]
            ]
        ),
        "",
        "Commands that made them (each skips the runs already stored):",
        "",
        *(f"- `{c}` ({k} run{'s' * (k > 1)})" for c, k in commands.most_common()),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def _footnotes(summary, df) -> list[str]:
    notes = []
    if "mark" in summary and summary["mark"].str.contains("=").any():
        notes.append(
            "▲: the best learner at its latent size by mean linear accuracy (references excepted); =: "
            "not separable from it, its 95% interval of the difference contains 0 (*Which differences "
            "are real*, below)."
        )
    if summary["below_pca"].any():
        notes.append(
            "*(< PCA)*: the learner reconstructs the test split worse than PCA with the same latent "
            "size, the best linear code of that size: it is undertrained for reconstruction at this "
            "budget, and its PSNR says so rather than what the architecture can do. Where PCA is lossless "
            "(as many components as pixels) nothing is marked."
        )
    if summary["uncommitted"].any():
        notes.append(
            "†: some of the row's runs came from code with uncommitted changes (git SHA `-dirty`); "
            "`python -m bench verify --uncommitted --adopt` retrains them from this commit and replaces them."
        )
    if summary["stale"].any():
        names = {n for cell in df.loc[df["stale"], "stale_by"] for n in cell.split(",") if n}
        wrong = "; ".join(e.stale_note for e in evaluators.all() if e.name in names and e.stale_note)
        notes.append(
            f"‡: some of the row's runs were measured by an older evaluator: {wrong}. `python -m bench "
            "verify --stale --adopt` re-measures them (from cached checkpoints where there are any)."
        )
    notes += [e.note for e in evaluators.all() if e.note]
    return [line for note in notes for line in (note, "")]


def _budgets(runs: list[dict]) -> str:
    """The protocol's budget(s): the most common one, then any a group of learners has instead
    (e.g. the view-based learners' longer schedule). Runs that asked for another budget are named."""
    by_budget: dict[str, set] = {}
    for r in runs:
        c = r["config"]
        if c["train"] and not any(k.startswith("train.") for k in c.get("overrides", {})):
            by_budget.setdefault(json.dumps(c["train"], sort_keys=True), set()).add(c["method"])
    if not by_budget:
        return "no trained learner in the store yet"
    ordered = sorted(by_budget.items(), key=lambda kv: -len(kv[1]))
    text = _budget(json.loads(ordered[0][0]))
    for budget, methods in ordered[1:]:
        text += f"; {', '.join(sorted(methods))}: {_budget(json.loads(budget))}"
    return text


def _budget(b: dict) -> str:
    return (
        f"{b['epochs']} epochs, batch {b['batch_size']}, AdamW lr {b['lr']} (warmup "
        f"{b['warmup_epochs']} epoch, cosine), weight decay {b['weight_decay']}"
    )


def _reproduce(commands: Counter) -> str:
    if len(commands) == 1:
        return f"`{next(iter(commands))}`"
    if commands:
        return f"the {len(commands)} commands listed under *Runs behind these tables*"
    return "unknown"


def _distinct(values) -> str:
    seen = [v for v, _ in Counter(v for v in values if v).most_common()]
    return ", ".join(str(v) for v in seen) or "unknown"
