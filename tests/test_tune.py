"""Optuna studies: one SQLite study through the normal run path, and workers on PostgreSQL."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch

from bench import config, data, registry, store
from bench.__main__ import main
from bench.config import Config
from bench.report import tuned
from bench.store import claims, compat
from bench.studies import compare, space, studydb, tune

pytestmark = pytest.mark.slow  # Optuna studies through the run path, workers, PostgreSQL

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--set", "train.epochs=2", "--set", "methods.ae.channels=8,16", "--seeds", "0", "--latent-dim", "8"]


def _study(name, ds, trials=3):
    cfg = Config()
    cfg.train.epochs, cfg.grid.seeds, cfg.grid.latent_dims = 2, [0], [8]
    cfg.methods = {"ae": {"channels": (8, 16)}}
    study, url = studydb.open_study(name, None, multi=False, seed=0, prune=True)
    tune.optimize(study, url, cfg, ds, "ae", trials, torch.device("cpu"), prune=True)
    return study


def test_a_pruned_trial_leaves_nothing_in_the_store():
    """Its value lives on the study page; the run store keeps finished runs only."""
    cfg = Config()
    cfg.train.epochs, cfg.grid.seeds, cfg.grid.latent_dims = 2, [0], [8]
    cfg.methods = {"ae": {"channels": (8, 16)}}
    url = f"sqlite:///{studydb.studies_dir()}/pruned.db"
    studydb.studies_dir().mkdir(parents=True, exist_ok=True)
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # every accuracy is below: pruned at epoch 1
    study = optuna.create_study(study_name="pruned", storage=url, pruner=always)
    tune.optimize(study, url, cfg, data.load(cfg.data), "ae", 2, torch.device("cpu"), prune=True)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    keys = [t.user_attrs["run_key"] for t in study.trials]
    assert not any(store.run_dir(k).exists() for k in keys)
    folder = store.run_dir(keys[0])
    store.write_json(folder / "config.json", {"method": "ae"})
    with claims.claim(keys[0]) as mine:  # a live claim: whoever holds it is training the run
        assert mine
        store.discard_unfinished(keys[0])
        assert (folder / "config.json").exists()
    store.write_json(folder / "claim.lock", {})  # a claim file nobody holds: a killed process's
    store.discard_unfinished(keys[0])
    assert (folder / "config.json").exists() is False


def test_objective_never_reads_test_labels(tmp_path, monkeypatch, move_store):
    ds = data.load(config.DataConfig())
    values = _study("a", ds).trials
    move_store(results=str(tmp_path / "other"), cache=str(tmp_path / "other-cache"))
    gen = torch.Generator().manual_seed(0)
    ds.y_test = ds.y_test[torch.randperm(len(ds.y_test), generator=gen)]  # scrambled test labels
    scrambled = _study("a", ds).trials
    assert [t.values for t in values] == [t.values for t in scrambled]
    assert [t.params for t in values] == [t.params for t in scrambled]


def test_sqlite_study_lands_in_the_store_and_the_tables(capsys):
    assert main(["tune", "--method", "ae", "--trials", "3", *TINY]) == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "tuned re-run" in out
    page = (studydb.studies_dir() / "ae-digits.md").read_text()
    assert "- **Tuned:** ae, latent size 8, on digits; config configs/default.toml." in page
    progress = [line for line in out.splitlines() if line.startswith("trial ")]  # one per finished trial
    assert len(progress) == 3 and progress[-1].endswith("; 0 of 3 left") and "best so far" in progress[-1]
    study = optuna.load_study(
        study_name="ae-digits", storage=f"sqlite:///{studydb.studies_dir() / 'ae-digits.db'}"
    )
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert store.is_done(t.user_attrs["run_key"])
            m = store.load_json(store.run_dir(t.user_attrs["run_key"]) / "metrics.json")
            # a trial measures only what steers the study: no MLP, kNN or label efficiency
            assert m["steer_only"] and m["linear"]["val_acc"] == t.value and not compat.stale(m)
            assert not {"mlp", "knn", "label_efficiency", "rankme"} & set(m) and m["recon"] is None
    best = study.best_trial  # its seed-0 re-run shares the training, evaluated in full
    reruns = [r for r in store.load_runs() if "tuned:ae-digits" in r["config"]["purposes"]]
    rerun = next(r for r in reruns if r["config"]["seed"] == 0)
    trial_run = store.run_dir(best.user_attrs["run_key"]) / "config.json"
    assert store.keys(rerun["config"])[1] == store.keys(store.load_json(trial_run))[1]
    assert rerun["metrics"]["linear"]["val_acc"] == best.value  # the same score as the trial's
    assert "label_efficiency" in rerun["metrics"] and rerun["metrics"]["recon"]["psnr"] > 0
    capsys.readouterr()
    assert main(["evaluate", best.user_attrs["run_key"]]) == 0
    assert "measured only by what steers its study" in capsys.readouterr().out
    assert main(["runs"]) == 0
    page = (studydb.studies_dir() / "ae-digits.md").read_text()
    assert "Best configuration" in page and "## Trials" in page
    table = (store.results_dir() / "digits.md").read_text()
    assert "ae (tuned" in table
    assert main(["tune", "--method", "ae", "--trials", "3", *TINY]) == 0  # the cap is the study's
    assert len(optuna.load_study(study_name="ae-digits", storage=study._storage).trials) == 3
    assert main(["report"]) == 0


def test_workers_on_one_machine_share_a_sqlite_study(capsys, monkeypatch):
    """`--workers 3`: two helper processes and this one work on the same capped study."""
    import socket

    real, me = tune._run_trial, f"{socket.gethostname()}:{os.getpid()}"

    def after_a_helper(trial, *args, **kwargs):  # this process starts its first trial once a helper
        deadline = time.monotonic() + 300  # has one: the test does not race the helpers' start-up
        while time.monotonic() < deadline:
            if {t.user_attrs.get("worker") for t in trial.study.get_trials(deepcopy=False)} - {me, None}:
                break
            time.sleep(0.2)
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(tune, "_run_trial", after_a_helper)
    slower = ["--set", "train.epochs=15"]  # trials long enough for the helpers to start and join
    light = ["--config", str(ROOT / "tests" / "quick.toml")]  # the re-runs' evaluation: light
    args = ["tune", "--method", "ae", "--trials", "5", "--workers", "3", "--no-prune", *light, *TINY, *slower]
    assert main(args) == 0
    study = optuna.load_study(
        study_name="ae-digits", storage=f"sqlite:///{studydb.studies_dir() / 'ae-digits.db'}"
    )
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    assert len({t.user_attrs["worker"] for t in finished}) >= 2  # more than one process took trials
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 5  # distinct points
    out = capsys.readouterr().out
    assert out.count("best trial") == 1  # the tuned re-runs: once, by this process
    assert main(["tune", "--method", "ae", "--trials", "5", "--workers", "0", *TINY]) == 2


class _OtherWorkersFinishing:
    """A study in which another worker tells one running trial after every read of it."""

    study_name = "concurrent"

    def __init__(self):
        done, running = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING
        self.states = [done, done, done, running, running]

    def get_trials(self, deepcopy=False, states=None):
        snapshot = [SimpleNamespace(state=s) for s in self.states]
        running = optuna.trial.TrialState.RUNNING
        if running in self.states:
            self.states[self.states.index(running)] = optuna.trial.TrialState.COMPLETE
        return [t for t in snapshot if states is None or t.state in states]

    def ask(self):
        raise AssertionError("a trial asked past the cap")


def test_the_trial_cap_holds_while_other_workers_finish_trials(monkeypatch):
    """Finished and running trials are counted from one read: a trial told between two reads
    is in neither count, and the study went past its cap (6 of 5 with three workers)."""
    monkeypatch.setattr(optuna.storages, "fail_stale_trials", lambda study: None)
    monkeypatch.setattr(tune.time, "sleep", lambda s: None)
    study = _OtherWorkersFinishing()
    tune.optimize(study, "stub://", None, None, "ae", 5, torch.device("cpu"), prune=False)
    assert study.states.count(optuna.trial.TrialState.COMPLETE) == 5


def test_stale_trials_are_failed_and_queued_again_under_the_cap_lock(tmp_path, monkeypatch):
    """Optuna fails a dead worker's trial and queues its retry in two writes; a worker that
    counts between them sees neither, asks a fresh trial, and the retry is never run."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    checked = []

    def fail_stale_trials(study):  # "another worker" tries to take the cap lock meanwhile
        with open(tmp_path / "study.db.lock", "a") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        checked.append(True)

    monkeypatch.setattr(optuna.storages, "fail_stale_trials", fail_stale_trials)
    study = _OtherWorkersFinishing()
    study.states = [optuna.trial.TrialState.COMPLETE] * 5
    tune.optimize(study, url, None, None, "ae", 5, torch.device("cpu"), prune=False)
    assert checked == [True]


