"""Representations under stress: the calibration of the linear probe and out-of-distribution
detection from frozen latents (bench/evaluators/calibration.py, ood.py)."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import config, evaluators
from bench.evaluators import Context, calibration, corruptions, ood
from bench.run import evaluate
from tests.conftest import ROOT


def test_calibration_scores_match_their_definitions():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    y = torch.tensor([0, 1, 1, 1])
    p = z.double().softmax(1)
    got = calibration.scores(z, y, bins=10)
    assert got["nll"] == pytest.approx(float(-p[torch.arange(4), y].log().mean()))
    assert got["brier"] == pytest.approx(float(((p - F.one_hot(y, 2)) ** 2).sum(1).mean()))
    conf, right = p.max(1).values, (p.argmax(1) == y).double()
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.double().mean() * (right[inside].mean() - conf[inside].mean()).abs()
    assert got["ece"] == pytest.approx(float(ece))
    assert sum(got["reliability"]["count"]) == 4


def test_temperature_scaling_undoes_overconfidence_and_keeps_the_predictions():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, 5, generator=g) * 2
    y = torch.multinomial(true_logits.softmax(1), 1, generator=g).squeeze(1)
    sharp = true_logits * 4  # the same ranking, four times too confident
    t = calibration.temperature(sharp[:10_000], y[:10_000])
    assert t == pytest.approx(4.0, rel=0.1)
    raw, scaled = (
        calibration.scores(sharp[10_000:], y[10_000:]),
        calibration.scores(sharp[10_000:] / t, y[10_000:]),
    )
    assert scaled["ece"] < raw["ece"] / 4 and scaled["nll"] < raw["nll"]
    assert torch.equal((sharp / t).argmax(1), sharp.argmax(1))
    assert scaled["ece"] < 0.02  # calibrated data stays calibrated once the temperature is undone


def test_detect_gives_the_mann_whitney_auroc_and_fpr_at_95_tpr():
    inside = torch.arange(100, dtype=torch.float32)  # 0..99
    outside = torch.arange(100, dtype=torch.float32) - 50.0  # -50..49: half overlap
    got = ood.detect(inside, outside)
    pairs = (inside[:, None] > outside[None]).double().mean() + 0.5 * (
        inside[:, None] == outside[None]
    ).double().mean()
    assert got["auroc"] == pytest.approx(float(pairs))
    threshold = torch.quantile(inside, 0.05)
    assert got["fpr95"] == pytest.approx(float((outside >= threshold).float().mean()))
    assert ood.detect(inside + 1000, outside)["auroc"] == 1.0
    assert ood.detect(inside, inside)["auroc"] == pytest.approx(0.5)


def test_placement_values_average_to_each_sources_auroc_ties_included():
    """The per-image items behind the AUROC intervals (bench/report/items.py): over the test images
    and over the OOD images, both means are the sources' mean AUROC."""
    from bench.report import items

    g = torch.Generator().manual_seed(3)
    inside = (torch.randn(300, generator=g) + 1).round(decimals=1)  # rounded: ties within and across
    far, near = torch.randn(200, generator=g).round(decimals=1), torch.randn(50, generator=g) + 0.5
    source = np.repeat([-1, 0, 1], [300, 200, 50])
    first, second = items.placements(torch.cat([inside, far, near]).numpy(), source)
    want = (ood.detect(inside, far)["auroc"] + ood.detect(inside, near)["auroc"]) / 2
    assert first.shape == (300,) and second.shape == (250,)
    assert first.mean() == pytest.approx(want) and second.mean() == pytest.approx(want)
    # a test image's value is the share of OOD images it outscores (ties half), per source
    i = 7
    per = [((inside[i] > o).double().mean() + 0.5 * (inside[i] == o).double().mean()) for o in (far, near)]
    assert first[i] == pytest.approx(float(sum(per) / 2))


def test_the_scores_separate_latents_far_from_the_training_ones():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(4).repeat(200)
    train = centers[y] + torch.randn(800, 16, generator=g)
    test = centers[y[:200]] + torch.randn(200, 16, generator=g)
    far = torch.randn(200, 16, generator=g) * 3 + 8
    for name, score in ood.fit(train, y, 4, 10).items():
        assert ood.detect(score(test), score(far))["auroc"] > 0.95, name


