"""The page's protocol card: per measure, which split chose which hyperparameter over which
declared range, which split scored it and how many times a run reads the test split for it
(each evaluator's `card`, checked on every run by the audit of bench/run/evaluate.py), and where
the learners' settings came from."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pandas as pd

from bench import config, evaluators
from bench.report import labels
from bench.store import compat


def eval_config(runs: list[dict]):
    """The `[eval]` config most of the page's runs were measured with (stored runs filled in at
    the defaults their fields were added with)."""
    common = Counter(json.dumps(r["config"]["eval"], sort_keys=True) for r in runs).most_common(1)[0][0]
    known = {f.name for f in dataclasses.fields(config.EvalConfig)}
    values = compat.settings("eval", json.loads(common))
    return config.EvalConfig(**{k: v for k, v in values.items() if k in known})


def of_run(run: dict) -> list[dict]:
    """A run's protocol card: the one recorded when it was measured (audited), or for a run
    measured before the audit, its evaluators' cards at its `[eval]` settings, marked unaudited."""
    recorded = run["metrics"].get("protocol")
    if isinstance(recorded, list):
        return [{**line, "audited": True} for line in recorded]
    measured = {name for name, version in compat.measured(run["metrics"]).items() if version}
    return [
        {**dataclasses.asdict(c), "evaluator": e.name, "audited": False}
        for e in evaluators.all()
        if e.name in measured
        for c in e.card(eval_config([run]))
    ]


def section(runs: list[dict], dataset: str) -> list[str]:
    ok = [r for r in runs if r["metrics"].get("status") == "ok"]
    if not ok:
        return []
    measured = {name for r in ok for name, version in compat.measured(r["metrics"]).items() if version}
    cards = [c for e in evaluators.all() if e.name in measured for c in e.card(eval_config(ok))]
    table = pd.DataFrame(
        [
            {
                "measure": c.measure,
                "chooses": c.chooses,
                "over": c.over,
                "chosen on": c.on,
                "scored on": c.scored,
                "test reads a run": c.reads,
            }
            for c in cards
        ]
    )
    audited = sum(isinstance(r["metrics"].get("protocol"), list) for r in ok)
    configs = sorted(
        {m.group(1) for r in ok if (m := re.search(r"--config (\S+)", r["config"].get("command") or ""))}
    )
    tuned = any(labels.only_trial(r) or "tuned" in ",".join(r["config"].get("purposes", [])) for r in ok)
    named = ", ".join(f"`{c}`" for c in configs) or "the built-in defaults"
    return [
        "## Protocol card",
        "",
        "What chose each number and how often the test split was read for it (the `[eval]` settings of "
        "most runs here). Evaluators read test latents through an accessor that records every read: a "
        "run whose evaluator reads a number twice, or more often than its card declares (a choice made "
        f"on test), is refused and nothing is stored. Audited at measurement: {audited} of {len(ok)} runs "
        "(the others predate the audit; `python -m bench verify --outdated --adopt` re-measures them).",
        "",
        labels.markdown(table),
        "",
        "**Settings.** Every learner runs with its defaults (`methods/<name>.py`) and the tables of "
        f"{named}, set by hand before these runs, not chosen by a study on {dataset}"
        + (
            ", except the rows of *Tuned at equal budget*, each tuned there by a study of equal budget"
            if tuned
            else ""
        )
        + ". A ranking here holds for these settings on this dataset; `python -m bench compare` tunes "
        "every learner at equal budget on a dataset.",
        "",
    ]
