"""The evaluator's fast paths give the reference implementations' answers (results/speed.md times
them): the hand-written L-BFGS probe is scikit-learn's LogisticRegression at the same objective,
and the batched cosine kNN is scikit-learn's KNeighborsClassifier."""

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.evaluators import knn, linear

sklearn = pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent


def _blobs(n, d, k, seed, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * spread
    y = torch.randint(0, k, (n,), generator=g)
    return means[y] + torch.randn(n, d, generator=g), y


@pytest.mark.parametrize("wd", [1e-2, 1e-4])
def test_linear_probe_is_sklearn_logistic_regression(wd):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(3000, 24, 6, seed=0, spread=0.4)
    xt, yt = _blobs(2000, 24, 6, seed=1, spread=0.4)
    x, xt = x.double(), xt.double()  # float64 on both sides: the comparison is of solvers, not rounding
    w = linear.fit_logreg(x, y, 6, wd, 1000)
    # ours: mean log-loss + wd/2 ||W||^2; sklearn: C * summed log-loss + 1/2 ||W||^2
    clf = LogisticRegression(C=1 / (wd * len(x)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    ours = linear.logits(xt, w).argmax(1).numpy()
    theirs = clf.predict(xt.numpy())
    assert (ours == theirs).mean() >= 0.995
    assert abs((ours == yt.numpy()).mean() - (theirs == yt.numpy()).mean()) <= 0.003
    # the same optimum: both parametrisations are over-complete in the same way (K weight vectors)
    np.testing.assert_allclose(w[:-1].numpy(), clf.coef_.T, atol=2e-3 * np.abs(clf.coef_).max())


def test_linear_probe_differs_from_sklearn_at_another_strength():
    """The comparison above can fail: ten times the L2 strength is a different model."""
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(3000, 24, 6, seed=0, spread=0.4)
    w = linear.fit_logreg(x.double(), y, 6, 1e-1, 1000)
    clf = LogisticRegression(C=1 / (1e-2 * len(x)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    assert np.abs(w[:-1].numpy() - clf.coef_.T).max() > 2e-3 * np.abs(clf.coef_).max()


@pytest.mark.parametrize(("k", "classes"), [(5, 2), (20, 10)])
def test_knn_is_sklearn_cosine_knn(k, classes):
    """Every prediction is one of scikit-learn's most-voted classes, and is scikit-learn's wherever
    the vote has one winner (ties: scikit-learn takes the lowest label, the project the class of
    the closer neighbours). Two classes and odd k cannot tie: all predictions are the same."""
    from sklearn.neighbors import KNeighborsClassifier

    bank, bank_y = _blobs(4000, 32, classes, seed=2, spread=0.3)
    query, _ = _blobs(1000, 32, classes, seed=3, spread=0.3)
    labels, sims = knn.votes(query, bank, bank_y, k, classes)
    ours = knn.predict(labels, sims, k, classes).numpy()
    clf = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(bank.numpy(), bank_y.numpy())
    theirs = clf.predict(query.numpy())
    idx = clf.kneighbors(query.numpy(), return_distance=False)
    votes = np.stack([np.bincount(bank_y.numpy()[i], minlength=classes) for i in idx])
    winners = votes == votes.max(1, keepdims=True)
    assert winners[np.arange(len(ours)), ours].all()
    unique = winners.sum(1) == 1
    assert unique.mean() > 0.5
    assert (ours[unique] == theirs[unique]).all()
    if classes == 2:
        assert (ours == theirs).all()


def test_knn_neighbours_are_sklearns():
    from sklearn.neighbors import NearestNeighbors

    bank, bank_y = _blobs(500, 16, 3, seed=4)
    query, _ = _blobs(50, 16, 3, seed=5)
    _, sims = knn.votes(query, bank, bank_y, 7, 3)
    dist, _ = NearestNeighbors(n_neighbors=7, metric="cosine").fit(bank.numpy()).kneighbors(query.numpy())
    np.testing.assert_allclose(sims.numpy(), 1 - dist, atol=1e-5)


def test_gpu_smoke_without_cuda_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    from bench.tools import gpu_smoke

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "speed.md"
    assert gpu_smoke.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "CUDA" in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing is written on a machine that measured nothing


def test_make_bench_speed_keeps_what_other_commands_measured():
    """`make bench-speed` rewrites its own table and targets; every other section of
    results/speed.md (make bench, make test, the maps, the GPU) is carried over as it was."""
    from bench.tools import speed

    old = "# Speed\n\n| old table |\n\n## Targets\n\nold\n\n## make test on a fresh clone\n\n346 s\n"
    old += "\n## GPU\n\nmeasured\n"
    kept = speed.carried(old)
    assert "346 s" in kept and "measured" in kept and "old table" not in kept and "## Targets" not in kept
    assert "## make bench from an empty store\n\nNot measured yet" in kept  # a placeholder


def test_speed_sections_are_replaced_in_place(tmp_path):
    from bench.tools import speed

    path = tmp_path / "speed.md"
    path.write_text("# Speed\n\ntable\n\n## GPU\n\nNot run yet.\n\n## Other\n\nkept\n")
    speed.replace_section(path, "## GPU\n\nmeasured\n", "## GPU")
    text = path.read_text()
    assert text == "# Speed\n\ntable\n\n## GPU\n\nmeasured\n\n## Other\n\nkept\n"
    assert speed.section(text, "## GPU") == "## GPU\n\nmeasured\n\n"
    assert speed.section(text, "## Missing") is None
    speed.replace_section(path, "## New\n\nappended\n", "## New")
    assert path.read_text().endswith("## Other\n\nkept\n\n## New\n\nappended\n")


def _tiny_rgb32(tmp_path) -> str:
    """A CIFAR-shaped dataset (32x32 RGB, 10 classes) small enough to train in seconds."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny32.npz"
    x_train, x_test = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (80, 40))
    np.savez(path, x_train=x_train, y_train=np.arange(80) % 10, x_test=x_test, y_test=np.arange(40) % 10)
    return f"npz:{path}"


QUICK_EVAL = tomllib.loads((ROOT / "tests" / "quick.toml").read_text())["eval"]


@pytest.mark.slow
def test_the_gpu_configs_code_path_trains_and_evaluates_on_a_cpu(tmp_path):
    """configs/cifar10-gpu.toml as it is (ResNet-18 view-based learners, the autoencoders' 256x2x2
    spatial bottleneck on 64/128/256/256 channels), cut to one epoch of tiny batches, with bf16
    autocast where this CPU has bf16 kernels (emulated elsewhere: ~10x slower, fp32 then) and
    channels-last: the runs the GPU grid makes, through the same runner, here."""
    from bench import config, data
    from bench.run import env, preflight, runner

    bf16 = str(env.native_bf16(torch.device("cpu"))).lower()
    sets = ["train.epochs=1", "train.batch_size=16", "train.warmup_epochs=0", f"train.bf16={bf16}"]
    sets += ["grid.methods=simclr,ae", f"data.name={_tiny_rgb32(tmp_path)}"]
    sets += [f"eval.{k}={v}" for k, v in QUICK_EVAL.items()]  # every evaluator, on the least work
    cfg = config.load(ROOT / "configs" / "cifar10-gpu.toml", sets)
    ds = data.load(cfg.data)
    specs = preflight.check(runner.specs(cfg, ds), ds)  # what `bench run --config ...` runs
    assert {(s.method, s.method_config.get("backbone"), s.method_config["latent_dim"]) for s in specs} == {
        ("simclr", "resnet18", 512),
        ("ae", None, 1024),
    }
    for spec in specs:
        m = runner.run_one(spec, ds, torch.device("cpu"))
        assert m["status"] == "ok" and m["encoder_unchanged"], spec.method
        assert m["latent_dim"] == spec.method_config["latent_dim"] and 0 <= m["linear"]["test_acc"] <= 1
        assert np.isfinite(m["train"]["loss_per_epoch"][-1])


@pytest.mark.slow
def test_the_gpu_smoke_runs_its_whole_path_on_a_cpu(tmp_path, capsys):
    from bench.tools import gpu_smoke

    args = ["--device", "cpu", "--epochs", "1", "--batch-size", "16", "--dataset", _tiny_rgb32(tmp_path)]
    assert gpu_smoke.main(args) == 0
    out = capsys.readouterr().out
    assert "## GPU" in out and "| simclr " in out and "| ae " in out and "resnet18" in out
    assert "| 1024 " in out  # the grid's AE: 256x2x2, not the learner's default latent
    assert not (tmp_path / "speed.md").exists()  # a CPU run writes nothing unless asked


@pytest.mark.slow
def test_the_gpu_grid_runs_for_its_minutes_and_a_second_call_resumes_it(tmp_path, capsys, monkeypatch):
    """--grid-minutes: the 200-epoch grid of configs/cifar10-gpu.toml stopped at its deadline
    like Ctrl-C (resume state kept, nothing half-stored), and continued by the same command. The
    deadline's alarm is sent at a known epoch here (the test would otherwise hang on the CPU's
    speed), through the handler the grid installs."""
    import os
    import signal

    from bench import store
    from bench.run import train
    from bench.tools import gpu_smoke

    real, stop_after = train.fit, []

    def fit(*args, **kw):  # runner.compute's call, with an on_epoch that sends the alarm
        def alarm(epoch, model):
            if epoch + 1 == stop_after[-1]:
                os.kill(os.getpid(), signal.SIGALRM)

        return real(*args, **{**kw, "on_epoch": alarm})

    monkeypatch.setattr(train, "fit", fit)
    monkeypatch.setattr(train, "RESUME_EVERY_S", 0.0)  # a state after every epoch
    args = ["--device", "cpu", "--batch-size", "16", "--dataset", _tiny_rgb32(tmp_path), "--no-smoke"]
    args += ["--grid-methods", "ae", "--grid-minutes", "30"]
    stop_after.append(2)
    assert gpu_smoke.main(args) == 0
    out = capsys.readouterr().out
    assert "0 run(s) finished" in out and "after epoch 2 " in out, out
    (state,) = store.cache_dir().glob("resume/*.pt")
    assert torch.load(state, weights_only=True)["epoch"] == 2 and not store.load_runs()
    stop_after.append(3)
    assert gpu_smoke.main(args) == 0
    assert "resumed after epoch 2/200" in capsys.readouterr().err
    assert torch.load(state, weights_only=True)["epoch"] == 3