def test_multi_objective_study_plots_its_pareto_front(capsys):
    assert main(["tune", "--method", "ae", "--trials", "3", "--multi-objective", *TINY]) == 0
    page = (studydb.studies_dir() / "ae-digits-pareto.md").read_text()
    assert "Pareto front" in page and (studydb.studies_dir() / "ae-digits-pareto-pareto.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "pixels", "--trials", "2"], "pixels declares no search space"),
        (["--method", "ae", "--trials", "0"], "--trials 0"),
        (["--method", "simclr", "--trials", "2", "--multi-objective"], "simclr does not reconstruct"),
        (
            ["--method", "ae", "--trials", "2", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
            "cannot open study storage",
        ),
    ],
)
def test_tune_bad_input(args, message, capsys):
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_every_trainable_learner_is_tunable_and_baselines_say_when_they_are_not():
    for name in registry.names():
        assert registry.tunable(name) or not registry.get(name).trainable, name


POSTGRES = os.environ.get("BENCH_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="set BENCH_TEST_POSTGRES_URL (.ci/postgres.sh starts one)")
def test_workers_on_postgres_share_one_capped_study_and_survive_a_killed_worker(tmp_path):
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    n = 6
    env = dict(
        os.environ,
        BENCH_RESULTS_DIR=str(tmp_path / "results"),
        BENCH_CACHE_DIR=str(tmp_path / "c"),
        OMP_NUM_THREADS="1",
    )  # four workers share two cores: no thread oversubscription
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "tune",
        "--method",
        "ae",
        "--trials",
        str(n),
        "--storage",
        POSTGRES,
        "--study",
        name,
        "--no-prune",
        "--config",
        str(ROOT / "tests" / "quick.toml"),  # the re-runs' evaluation: light
        "--set",
        "train.epochs=6",
        "--set",
        "methods.ae.channels=8,16",
        "--seeds",
        "0",
        "--latent-dim",
        "8",
    ]

    def spawn():
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    victim = spawn()
    deadline = time.time() + 120
    victim_trial = None
    while victim_trial is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name=name, storage=POSTGRES)
        except KeyError:  # not created yet
            continue
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            # "run_key" is set once the trial has sampled its point: a kill before that would
            # leave the retry no parameters to repeat
            mine = t.user_attrs.get("worker", "").endswith(f":{victim.pid}")
            if mine and "run_key" in t.user_attrs:
                victim_trial = t.number
    assert victim_trial is not None, "the first worker never started a trial"
    victim.send_signal(signal.SIGKILL)  # dies in the middle of its trial
    victim.wait()
    workers = [spawn() for _ in range(3)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()[-2000:]

    trials = optuna.load_study(study_name=name, storage=POSTGRES).get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n
    points = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(points)) == len(points), "concurrent workers proposed the same point"
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    results = Path(env["BENCH_RESULTS_DIR"]) / "runs"
    assert all((results / t.user_attrs["run_key"] / "metrics.json").is_file() for t in complete)
    dead = next(t for t in trials if t.number == victim_trial)
    assert dead.state == optuna.trial.TrialState.FAIL
    retried = [
        t
        for t in trials
        if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim_trial
    ]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == dead.params


