"""The evaluator a reviewer can check: label efficiency, RankMe, export, runs, verify, and the
report's flags (undertrained against PCA, uncommitted code)."""

import csv
import dataclasses
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import config, data, store
from bench.__main__ import main
from bench.evaluators import Context, label_efficiency, linear, rankme
from bench.run import env, evaluate, runner
from bench.store import compat

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config", str(ROOT / "tests" / "tiny.toml"), "--seeds", "0", "--latent-dims", "8"]
TINY += ["--set", "train.epochs=1"]


def test_balanced_subsets_are_balanced_seeded_and_shared():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = label_efficiency.balanced_subset(y, 0.1, draw=0)
    assert torch.bincount(y[idx]).tolist() == [5, 3, 2]
    assert torch.equal(idx, label_efficiency.balanced_subset(y, 0.1, draw=0))  # every learner: same images
    assert not torch.equal(idx, label_efficiency.balanced_subset(y, 0.1, draw=1))
    assert torch.bincount(y[label_efficiency.balanced_subset(y, 0.001, 0)]).tolist() == [1, 1, 1]  # >= 1 each


def test_rankme_spans_collapsed_to_full_rank():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(4000, 16, generator=g)
    assert 15 < rankme.rankme(full) <= 16
    line = torch.randn(4000, 1, generator=g) * torch.randn(1, 16, generator=g)
    assert rankme.rankme(line) < 1.1
    two = torch.cat([full[:, :2] * 10, full[:, 2:] * 1e-6], 1)
    assert 1.8 < rankme.rankme(two) < 2.1


def test_label_efficiency_probe_sees_only_the_subset():
    """With one labelled image per class, kNN with k=1 predicts the label of the nearest of
    those few: on well separated clusters that is still perfect, and the subset size is stored."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 10
    y = {s: torch.arange(4).repeat(n) for s, n in (("train", 50), ("val", 10), ("test", 10))}
    z = {s: centers[v] + torch.randn(len(v), 8, generator=g) for s, v in y.items()}
    cfg = config.EvalConfig(label_fractions=[0.02, 0.5], label_draws=3)
    out = label_efficiency.label_efficiency(Context(evaluate.standardize(z), z, y, 4, cfg, 0))
    assert out["0.02"]["labels"] == 4 and out["0.5"]["labels"] == 100
    assert len(out["0.02"]["knn"]) == 3 and min(out["0.5"]["linear"]) == 1.0


def test_old_runs_keep_their_keys_and_names():
    """Fields added to the evaluator later leave stored runs' keys and row names as they were."""
    ds = data.load(config.DataConfig())
    spec = runner.spec(config.Config(), ds, "ae", {"latent_dim": 8}, 0).json()
    old = json.loads(json.dumps(spec))
    for section in ("train", "eval"):
        for k in compat.later_defaults(section):
            old[section].pop(k)
    assert store.keys(old) == store.keys(spec)
    compiled = json.loads(json.dumps(spec))
    compiled["train"]["compile"] = True  # compiled kernels may differ in the last bits: a new run
    assert store.keys(compiled)[1] != store.keys(spec)[1]
    changed = json.loads(json.dumps(spec))
    changed["eval"]["label_draws"] = 2
    assert store.keys(changed)[0] != store.keys(spec)[0]
    assert store.keys(changed)[1] == store.keys(spec)[1]  # the same trained weights


def test_later_fields_are_frozen_at_the_default_they_were_added_with(monkeypatch):
    """Changing a later field's default gives new runs new keys; stored runs keep theirs."""
    ds = data.load(config.DataConfig())
    spec = runner.spec(config.Config(), ds, "ae", {"latent_dim": 8}, 0).json()
    for section in ("data", "train", "eval"):  # every field is keyed in full or frozen in LATER
        fields = set(config.to_dict({"data": config.DataConfig, "train": config.TrainConfig,
                                     "eval": config.EvalConfig}[section]()))  # fmt: skip
        assert fields - set(compat.KEYED[section]) == set(compat.LATER[section]), section
    stored = store.keys(spec)

    @dataclasses.dataclass
    class Eval(config.EvalConfig):  # a later default changed: 2 label draws where runs had 5
        label_draws: int = 2

    @dataclasses.dataclass
    class Train(config.TrainConfig):
        bf16: bool = True

    monkeypatch.setattr(config, "EvalConfig", Eval)
    monkeypatch.setattr(config, "TrainConfig", Train)
    cfg = config.Config(train=Train(), eval=Eval())
    new = runner.spec(cfg, ds, "ae", {"latent_dim": 8}, 0).json()
    assert new["eval"]["label_draws"] == 2 and new["train"]["bf16"] is True
    assert store.keys(new)[0] != stored[0] and store.keys(new)[1] != stored[1]
    assert store.keys(spec) == stored  # the stored run's spec still hashes to its key
    assert compat.settings("eval", {})["label_draws"] == 5  # what a run stored without it ran with


