"""Transfer: trained on one dataset (or some of its classes), probed on another's labels."""

import json
from pathlib import Path

import pytest
import torch

from bench import BenchError, config, data, store
from bench.__main__ import main
from bench.data import probes
from bench.report import sections, transfer
from bench.run import runner

ROOT = Path(__file__).resolve().parent.parent


def test_adapt_resizes_and_converts_channels_by_its_rule():
    grey = (torch.rand(5, 1, 28, 28) * 255).to(torch.uint8)
    small = probes.adapt(grey, 1, 8, 8)
    assert small.shape == (5, 1, 8, 8) and small.dtype == torch.uint8
    flat = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    assert (probes.adapt(flat, 1, 8, 8) == 200).all()  # resizing keeps a flat image flat
    rgb = probes.adapt(flat, 3, 32, 32)
    assert rgb.shape == (2, 3, 32, 32) and (rgb == 200).all()  # grey repeated
    colour = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    colour[:, 1] = 255  # pure green: BT.601 luma 0.587
    assert probes.adapt(colour, 1, 4, 4).unique().tolist() == [150]
    assert probes.rule((1, 28, 28), (1, 8, 8)) == "resized 28x28 -> 8x8 (bilinear, antialiased)"
    assert probes.rule((3, 32, 32), (1, 32, 32)) == "RGB to grey (BT.601 luma)"


def test_a_class_subset_is_relabelled_and_named():
    full = data.load(config.DataConfig())
    part = data.load(config.DataConfig(classes=[7, 3]))
    assert part.classes == [full.classes[7], full.classes[3]]
    assert set(part.y_train.unique().tolist()) == {0, 1} and set(part.y_test.unique().tolist()) == {0, 1}
    assert len(part.x_test) == int(((full.y_test == 7) | (full.y_test == 3)).sum())
    assert part.fingerprint == full.fingerprint  # the raw files; the subset is in the run key
    for bad in ([3], [3, 3], [0, 10]):
        with pytest.raises(BenchError, match="two or more distinct indices in 0..9"):
            data.load(config.DataConfig(classes=bad))


def test_a_transfer_run_shares_its_training_and_is_keyed_by_the_probe():
    cfg = config.load(ROOT / "tests" / "quick.toml", ["data.classes=0,1,2,3,4", "probe.classes=5,6,7,8,9"])
    cfg.probe.dataset = "digits"
    ds = data.load(cfg.data)
    probe = probes.load(cfg, ds, None, False)
    assert probe.classes == ds.classes[:0] + data.load(config.DataConfig()).classes[5:]
    home = runner.spec(cfg, ds, "ae", {"latent_dim": 8, "channels": (8, 16)}, seed=0)
    away = runner.spec(cfg, ds, "ae", {"latent_dim": 8, "channels": (8, 16)}, seed=0, probe=probe)
    assert away.train_key == home.train_key and away.key != home.key  # one checkpoint, two runs
    with pytest.raises(BenchError, match="measured on digits, not on the training data"):
        runner.run_one(away, ds, torch.device("cpu"))
    assert not store.is_done(away.key)
    m = runner.run_one(away, ds, torch.device("cpu"), probe=probe)
    assert m["status"] == "ok" and m["n"]["test"] == len(probe.x_test)
    assert len(m["confusion"]) == 5  # probed on five classes
    again = runner.run_one(home, ds, torch.device("cpu"))
    assert again["from_checkpoint"] is True  # the in-domain run reuses the transfer's training


