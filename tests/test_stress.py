"""Representations under stress: the calibration of the linear probe and out-of-distribution
detection from frozen latents (bench/evaluators/calibration.py, ood.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench import config, evaluators
from bench.evaluators import Context, calibration, ood
from bench.run import evaluate


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
    cfg = config.EvalConfig(ood_images=100, ood_k=5, map_points=0)
    data = SimpleNamespace(x_val=x["val"], x_test=x["test"], y_test=y["test"])
    ctx = Context(
        evaluate.standardize(z_raw), z_raw, y, k, cfg, 0, model=model, data=data, device=torch.device("cpu")
    )
    for name in ("linear", "calibration", "ood"):
        e = evaluators.get(name)
        ctx.reader = name
        out = e(ctx)
        lines = evaluate.audit(e, ctx)  # refuses a read beyond the card
        if name == "calibration":
            cal = out["calibration"]
            assert 0 <= cal["ece"] <= 1 and cal["temperature"] > 0 and cal["nll"] > 0
            assert len(ctx.reads["calibration"]) == 1 == lines[0]["reads"] == e.card(cfg)[0].reads
        if name == "ood":
            got = out["ood"]
            assert set(got["sources"]) == set(cfg.ood_sources)
            assert all(0 <= got[f"{s}_auroc"] <= 1 and 0 <= got[f"{s}_fpr95"] <= 1 for s in ("knn", "maha"))
            assert got["sources"]["noise"]["knn"]["auroc"] > 0.9  # noise is far from class blobs
            assert len(ctx.reads["ood"]) == len(cfg.ood_sources) == lines[0]["reads"]
    assert not math.isnan(ctx.shared["linear_w"].sum().item())