@pytest.mark.slow
def test_report_runs_export_and_verify(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(env, "git_sha", lambda: "abc1234")  # as from a clean checkout
    assert main(["run", *TINY, "--methods", "ae,pca,simclr"]) == 0
    runs = {r["config"]["method"]: r for r in store.load_runs()}
    m = runs["ae"]["metrics"]
    assert m["rankme"] <= 8 and set(m["label_efficiency"]) == {"0.01", "0.1"}
    assert len(m["label_efficiency"]["0.1"]["linear"]) == 5
    page = (store.results_dir() / "digits.md").read_text()
    assert "## Label efficiency" in page and "linear 1% (10)" in page and "RankMe" in page
    assert (store.results_dir() / "digits-label-efficiency.png").stat().st_size > 1000
    # one epoch of the autoencoder reconstructs worse than PCA at the same size: flagged
    ae_row = next(line for line in page.splitlines() if line.startswith("| ae "))
    pca_row = next(line for line in page.splitlines() if line.startswith("| pca "))
    assert "(< PCA)" in ae_row and "(< PCA)" not in pca_row

    csv_path = tmp_path / "runs.csv"
    assert main(["runs", "--csv", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["method"] for r in rows} == {"ae", "pca", "simclr"}
    ae = next(r for r in rows if r["method"] == "ae")
    assert float(ae["linear"]) == pytest.approx(m["linear"]["test_acc"])
    assert json.loads(ae["overrides"]) == {"train.epochs": 1}
    assert ae["key"] == runs["ae"]["key"] and ae["git_sha"] and "linear@0.01" in ae
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 3

    key = runs["ae"]["key"]
    out = tmp_path / "ae.npz"
    assert main(["export", key[:6], "--out", str(out)]) == 0
    f = np.load(out)
    ds = data.load(config.DataConfig())
    assert f["z_train"].shape == (len(ds.x_train), 8) and np.array_equal(f["y_test"], ds.y_test.numpy())
    assert str(f["run_key"]) == key and "scikit-learn digits" in str(f["provenance"])
    assert json.loads(str(f["config"]))["method"] == "ae" and len(f["classes"]) == 10
    card = {line["evaluator"]: line for line in json.loads(str(f["protocol"]))}  # audited when measured
    assert card["linear"]["reads"] == 1 and card["linear"]["audited"] and json.loads(ae["protocol"])
    cached = f["z_test"].copy()
    for sub in ("latents", "ckpt"):  # another machine: no cache of this run
        for p in (store.cache_dir() / sub).glob("*.pt"):
            p.unlink()
    capsys.readouterr()
    assert main(["export", key, "--out", str(out)]) == 2
    assert "--retrain" in capsys.readouterr().err
    assert main(["export", key, "--out", str(out), "--retrain"]) == 0
    assert np.array_equal(np.load(out)["z_test"], cached)  # retraining reproduces the latents

    # verify: identical on this machine; a tampered stored number is caught and --adopt heals it
    assert main(["verify", "--dataset", "digits", "--tolerance", "0"]) == 0
    assert "3 identical" in capsys.readouterr().out
    path = store.run_dir(key) / "metrics.json"
    tampered = json.loads(path.read_text())
    tampered["linear"]["test_acc"] -= 0.05
    tampered["env"]["git_sha"] = "abc1234-dirty"
    tampered["train"]["time_s"] = 12345.0  # the time measured when the run was made
    path.write_text(json.dumps(tampered))
    assert "ae (train.epochs=1) †" in main_table_after_report()
    assert main(["verify", "--uncommitted"]) == 1
    out_ = capsys.readouterr()
    assert "OVER" in out_.out and "1 of 1 run(s) differ" in out_.err and "(recomputed earlier)" in out_.out
    assert main(["verify", key, "--adopt"]) == 1  # reports the difference, then replaces the run
    assert json.loads(path.read_text())["linear"]["test_acc"] == pytest.approx(m["linear"]["test_acc"])
    assert "1 run(s) reproduced their training exactly" in capsys.readouterr().out
    kept = json.loads(path.read_text())["train"]  # the same losses: the stored time stands
    assert kept["time_s"] == 12345.0 and kept["reproduced"] is True
    other = json.loads(path.read_text())
    other["train"]["loss_per_epoch"] = [9.0]  # a training that did not reproduce: all of it is new
    path.write_text(json.dumps(other))
    assert main(["verify", key, "--adopt"]) == 0
    assert json.loads(path.read_text())["train"]["time_s"] != 12345.0
    assert main(["verify", key]) == 0 and "†" not in main_table_after_report()

    # a run from an older evaluator (linear probe before preconditioning) is marked and re-measured
    pca_path = store.run_dir(runs["pca"]["key"]) / "metrics.json"
    old = json.loads(pca_path.read_text())
    del old["linear"]["solver"], old["evaluators"]  # as stored before versions were recorded
    pca_path.write_text(json.dumps(old))
    assert "pca ‡" in main_table_after_report()
    capsys.readouterr()
    assert main(["verify", "--stale", "--adopt"]) == 0
    assert "1 identical" in capsys.readouterr().out  # only that run was chosen
    assert json.loads(pca_path.read_text())["linear"]["solver"] == linear.SOLVER
    assert "‡" not in main_table_after_report()
    assert main(["verify", "--stale"]) == 2  # nothing stale is left
    assert main(["verify", "--dataset", "digits", "--seeds", "7"]) == 2
    assert main(["verify", "--dataset", "digits", "--seeds", "x"]) == 2
    capsys.readouterr()
    assert main(["verify", "--dataset", "digits", "--seeds", "0"]) == 0
    assert "3 identical" in capsys.readouterr().out


def main_table_after_report() -> str:
    assert main(["report"]) == 0
    return (store.results_dir() / "digits.md").read_text().split("## Linear probe")[0]


def test_verify_needs_a_choice_of_runs(capsys):
    assert main(["verify"]) == 2
    assert "choose the runs" in capsys.readouterr().err
    assert main(["verify", "--dataset", "nothing-here"]) == 2


def _cifar100_files(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    """Tiny CIFAR-100 in the exact python-pickle format torchvision downloads."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = (np.arange(n) % 100).tolist()
        entry = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{name} batch",
            "fine_labels": fine,
            "coarse_labels": [f % 20 for f in fine],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_cifar100_reads_the_torchvision_format(tmp_path, capsys):
    _cifar100_files(tmp_path)
    fine = data.load(config.DataConfig("cifar100", val_fraction=0.25), str(tmp_path), offline=True)
    assert fine.x_train.shape[1:] == (3, 32, 32) and len(fine.classes) == 100
    assert fine.classes[3] == "fine3" and len(fine.x_train) + len(fine.x_val) == 40
    raw = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes())
    first = torch.from_numpy(raw["data"][0].reshape(3, 32, 32))
    assert any(torch.equal(first, x) for x in fine.x_train) or any(torch.equal(first, x) for x in fine.x_val)
    coarse = data.load(config.DataConfig("cifar100-coarse", val_fraction=0.25), str(tmp_path), offline=True)
    assert len(coarse.classes) == 20 and int(coarse.y_test.max()) == 19
    assert torch.equal(coarse.x_test, fine.x_test) and torch.equal(coarse.y_test, fine.y_test % 20)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--dataset", "cifar100", "--data-dir", str(empty), "--offline"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CIFAR-100 not found" in err and "--data-dir" in err
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"\x80\x02garbage")
    assert main(["run", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--offline"]) == 2
    assert "unreadable" in capsys.readouterr().err


class _Payload:
    """What a crafted data file would hold: unpickling it calls a function of the attacker's."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_asks_to_run_code_is_refused_and_runs_nothing(tmp_path, capsys):
    _cifar100_files(tmp_path)
    marker = tmp_path / "ran"
    train = tmp_path / "cifar-100-python" / "train"
    entry = pickle.loads(train.read_bytes())
    train.write_bytes(pickle.dumps({**entry, "batch_label": _Payload(marker)}, protocol=2))
    assert pickle.loads(pickle.dumps(_Payload(tmp_path / "probe"))) == 0  # the payload does run...
    assert (tmp_path / "probe").exists()
    assert main(["run", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--offline"]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()  # ...but not from a data folder
    assert err.count("\n") == 0 and "posix.system" in err and "refused" in err and str(train) in err
    assert not list(store.results_dir().glob("runs/*"))
    for protocol in (2, 4, 5):  # the genuine format, however it was pickled, still reads
        train.write_bytes(pickle.dumps(entry, protocol=protocol))
        cifar = data.load(config.DataConfig("cifar100", val_fraction=0.25), str(tmp_path), offline=True)
        assert len(cifar.classes) == 100


def test_verify_trained_in_compares_exactly_the_runs_that_store_holds(
    tmp_path, capsys, monkeypatch, move_store
):
    """What `make bench` does: train a grid into a scratch store, then compare those runs, and
    only those, with the committed runs of the same keys; nothing is retrained."""
    quick = ["run", "--config", str(ROOT / "tests" / "quick.toml")]
    assert main([*quick, "--methods", "pixels,pca", "--seeds", "0,1"]) == 0  # the committed store
    committed = store.results_dir()
    scratch = tmp_path / "scratch"
    move_store(results=str(scratch))
    assert main([*quick, "--methods", "pixels,pca,random", "--seeds", "0"]) == 0  # random: not committed
    trained = {r["key"] for r in store.load_runs()}
    move_store(results=committed)
    capsys.readouterr()
    assert main(["verify", "--trained-in", str(scratch), "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 run(s): 2 within 0.0 points (PSNR 0.5 dB), 0 past it, 1 with no committed run" in out
    shown = {line.split()[1] for line in out.splitlines() if line.startswith("[")}
    assert shown == {k[:8] for k in trained} and len(store.load_runs()) == 4  # the store's 4: untouched
    pca = next(r for r in store.load_runs() if r["config"]["method"] == "pca" and r["config"]["seed"] == 0)
    path = store.run_dir(pca["key"]) / "metrics.json"
    m = json.loads(path.read_text())
    m["linear"]["test_acc"] -= 0.1
    m["env"]["cpu_model"] = "Another CPU"
    path.write_text(json.dumps(m))
    assert main(["verify", "--trained-in", str(scratch), "--tolerance", "5"]) == 1
    out = capsys.readouterr().out
    assert "OVER in linear; the environment differs in cpu_model (Another CPU -> " in out
    loose = ["--tolerance", "5", "--metric-tolerance", "linear=11"]  # one metric's own tolerance
    assert main(["verify", "--trained-in", str(scratch), *loose]) == 0
    assert "2 within 5.0 points (PSNR 0.5 dB, linear 11)" in capsys.readouterr().out
    assert main(["verify", "--trained-in", str(tmp_path / "empty")]) == 2


def test_verify_counts_runs_it_could_not_compare_and_fails_if_it_compared_nothing(capsys, monkeypatch):
    from bench.run import verify

    quick = ["run", "--config", str(ROOT / "tests" / "quick.toml")]
    assert main([*quick, "--methods", "pixels,pca"]) == 0
    pixels, pca = sorted(store.load_runs(), key=lambda r: r["config"]["method"] != "pixels")
    path = store.run_dir(pca["key"]) / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "linear": "x"}))  # parses, fails the schema
    capsys.readouterr()
    assert main(["verify", "--dataset", "digits", "--tolerance", "0"]) == 0  # pixels compared
    captured = capsys.readouterr()
    assert "1 stored run(s) cannot be read or fail the schema (warned above): not compared" in captured.out
    assert f"{store.run_dir(pca['key'])}: " in captured.err and "Traceback" not in captured.err
    monkeypatch.setattr(verify, "recompute", lambda *a, **k: ({"status": "diverged", "error": "nan"}, False))
    assert main(["verify", pixels["key"]]) == 1  # recomputed, but nothing to compare: not a pass
    assert "compared nothing" in capsys.readouterr().err