@pytest.mark.slow
def test_transfer_from_the_cli_gets_its_own_page(capsys):
    flags = ["--config", str(ROOT / "tests" / "quick.toml"), "--set", "data.train_limit=256"]
    assert main(["run", "--methods", "ae,vae,dae,pca", *flags]) == 0  # in-domain rows first
    assert main(["run", "--methods", "ae,vae,dae,pca", *flags, "--probe-dataset", "digits",
                 "--classes", "0-4"]) == 0  # fmt: skip
    page = (store.results_dir() / "digits-classes0-4-to-digits.md").read_text()
    assert "# digits (scikit-learn, 8x8) (classes 0,1,2,3,4) -> digits (scikit-learn, 8x8)" in page
    assert "| ae (data.train_limit=256) " in page  # the classes are the page's title, not a setting
    assert "Spearman's rho between" in page  # three trained learners with both rows
    home = (store.results_dir() / "digits.md").read_text()
    assert "; 4 runs in `results/runs/`" in home  # transfer runs stay off the in-domain page
    before = page
    assert main(["report"]) == 0
    assert (store.results_dir() / "digits-classes0-4-to-digits.md").read_text() == before
    (run,) = [r for r in store.load_runs() if r["config"].get("probe") and r["config"]["method"] == "ae"]
    capsys.readouterr()
    assert main(["verify", run["key"], "--tolerance", "0"]) == 0  # re-made with its probe data
    assert "1 identical" in capsys.readouterr().out
    out = store.results_dir() / "z.npz"
    assert main(["export", run["key"], "--out", str(out)]) == 0
    import numpy as np

    z = np.load(out)
    full = data.load(config.DataConfig())
    assert z["z_test"].shape == (len(full.x_test), 8) and np.array_equal(z["y_test"], full.y_test.numpy())
    capsys.readouterr()
    assert main(["run", "--methods", "ae", *flags, "--probe-dataset", "nosuchdata"]) == 2
    assert main(["tune", "--method", "ae", "--trials", "1", "--set", "probe.dataset=digits"]) == 2
    assert "studies tune in-domain" in capsys.readouterr().err
    # one dataset split by class: trained on 0-4, probed on 5-9, beside the runs trained on 5-9
    assert main(["run", "--methods", "ae,pca", *flags, "--classes", "5-9"]) == 0
    assert (store.results_dir() / "digits.md").read_text() == home  # 5-class rows: their own page
    sub = (store.results_dir() / "digits-classes5-9.md").read_text()
    assert sub.startswith("# digits (scikit-learn, 8x8) (classes 5,6,7,8,9)\n") and "| ae (" in sub
    assert main(["run", "--methods", "ae,pca", *flags, "--classes", "0-4", "--probe-classes", "5-9"]) == 0
    split = (store.results_dir() / "digits-classes0-4-to-digits-classes5-9.md").read_text().splitlines()
    header = next(x for x in split if x.startswith("| learner"))
    row = next(x for x in split if x.startswith("| ae ("))
    cells = dict(zip([h.strip() for h in header.split("|")], [c.strip() for c in row.split("|")]))
    (own,) = [r for r in store.load_runs() if r["config"]["data"]["classes"] == [5, 6, 7, 8, 9]
              and r["config"]["method"] == "ae" and not r["config"].get("probe")]  # fmt: skip
    assert cells["in-domain linear % on digits (scikit-learn, 8x8) (classes 5,6,7,8,9)"] == (
        f"{100 * own['metrics']['linear']['test_acc']:.2f}"
    )
    assert (
        cells["linear % on digits (scikit-learn, 8x8) (classes 0,1,2,3,4) (trained there)"] == "-"
    )  # not all 10
    # the gap to the in-domain run, paired image by image on the same five classes' test images
    gaps = split[split.index("## Which transfer gaps are real") :]
    header = next(x for x in gaps if x.startswith("| learner"))
    row = next(x for x in gaps if x.startswith("| ae ("))
    cells = dict(zip([h.strip() for h in header.split("|")], [c.strip() for c in row.split("|")]))
    (away,) = [r for r in store.load_runs() if r["config"]["data"]["classes"] == [0, 1, 2, 3, 4]
               and r["config"]["method"] == "ae" and r["config"].get("probe")
               and r["config"]["probe"]["data"]["classes"]]  # fmt: skip
    gap = away["metrics"]["linear"]["test_acc"] - own["metrics"]["linear"]["test_acc"]
    assert cells["transfer - in-domain (points)"] == f"{100 * gap:+.2f}"
    assert (cells["verdict"], cells["accounts for"]) == ("1 seed: no verdict", "test images only (1 seed)")
    # a row measured by a stale evaluator (a version-1 MLP head on digits) is marked, with its footnote
    folder = store.run_dir(run["key"])
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["evaluators"]["mlp"] = 1
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report"]) == 0
    page = (store.results_dir() / "digits-classes0-4-to-digits.md").read_text()
    assert "| ae (data.train_limit=256) ‡ " in page
    assert "‡: some of the row's runs were measured by an older evaluator: an MLP head stopped" in page


def test_a_transfer_gap_is_paired_by_seed_and_by_test_image():
    """'Which transfer gaps are real': three seeds a side, each run's kept predictions on the same
    test images; a learner a tenth worse out of domain is *lost*, one no worse is *kept*, and runs
    scored on other labels are compared by their accuracies alone."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)

    def run(key, learner, seed, wrong, labels=y):
        pred = labels.copy()
        miss = rng.random(len(labels)) < wrong
        pred[miss] = (pred[miss] + 1) % 5
        store.run_dir(key).mkdir(parents=True)
        store.atomic_save_npz(store.run_dir(key) / "predictions.npz", {"linear": pred, "y": labels})
        return {"key": key, "learner": learner, "method": learner, "latent_dim": 64, "seed": seed,
                "status": "ok", "linear": float((pred == labels).mean()), "overrides": "{}"}  # fmt: skip

    away = [run(f"a{s}{m}", m, s, w) for s in range(3) for m, w in (("ae", 0.2), ("vae", 0.1))]
    other = rng.permutation(y)  # ae's home runs scored on other labels: the seeds alone
    home = [run(f"h{s}{m}", m, s, 0.1, other if m == "ae" else y) for s in range(3) for m in ("ae", "vae")]
    df, home = pd.DataFrame(away), pd.DataFrame(home)
    df["like"] = df["overrides"].map(transfer._like)
    home["like"] = home["overrides"].map(transfer._like)
    summary = df.groupby(["learner", "latent_dim"], as_index=False)["linear"].mean()
    lines = "\n".join(sections.transfer_gaps(summary, df, home, "A", "B")).splitlines()
    cells = [[c.strip() for c in x.split("|")[1:-1]] for x in lines if x.startswith("| ")]
    rows = {c[0]: c[1:] for c in cells}
    assert rows["ae"][3:] == ["lost", "3", "seeds only (no test predictions kept)"]
    assert rows["vae"][3:] == ["kept", "3", "seeds + test images"]
    vae = df["learner"] == "vae"
    gap = df.loc[vae, "linear"].mean() - home.loc[home["learner"] == "vae", "linear"].mean()
    assert rows["vae"][1] == f"{100 * gap:+.2f}"