def test_compare_gives_every_learner_the_same_budget(capsys, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        "[train]\nepochs = 2\n[methods.all]\nchannels = [8, 16]\n[grid]\nlatent_dims = [8]\nseeds = [0]\n"
        + "[eval]"
        + (ROOT / "tests" / "quick.toml").read_text().split("[eval]", 1)[1]
    )  # the light evaluation of tests/quick.toml: what is compared here is the linear probe
    assert main(["run", "--config", str(cfg), "--methods", "ae,simclr"]) == 0  # the default rows
    args = ["compare", "--config", str(cfg), "--methods", "ae,simclr", "--trials", "2", "--trial-epochs", "1"]
    assert main([*args, "--max-hours", "0.0000001"]) == 2  # the plan, from the stored runs' times
    assert "more than --max-hours" in capsys.readouterr().err
    assert main([*args, "--no-prune"]) == 0
    out = capsys.readouterr().out
    assert "plan on" in out and out.count("2 trials x 1 epochs + 1 re-runs x 2 epochs") == 2
    for method in ("ae", "simclr"):
        url = f"sqlite:///{studydb.studies_dir() / f'compare-digits-{method}.db'}"
        study = optuna.load_study(study_name=f"compare-digits-{method}", storage=url)
        assert len([t for t in study.trials if t.state.is_finished()]) == 2
        first = study.trials[0]  # the defaults are a trial of their own study, counted in the budget
        page = (studydb.studies_dir() / f"compare-digits-{method}.md").read_text()
        assert "| 0       | complete (defaults) " in page
        assert (
            first.user_attrs["default"]
            and first.params
            == space.default_params(config.load(str(cfg)), data.load(config.DataConfig()), method)[0]
        )
    runs = store.load_runs()
    trials = [r for r in runs if any(p.startswith("trial:compare-") for p in r["config"]["purposes"])]
    tuned = [r for r in runs if any(p.startswith("tuned:compare-") for p in r["config"]["purposes"])]
    assert len(trials) == 4 and {r["config"]["train"]["epochs"] for r in trials} == {1}
    assert {r["config"]["method"] for r in tuned} == {"ae", "simclr"}
    assert {r["config"]["train"]["epochs"] for r in tuned} == {2}  # re-runs at the full budget
    defaults = [r for r in runs if any(p.startswith("default:compare-") for p in r["config"]["purposes"])]
    assert {(r["config"]["method"], r["config"]["overrides"] == {}) for r in defaults} == {
        ("ae", True),
        ("simclr", True),
    }  # the `run` above made them: reused, marked, not retrained
    page = (store.results_dir() / "digits.md").read_text()
    section = page.split("## Tuned at equal budget")[1].split("\n## ")[0]
    assert "| ae " in section and "| simclr " in section and "Rank changes" in section
    for r in defaults:  # the default column is these runs' validation accuracy, not another row's
        row = next(line for line in section.splitlines() if line.startswith(f"| {r['config']['method']} "))
        assert f"{r['metrics']['linear']['val_acc'] * 100:.2f} /" in row
    # A resumed compare plans only what is left: nothing here, one trial each at --trials 3; and
    # planning a learner with no study creates none
    tiny, digits = config.load(str(cfg)), data.load(config.DataConfig())
    lines, hours = compare.plan(tiny, digits, ["ae", "simclr"], 2, 1)
    assert hours == 0 and all("(0 left) + 1 re-runs x 2 epochs (0 left):" in line for line in lines)
    lines, hours = compare.plan(tiny, digits, ["ae", "simclr", "dae"], 3, 1)
    assert lines[0].startswith("  ae           3 trials x 1 epochs (1 left) + 1 re-runs x 2 epochs:")
    assert hours > 0 and not (studydb.studies_dir() / "compare-digits-dae.db").exists()
    assert main(["compare", "--methods", "pca", "--trials", "2"]) == 2  # a baseline is a floor
    # a default row measured by an older evaluator cannot be weighed against the trials: refused
    capsys.readouterr()
    simclr = next(r["key"] for r in defaults if r["config"]["method"] == "simclr")
    path = store.run_dir(simclr) / "metrics.json"
    old = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "rankme"}))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "default runs of simclr on digits were measured by an older evaluator" in err
    assert "bench verify --stale --dataset digits --adopt" in err and "Traceback" not in err


