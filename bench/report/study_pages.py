"""Study pages: results/studies/<study>.md with the best configuration, every trial and the
parameter importances (and the Pareto front of a two-objective study)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import store
from bench.report import labels, plots


def write(study) -> Path:
    """results/studies/<study>.md: best configuration, trials table, parameter importances."""
    import optuna

    out = store.results_dir() / "studies"
    trials = study.get_trials(deepcopy=False)
    multi = len(study.directions) > 1
    names = ["val linear acc", "val PSNR dB"] if multi else ["val linear acc"]
    rows = [
        {
            "trial": t.number,
            "state": _state(t),
            **{
                n: (f"{v:.4f}" if v is not None else "-")
                for n, v in zip(names, t.values or [None] * len(names))
            },
            **{k: _fmt_param(v) for k, v in t.params.items()},
            "minutes": f"{t.duration.total_seconds() / 60:.1f}" if t.duration else "-",
            "run": t.user_attrs.get("run_key", "-")[:8],
        }
        for t in trials
    ]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    lines = [
        f"# Study {study.study_name}",
        "",
        f"- **Objective:** maximize {' and '.join(names)} (validation slice of the training split; "
        "the test split never steers a study).",
        _setting(study, trials),
        f"- **Trials:** {len(done)} complete, "
        f"{sum(t.state.name == 'PRUNED' for t in trials)} pruned, "
        f"{sum(t.state.name == 'FAIL' for t in trials)} failed; TPE sampler"
        + ("" if multi else ", median pruner on a per-epoch validation probe")
        + ".",
        "",
    ]
    if done and not multi:
        best = study.best_trial
        lines += [
            "## Best configuration",
            "",
            f"Trial {best.number}: validation linear accuracy {best.value:.4f}, run "
            f"`{best.user_attrs.get('run_key', '?')}`.",
            "",
            labels.markdown(pd.DataFrame([{k: _fmt_param(v) for k, v in best.params.items()}])),
            "",
            "Its re-runs over all seeds appear in the dataset table as `<learner> (tuned, ...)`"
            + (
                "; a `bench compare` study's learner keeps them only if they beat its defaults on "
                "validation at the full budget (the page's *Tuned at equal budget* table says which)."
                if any(t.user_attrs.get("default") for t in trials)
                else "."
            ),
            "",
        ]
        lines += _importances(study)
    if done and multi:
        path = store.inside(out, f"{study.study_name}-pareto.png", "study")
        plots.pareto_png(path, done, [t.number for t in study.best_trials], names, study.study_name)
        lines += [
            "## Pareto front",
            "",
            f"![pareto front]({path.name})",
            "",
            "Pareto-optimal trials: " + ", ".join(str(t.number) for t in study.best_trials),
            "",
        ]
    lines += [
        "## Trials",
        "",
        labels.markdown(pd.DataFrame(rows)) if rows else "No trials yet.",
        "",
    ]
    path = store.inside(out, f"{study.study_name}.md", "study")
    store.write_text(path, "\n".join(lines))
    return path


def _setting(study, trials) -> str:
    """What was tuned: the learner, its latent size and dataset (read from the trials' runs) and
    the config the study's command used (recorded since studies record it)."""
    found = None
    for t in trials:
        key = t.user_attrs.get("run_key")
        cfg = store.read_json(store.run_dir(key) / "config.json") if key else None
        if isinstance(cfg, dict):
            found = cfg
            break
    config = study.user_attrs.get("config", "not recorded (the study predates that record)")
    if found is None:
        return f"- **Tuned:** no finished trial yet; config {config}."
    dim = found.get("method_config", {}).get("latent_dim")
    size = f"latent size {dim}" if dim else "its own latent size"
    return f"- **Tuned:** {found['method']}, {size}, on {found['dataset']['name']}; config {config}."


def _state(trial) -> str:
    """A pruned trial's value is its last per-epoch probe, not a finished run's: say so; the
    learner's defaults, enqueued by `bench compare`, are marked."""
    state = trial.state.name.lower()
    if trial.state.name == "PRUNED" and trial.intermediate_values:
        state = f"pruned after epoch {max(trial.intermediate_values) + 1}"
    return state + (" (defaults)" if trial.user_attrs.get("default") else "")


def _importances(study) -> list[str]:
    import optuna

    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError):  # too few trials, or a single distinct value
        return []
    table = pd.DataFrame([{"parameter": k, "importance": f"{v:.3f}"} for k, v in imp.items()])
    return [
        "## Parameter importances (fANOVA)",
        "",
        labels.markdown(table),
        "",
    ]


def _fmt_param(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