def test_ood_sources_are_deterministic_in_range_and_never_read_test():
    x_val = torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8)
    for source in ood.SOURCES:
        a, b = ood.make(source, x_val, 30), ood.make(source, x_val, 30)
        assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (30, 1, 8, 8)
    assert torch.equal(ood.make("inverted", x_val, 30), 255 - x_val[:30])
    assert not torch.equal(ood.make("noise", x_val, 30), ood.make("gaussian", x_val, 30))


class _Encoder(torch.nn.Module):
    reconstructs = False

    def encode(self, x):
        return x.flatten(1)[:, :8] * 4


def test_a_run_records_calibration_and_ood_with_their_test_reads():
    """The evaluators through the run's own evaluation: one test read per calibration and per OOD
    source, as their cards declare, and the numbers in range."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(2)
    k, per = 4, 60
    y = {s: torch.arange(k).repeat(per) for s in ("train", "val", "test")}
    x = {
        s: (torch.rand(len(v), 1, 8, 8, generator=g) * 40 + v.view(-1, 1, 1, 1) * 50).to(torch.uint8)
        for s, v in y.items()
    }
    model = _Encoder()
    z_raw = {s: model.encode(v.float() / 255) for s, v in x.items()}
    cfg = config.EvalConfig(ood_images=100, ood_k=5, map_points=0, corruption_images=80)
    data = SimpleNamespace(x_val=x["val"], x_test=x["test"], y_test=y["test"])
    ctx = Context(
        evaluate.standardize(z_raw), z_raw, y, k, cfg, 0, model=model, data=data, device=torch.device("cpu")
    )
    for name in ("linear", "calibration", "ood", "corruptions"):
        e = evaluators.get(name)
        ctx.reader = name
        out = e(ctx)
        lines = evaluate.audit(e, ctx)  # refuses a read beyond the card
        if name == "calibration":
            cal = out["calibration"]
            assert 0 <= cal["ece"] <= 1 and cal["temperature"] > 0 and cal["nll"] > 0
            assert len(ctx.reads["calibration"]) == 1 == lines[0]["reads"] == e.card(cfg)[0].reads
            kept = ctx.artifacts["calibrated"]  # each test image's NLL and Brier, raw and T-scaled
            assert kept["nll"].shape == kept["brier"].shape == (len(y["test"]), 2)
            for i, suffix in enumerate(("", "_ts")):
                assert kept["nll"][:, i].mean() == pytest.approx(cal[f"nll{suffix}"], rel=1e-5)
                assert kept["brier"][:, i].mean() == pytest.approx(cal[f"brier{suffix}"], rel=1e-5)
        if name == "ood":
            got = out["ood"]
            assert set(got["sources"]) == set(cfg.ood_sources)
            assert all(0 <= got[f"{s}_auroc"] <= 1 and 0 <= got[f"{s}_fpr95"] <= 1 for s in ("knn", "maha"))
            assert got["sources"]["noise"]["knn"]["auroc"] > 0.9  # noise is far from class blobs
            assert len(ctx.reads["ood"]) == len(cfg.ood_sources) == lines[0]["reads"]
            from bench.report import items

            kept = ctx.artifacts["ood_scores"]  # every image's two scores: the AUROCs come back
            assert (kept["source"] == -1).sum() == len(y["test"])
            for col, score in enumerate(("knn", "maha")):
                first, second = items.placements(kept["score"][:, col], kept["source"])
                assert first.mean() == pytest.approx(got[f"{score}_auroc"])
                assert second.mean() == pytest.approx(got[f"{score}_auroc"])
        if name == "corruptions":  # grey images: MNIST-C's suite, 18 graded corruptions and 4 of one form
            bad = out["corruptions"]
            assert len(ctx.reads["corruptions"]) == 18 * 5 + 4 == sum(line["reads"] for line in lines)
            assert [line["reads"] for line in lines] == [11 * 5, 7 * 5 + 4]
            assert bad["images"] == 80 and bad["suite"] == "MNIST-C"
            assert set(bad["accuracy"]) == set(corruptions.SHARED) | set(corruptions.OWN)
            assert bad["accuracy"]["stripe"].keys() == {"-"}
            assert bad["accuracy"]["shear"].keys() == set("12345")
            means = [sum(by.values()) / len(by) for by in bad["accuracy"].values()]
            assert bad["mean_acc"] == pytest.approx(sum(means) / len(means))  # each corruption counts once
            assert bad["drop"] == pytest.approx(bad["clean_acc"] - bad["mean_acc"])
            assert bad["accuracy"]["contrast"]["5"] <= bad["clean_acc"]
    assert not math.isnan(ctx.shared["linear_w"].sum().item())


def digit_images(n=60):
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.from_numpy((d.images[:n] / 16 * 255).round().astype("uint8"))[:, None]


SUITES = [("cifar10-c", n) for n in corruptions.SHARED] + [("mnist-c", n) for n in corruptions.suite(1)]


@pytest.mark.parametrize("suite,name", SUITES)
def test_each_corruption_is_deterministic_in_range_and_worse_with_severity(suite, name):
    """The same uint8 images every call (seeded by name and severity alone), shaped as they came.
    At the size each suite's parameters were set for, a higher severity is further from the clean
    images: on 32x32 colour images (CIFAR-10-C) the PSNR falls with every step; on 28x28 grey
    images (MNIST-C) the highest severity is below the lowest (its generator's steps are not all
    monotone: glass blur's iterations go 2, 1, 3, 2, 2, spatter changes its drops at 4, and a box
    filter's aliasing can leave pixelate closer at a higher severity). On 8x8 digits lengths set
    for 28 px shrink below a pixel, so there only range and determinism are checked."""
    digits = digit_images()
    if suite == "cifar10-c":
        colour = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (12, 3, 32, 32)).astype("uint8"))
        sizes = [colour]
    else:
        grey28 = F.interpolate(digits.float(), size=(28, 28), mode="bilinear").round().byte()
        sizes = [grey28, digits]
    for x in sizes:
        psnr = []
        for severity in [1] if name in corruptions.ONE_FORM else corruptions.SEVERITIES:
            a, b = corruptions.corrupt(x, name, severity), corruptions.corrupt(x, name, severity)
            assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
            mse = ((a.double() - x.double()) ** 2).mean().item()
            assert mse > 0 or x is digits, (name, severity, x.shape)  # 8 px: a 3 px disk is < 1 px
            psnr.append(10 * math.log10(255**2 / max(mse, 1e-12)))
        if x is digits or name in corruptions.ONE_FORM:
            continue
        assert psnr[-1] < psnr[0], (name, x.shape, psnr)
        if x.shape[1] == 3:
            assert all(later < earlier + 0.05 for earlier, later in zip(psnr, psnr[1:])), (name, psnr)


def test_the_suites_define_the_names_the_config_offers():
    assert tuple(corruptions.suite(3)) == corruptions.SHARED
    assert tuple(corruptions.suite(1)) == corruptions.SHARED + corruptions.OWN
    assert set(corruptions.ONE_FORM) <= set(corruptions.OWN)


def test_mnist_c_geometry_matches_its_definition():
    """The affine maps keep the centre and move pixels as their parameters say; stripe inverts the
    outer quarters; the edge map is binary and marks a square's outline, not its inside."""
    x = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    x[0, 0, 10:18, 10:18] = 255
    for name in ("shear", "rotate", "scale"):
        out = corruptions.corrupt(x, name, 1)
        assert out[0, 0, 13:15, 13:15].min() == 255, name  # the centre stays put
    small = corruptions.corrupt(x, "scale", 5)  # to 50%: the 8 px square becomes 4 px
    assert 3 <= (small[0, 0, 14] > 127).sum() <= 5
    moved = corruptions.corrupt(x, "translate", 5)  # 5 px along each axis
    rows, cols = torch.nonzero(moved[0, 0] > 127, as_tuple=True)
    assert {abs(rows.min().item() - 10), abs(cols.min().item() - 10)} == {5}
    stripe = corruptions.corrupt(x, "stripe", 1)
    assert stripe[0, 0, :, :7].min() == 255 and stripe[0, 0, :, 21:].min() == 255
    assert torch.equal(stripe[0, 0, :, 7:21], x[0, 0, :, 7:21])
    edges = corruptions.corrupt(x, "canny_edges", 1)
    assert set(edges.unique().tolist()) == {0, 255}
    assert edges[0, 0, 14, 14] == 0 and edges[0, 0, 8:20, 8:20].sum() > 0  # outline, not inside


def test_corrupted_images_are_kept_in_the_cache_and_a_bad_file_is_made_again(tmp_path, monkeypatch):
    from bench.run import evaluate as run_evaluate

    x = digit_images(40)
    made = []
    real = corruptions.corrupt
    monkeypatch.setattr(corruptions, "corrupt", lambda *a: made.append(a[1:]) or real(*a))
    keep = lambda name, make, check: run_evaluate.kept(tmp_path / f"{name}.pt", make, check)  # noqa: E731
    ctx = Context({}, {}, {}, 10, config.EvalConfig(), 0, keep=keep)
    index = torch.arange(40)
    first = corruptions._corrupted(ctx, "shear", 3, index, x)
    corruptions._MADE.clear()  # another process: read from the cache file
    assert torch.equal(corruptions._corrupted(ctx, "shear", 3, index, x), first) and len(made) == 1
    (path,) = tmp_path.glob("corrupted-*-shear-3.pt")
    path.write_bytes(b"not a tensor")
    corruptions._MADE.clear()
    assert torch.equal(corruptions._corrupted(ctx, "shear", 3, index, x), first) and len(made) == 2


def test_a_corruption_that_makes_non_finite_pixels_is_an_error_not_a_clip(monkeypatch):
    monkeypatch.setitem(corruptions.suite(1), "contrast", lambda x, s, rng: x * np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        corruptions.corrupt(digit_images(4), "contrast", 1)


def test_corruption_settings_are_checked_before_any_run(capsys):
    from bench.__main__ import main

    base = ["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pca"]
    for setting, said in [
        ('eval.corruption_names=["snowstorm"]', "eval.corruption_names"),
        ('eval.corruption_mnist_c=["gaussian_noise"]', "eval.corruption_mnist_c"),
        ("eval.corruption_names=[]", "eval.corruption_names"),  # eval.corruption_images=0 measures none
        ("eval.corruption_severities=[6]", "eval.corruption_severities"),
        ('eval.ood_sources=["cifar"]', "eval.ood_sources"),
        ("eval.ood_sources=[]", "eval.ood_sources"),
    ]:
        assert main([*base, *[a for one in setting.split() for a in ("--set", one)]]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert not (Path(os.environ["BENCH_RESULTS_DIR"]) / "runs").exists()


@pytest.mark.slow
def test_a_grid_gets_the_under_stress_section_and_a_run_its_reliability_diagram(capsys):
    from bench import store
    from bench.__main__ import main

    quick = ["--config", str(ROOT / "tests" / "quick.toml"), "--set", "eval.corruption_images=100"]
    assert main(["run", *quick, "--methods", "ae,simclr", "--seeds", "0,1"]) == 0
    page = (store.results_dir() / "digits.md").read_text()
    section = page.split("## Under stress", 1)[1].split("\n## ", 1)[0]
    for head in ("corrupted %", "ECE % (T-scaled)", "OOD AUROC % kNN", "FPR@95 % Mahalanobis"):
        assert head in section, head
    for figure in ("digits-corruption-severity.png", "digits-corruptions.png"):
        assert f"]({figure})" in section and (store.results_dir() / figure).is_file()
    # the families' corrupted accuracy: an interval over seeds and the corrupted images they kept
    assert "view-based" in section and "(seeds and images)" in section
    for head in ("Brier (T-scaled)", "OOD AUROC % kNN"):  # kept per image: counted over images too
        said = section.split("Reconstruction against invariance", 1)[1].split(f"{head}: ", 1)[1]
        assert said.split(";")[0].split(".\n")[0].endswith("(seeds and images)"), said[:200]
    assert "Which learner leads each measure" in section and "| runner-up" in section
    ae = min((r for r in store.load_runs() if r["config"]["method"] == "ae"), key=lambda r: r["key"])
    kept = store.load_artifact(store.run_dir(ae["key"]), "corrupted")
    hit = corruptions.unpacked(kept, 100)
    first = ae["metrics"]["corruptions"]["accuracy"]["gaussian_noise"]["1"]  # quick.toml's first
    assert hit.shape == (len(kept["which"]), 100) and hit[0].mean() == pytest.approx(first)
    capsys.readouterr()
    assert main(["evaluate", ae["key"]]) == 0
    said = capsys.readouterr().out
    assert "calibration (linear probe, test): ECE" in said and "contrast" in said
    assert (store.run_dir(ae["key"]) / "reliability.png").is_file()
    # rows stored before the stress evaluators: the page names them, then says none was measured
    import json

    lacking = ("Not measured under stress (1 rows", "simclr (eval.corruption_images=100) d=8.")
    for method, words in (("simclr", lacking), ("ae", ("No run of this page",))):
        for r in store.load_runs():
            if r["config"]["method"] == method:
                path = store.run_dir(r["key"]) / "metrics.json"
                old = json.loads(path.read_text())
                path.write_text(json.dumps({k: v for k, v in old.items() if k not in STRESSED}))
        assert main(["report"]) == 0
        section = (store.results_dir() / "digits.md").read_text().split("## Under stress", 1)[1]
        section = section.split("\n## ", 1)[0]
        assert all(w in section for w in words) and "verify --dataset digits --outdated" in section, section


STRESSED = ("corruptions", "calibration", "ood")


def test_held_out_classes_and_another_dataset_are_ood_sources(tmp_path, capsys):
    """A run on digits 0-4 scored against its held-out classes 5-9 (near-OOD) and against another
    dataset's test images adapted to 8x8 grey by transfer's rule (here an .npz of colour 16x16
    images; far-OOD): each recorded with what it is, one test read each."""
    from bench import store
    from bench.__main__ import main

    g = np.random.default_rng(0)
    other = tmp_path / "blobs.npz"
    np.savez(
        other,
        x_train=g.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8),
        y_train=np.arange(40) % 2,
        x_test=g.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8),
        y_test=np.arange(30) % 2,
    )
    sources = f'["noise","held-out","npz:{other}"]'
    quick = ["--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pca"]
    split = ["--set", "data.classes=[0,1,2,3,4]"]
    assert main(["run", *quick, *split, "--set", f"eval.ood_sources={sources}"]) == 0
    (run,) = store.load_runs()
    got = run["metrics"]["ood"]["sources"]
    assert list(got) == ["noise", "held-out", f"npz:{other}"]
    from bench import data

    held_test = int((data.load(config.DataConfig()).y_test >= 5).sum())  # digits' test images of 5-9
    assert got["held-out"]["images"] == min(200, held_test)
    assert "held-out classes [5, 6, 7, 8, 9]" in got["held-out"]["about"]
    assert got[f"npz:{other}"]["images"] == 30 and "grey" in got[f"npz:{other}"]["about"]
    assert all(0 <= s["knn"]["auroc"] <= 1 for s in got.values())


def test_ood_sources_that_cannot_be_had_are_one_line_before_any_run(tmp_path, capsys):
    from bench.__main__ import main

    empty = tmp_path / "empty.npz"
    np.savez(empty, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64))  # fmt: skip
    base = ["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pca"]
    for sources, said in [
        ('["held-out"]', "needs a run on some of the classes"),
        ('["digits"]', "is the run's own dataset"),
        (f'["npz:{empty}"]', "x_test"),
        ('["nowhere"]', "neither a source"),
    ]:
        assert main([*base, "--set", f"eval.ood_sources={sources}"]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert not (Path(os.environ["BENCH_RESULTS_DIR"]) / "runs").exists()


def test_mnist_is_far_ood_for_digits(data_dir):
    """Real data: MNIST's test images, resized to 8x8, as a far-OOD source of a digits run."""
    from bench import store
    from bench.__main__ import main

    quick = ["--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pca", "--data-dir", str(data_dir)]
    assert main(["run", *quick, "--set", 'eval.ood_sources=["mnist"]']) == 0
    (run,) = store.load_runs()
    mnist = run["metrics"]["ood"]["sources"]["mnist"]
    assert mnist["images"] == 200 and mnist["about"].startswith("MNIST")