def test_trial_budget_as_a_share_of_each_learners_own(capsys):
    cfg = config.load(str(ROOT / "configs" / "cifar10.toml"))  # views train 40 epochs, the rest 10
    assert compare.trial_config(cfg, "simclr", 0.25).train_for("simclr").epochs == 10
    assert compare.trial_config(cfg, "ae", 0.25).train_for("ae").epochs == 2  # round(2.5), even
    assert compare.trial_config(cfg, "ae", 0.01).train_for("ae").epochs == 1  # never 0
    assert compare.trial_config(cfg, "simclr", 5).train_for("simclr").epochs == 5
    assert cfg.train_for("simclr").epochs == 40  # the re-runs' budget is untouched
    for bad in ("0", "0%", "150%", "-3", "five"):
        with pytest.raises(SystemExit) as e:
            main(["compare", "--trials", "2", "--trial-epochs", bad])
        assert e.value.code == 2 and "--trial-epochs: expected epochs" in capsys.readouterr().err


def test_compare_keeps_a_best_trial_only_if_it_beats_the_defaults_on_validation():
    assert tuned.choose([0.90, 0.92], [0.93, 0.95]) == "best trial"
    assert tuned.choose([0.93, 0.95], [0.90, 0.92]) == "defaults"
    assert tuned.choose([0.91], [0.91]) == "defaults"  # a tie keeps what needed no search
    assert tuned.choose([140 / 144, 142 / 144], [float(torch.tensor(141 / 144)), 141 / 144]) == "defaults"
    assert tuned.choose([], [0.5]) == "best trial" and tuned.choose([0.5], []) == "defaults"


