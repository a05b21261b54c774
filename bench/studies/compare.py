"""A fair comparison: every learner gets the same tuning budget (`bench compare`).

For every trainable learner, one Optuna study `compare-<dataset>-<learner>` over that learner's
own search space, with the same objective (validation linear accuracy), the same number of
trials, the same per-trial budget, the same seeded TPE sampler and median pruner; then the best
configuration of each is re-run over the grid's seeds at the full budget. The studies are
ordinary `bench tune` studies (resumable, and spread over machines with `--storage`). The
dataset page then gains a "Tuned at equal budget" table (default beside tuned, the settings
found, trials and compute spent) and the rank changes between the two.

Model selection, on the validation slice only: the learner's defaults are the first trial of
its study (so a study can only find something better than them at the trial budget), and the
configuration a learner is reported with is whichever of its defaults and its best trial has the
higher mean validation accuracy over the seeds at the full budget. A short trial budget favours
settings that learn fast, not ones that end best; this last step keeps such a pick from replacing
better defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import TrialState

from bench import BenchError, config, registry, store
from bench.report import study_pages
from bench.report.tuned import STUDY_PREFIX, choose, mean
from bench.run import preflight, runner
from bench.run.session import Setup
from bench.store import compat
from bench.store import spec as spec_
from bench.store.spec import RunSpec
from bench.studies import space, studydb, tune

PREFIX = STUDY_PREFIX


def study_name(slug: str, method: str) -> str:
    return f"{PREFIX}{slug}-{method}"


def learners(methods: list[str] | None) -> list[str]:
    """The learners to compare: every registered trainable one with a search space by default."""
    names = methods or [m for m in registry.names() if registry.get(m).trainable]
    for m in names:
        if not registry.get(m).trainable:
            raise BenchError(f"{m} is a baseline (nothing to tune); it appears untuned as a floor")
        if not registry.tunable(m):
            raise BenchError(f"{m} declares no search space: it cannot be tuned")
    return names


def trial_config(cfg, method: str, trial_epochs: int | float | None):
    """The trial budget: the learner's own budget, with `trial_epochs` epochs if given (an int),
    or that share of its own epochs (a float: 0.25 gives 10 of SimCLR's 40 and 2 of an AE's 10
    on CIFAR-10: 2.5 rounds to even)."""
    if isinstance(trial_epochs, float):
        trial_epochs = max(1, round(cfg.train_for(method).epochs * trial_epochs))
    return config.with_values(cfg, {f"train.{method}.epochs": trial_epochs} if trial_epochs else {})


def _evaluation_seconds(m: dict) -> float:
    """A run's evaluation time: recorded since it was; before, its wall time less its training,
    unless it was evaluated from a cached checkpoint (then its wall time is all evaluation)."""
    if "eval_time_s" in m:
        return m["eval_time_s"]
    wall, train = m.get("wall_time_s") or 0.0, (m.get("train") or {}).get("time_s", 0.0)
    return wall - train if wall > train else wall


def seconds_per_trial(
    runs: list[dict], slug: str, method: str, epochs: int, steer_only: bool = False
) -> float | None:
    """Estimate from the store: the learner's mean training seconds per epoch on this dataset
    (runs of any size and purpose) times `epochs`, plus its mean evaluation time: that of runs
    evaluated the same way (a trial's, `steer_only`, or a full one), else of the others (for a
    trial, an overestimate)."""
    rates, evals = [], {True: [], False: []}
    for r in runs:
        c, m = r["config"], r["metrics"]
        train = m.get("train") or {}
        if c["dataset"]["slug"] == slug and c["method"] == method and train.get("epochs"):
            rates.append(train["time_s"] / train["epochs"])
            evals[bool(m.get("steer_only"))].append(_evaluation_seconds(m))
    if not rates:
        return None
    evaluation = evals[steer_only] or evals[not steer_only]
    return sum(rates) / len(rates) * epochs + sum(evaluation) / len(evaluation)


def plan(
    cfg, data, methods: list[str], trials: int, trial_epochs: int | float | None, storage: str | None = None
) -> tuple[list[str], float]:
    """Lines describing the compute still to do, and its total in hours (unknown learners: 0).
    A resumed study counts only its missing trials, and re-runs the store already holds are free."""
    runs, slug = store.load_runs(), data.slug
    lines, total = [], 0.0
    for m in methods:
        trial_cfg = trial_config(cfg, m, trial_epochs)
        epochs, full = trial_cfg.train_for(m).epochs, cfg.train_for(m).epochs
        per = seconds_per_trial(runs, slug, m, epochs, steer_only=True)
        rerun = seconds_per_trial(runs, slug, m, full)
        left, reruns = _left(cfg, data, m, trials, storage)
        missing = sum(not store.is_done(s.key) for s in default_specs(cfg, data, m))
        cost = None if per is None else per * left + (rerun or 0) * (reruns + missing)
        total += cost or 0
        seeds = len(cfg.grid.seeds)
        lines.append(
            f"  {m:<12} {trials} trials x {epochs} epochs"
            + (f" ({left} left)" if left != trials else "")
            + f" + {seeds} re-runs x {full} epochs"
            + (f" ({reruns} left)" if reruns != seeds else "")
            + (f" + {missing} default runs the store lacks" if missing else "")
            + ": "
            + ("no run of it in the store to estimate from" if cost is None else f"~{cost / 3600:.2f} h")
        )
    return lines, total / 3600


def _left(cfg, data, method: str, trials: int, storage: str | None) -> tuple[int, int]:
    """Trials and best-configuration re-runs that the learner's study still needs."""
    name, seeds = study_name(data.slug, method), cfg.grid.seeds
    study = studydb.existing_study(name, storage)
    done = 0 if study is None else len(study.get_trials(deepcopy=False, states=studydb.FINISHED))
    if done < trials:
        return trials - done, len(seeds)
    params = tune._replay(method, study.best_trial.params)
    specs = [tune.trial_spec(cfg, data, method, params, s) for s in seeds]
    return 0, sum(not store.is_done(s.key) for s in specs)