@pytest.mark.parametrize("path", [None, *sorted(str(p) for p in (ROOT / "configs").glob("*.toml"))])
def test_every_learners_defaults_are_a_point_of_its_search_space(path):
    """So `bench compare` can start each study from the defaults, under every shipped config."""
    cfg = config.load(path)
    ds = data.load(config.DataConfig())  # the data does not enter the defaults
    for name in [n for n in registry.names() if registry.get(n).trainable]:
        params, why = space.default_params(cfg, ds, name)
        assert params is not None, f"{name} under {path}: {why}"
        replayed = tune._replay(name, params)  # the defaults, read back through the space
        spec = tune.trial_spec(cfg, ds, name, replayed, seed=0, steer_only=True)
        assert spec.method_config == tune.trial_spec(cfg, ds, name, {}, 0).method_config
        assert spec.train == tune.trial_spec(cfg, ds, name, {}, 0).train


def test_defaults_outside_the_space_are_named_not_enqueued():
    cfg = Config()
    cfg.methods = {"vae": {"beta": 20.0}, "simclr": {"crop_scale": (0.2, 0.9)}}
    ds = data.load(cfg.data)
    params, why = space.default_params(cfg, ds, "vae")
    assert params is None and "beta=20.0 lies outside its search range" in why
    params, why = space.default_params(cfg, ds, "simclr")
    assert params is None and "crop_scale=0.2,0.9 is not a point of the space" in why


def test_compare_plan_never_counts_negative_evaluation_time():
    def run(metrics):
        config = {"dataset": {"slug": "digits"}, "method": "ae"}
        return {"config": config, "metrics": {"train": {"epochs": 10, "time_s": 20.0}, **metrics}}

    trained = run({"wall_time_s": 23.0})  # trained here: 20 s training + 3 s evaluation
    reevaluated = run({"wall_time_s": 3.0})  # from a cached checkpoint: all of it evaluation
    recorded = run({"wall_time_s": 3.0, "eval_time_s": 2.5, "from_checkpoint": True})
    assert compare.seconds_per_trial([trained], "digits", "ae", 5) == pytest.approx(10 + 3)
    assert compare.seconds_per_trial([reevaluated], "digits", "ae", 5) == pytest.approx(10 + 3)
    assert compare.seconds_per_trial([recorded], "digits", "ae", 5) == pytest.approx(10 + 2.5)
    assert compare.seconds_per_trial([trained], "mnist", "ae", 5) is None
    # runs evaluated like a trial (eval.steer_only) give a trial's evaluation time, when there are any
    trial = run({"wall_time_s": 20.5, "eval_time_s": 0.5, "steer_only": True})
    estimate = compare.seconds_per_trial
    assert estimate([recorded, trial], "digits", "ae", 5, steer_only=True) == pytest.approx(10.5)
    assert estimate([recorded, trial], "digits", "ae", 5) == pytest.approx(12.5)
    assert estimate([recorded], "digits", "ae", 5, steer_only=True) == pytest.approx(12.5)