def run(cfg, ds, methods: list[str], opts: CompareOptions, device, config_name: str | None = None) -> None:
    """Every learner's study (resumed if it exists) under `opts`, then its best configuration
    re-run. `config_name`: the config file the command read, recorded on each study for its page."""
    trials, prune = opts.trials, opts.prune
    for method in methods:  # every learner's checks first: a bad one fails before any study starts
        preflight.check(default_specs(cfg, ds, method), ds)
    for method in methods:
        name = study_name(ds.slug, method)
        study, url = studydb.open_study(name, opts.storage, multi=False, seed=opts.sampler_seed, prune=prune)
        if config_name:
            study.set_user_attr("config", config_name)
        print(f"study {name}: {trials} trials of {method}")
        if not study.trials:  # a new study: the defaults are its first trial
            params, why = space.default_params(cfg, ds, method)
            if params is None:
                print(f"  the defaults cannot be a trial: {why}")
            else:  # several workers may get here at once: enqueued once
                study.enqueue_trial(params, user_attrs={"default": True}, skip_if_exists=True)
        tune.optimize(
            study, url, trial_config(cfg, method, opts.trial_epochs), ds, method, trials, device, prune
        )
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            print(f"  {name}: trials still running on other workers; its re-runs are left to them")
            continue
        best = study.best_trial
        print(f"  best trial {best.number}: validation accuracy {best.value:.2%} {best.params}")
        rerun = _val(tune.rerun_best(study, cfg, ds, method, device))
        purpose = spec_.default(name)
        default = _val(runner.run_one(s, ds, device, purpose) for s in default_specs(cfg, ds, method))
        kept = choose(default, rerun)
        print(
            f"  full budget, validation linear: defaults {mean(default):.2%}, best trial {mean(rerun):.2%}:"
            f" {kept} kept"
        )
        print(f"  wrote {study_pages.write(study)}")


def stale_defaults(cfg, ds, methods: list[str]) -> list[str]:
    """Learners whose stored default runs were measured by an older evaluator: their validation
    accuracy is not comparable with the trials' (the old linear probe stopped short of its optimum)."""
    out = []
    for m in methods:
        for s in default_specs(cfg, ds, m):
            metrics = store.read_json(store.run_dir(s.key) / "metrics.json")
            if isinstance(metrics, dict) and "linear" in metrics and compat.stale(metrics):
                out.append(m)
                break
    return out


def default_specs(cfg, ds, method: str) -> list[RunSpec]:
    """The learner's default row over the seeds, under the compare's own config (the grid's runs
    when the config is the grid's: stored ones are reused). Run with purpose `default:<study>`,
    so the table pairs each study with the defaults of the same config, never another config's."""
    return [tune.trial_spec(cfg, ds, method, {}, seed) for seed in cfg.grid.seeds]


def _val(metrics) -> list[float]:
    return [m["linear"]["val_acc"] for m in metrics if m.get("status") == "ok"]


@dataclass(frozen=True)
class CompareOptions:
    """`bench compare`'s own flags, checked when made."""

    trials: int
    methods: tuple[str, ...] | None = None  # None: every trainable learner
    trial_epochs: int | float | None = None  # epochs per trial, or a share of each one's own budget
    max_hours: float | None = None  # refuse to start a plan larger than this
    storage: str | None = None
    prune: bool = True
    sampler_seed: int = 0

    def __post_init__(self):
        if not 1 <= self.trials <= tune.MAX_TRIALS:
            raise BenchError(f"--trials {self.trials}: give 1 to {tune.MAX_TRIALS:,} trials per learner")


def main(setup: Setup, opts: CompareOptions) -> None:
    """`bench compare`: print the plan (refused past --max-hours), tune every learner with the
    same budget, re-run the best configurations and write the dataset's tables."""
    from bench import report

    chosen = registry.resolve_all(opts.methods) if opts.methods else None  # outside learners first
    cfg = setup.resolve()
    if cfg.probe.dataset:
        raise BenchError(
            "studies tune in-domain: a transfer is `bench run --probe-dataset` of the tuned rows"
        )
    methods = learners(chosen)
    device = setup.pick_device()
    ds = setup.load(cfg)
    if stale := stale_defaults(cfg, ds, methods):
        raise BenchError(
            f"the default runs of {', '.join(stale)} on {ds.slug} were measured by an older evaluator, so "
            f"trials cannot be weighed against them: retrain them first (python -m bench verify --stale "
            f"--dataset {ds.slug} --adopt)"
        )
    lines, hours = plan(cfg, ds, methods, opts.trials, opts.trial_epochs, opts.storage)
    print(f"plan on {ds.provenance}, {len(methods)} learners:")
    print("\n".join(lines))
    print(f"  total ~{hours:.2f} h (learners with no run in the store to estimate from not counted)")
    if opts.max_hours is not None and hours > opts.max_hours:
        raise BenchError(
            f"the plan needs ~{hours:.2f} h, more than --max-hours {opts.max_hours:g}: "
            "lower --trials or --trial-epochs, or compare fewer --methods"
        )
    run(cfg, ds, methods, opts, device, setup.config_name())
    print(f"wrote {report.write(report.home(ds.slug, cfg.data.classes), store.load_runs())}")
