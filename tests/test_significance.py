"""Which differences are real (bench/report/significance.py), the label-free measures (spectrum,
labelfree) and the latent map, each on inputs whose answer is known."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.evaluators import latent_map, rankme, spectrum
from bench.report import labelfree, significance


def simulate(rng, n=2000, seeds=3, gap=0.0, seed_noise=0.3, own=1.0, skill=2.5):
    """Correctness (seeds, n) of two learners on one finite test set drawn from a population:
    images differ in difficulty (shared), each learner has its own easy and hard images (shared
    by its seeds) and each training seed shifts a learner's skill; `gap` (logits) is learner A's
    true advantage. With gap 0 the two are equal on the population: a null."""
    difficulty = rng.normal(0, 2.0, n)

    def learner(shift):
        own_images = rng.normal(0, own, n)[None]
        seed = rng.normal(0, seed_noise, seeds)[:, None]
        p = 1 / (1 + np.exp(-(skill + shift + difficulty[None] + own_images + seed)))
        return rng.random((seeds, n)) < p

    return learner(gap), learner(0.0)


def test_the_same_runs_are_tied_and_a_copy_of_a_learner_too():
    rng = np.random.default_rng(0)
    a, _ = simulate(rng)
    same = significance.crossed(a, a)
    assert same.diff == 0 and same.tested and not same.real
    # a second, independent set of runs of the same learner: same images, same own strengths
    difficulty = rng.normal(0, 2.0, 2000)
    p = 1 / (1 + np.exp(-(2.5 + difficulty)))
    x, y = (rng.random((3, 2000)) < p for _ in range(2))
    assert not significance.crossed(x, y).real


@pytest.mark.parametrize("seed_noise", [0.0, 0.3])
def test_on_a_simulated_null_the_interval_excludes_zero_about_five_percent_of_the_time(seed_noise):
    rng = np.random.default_rng(1)
    rejected = [significance.crossed(*simulate(rng, seed_noise=seed_noise)).real for _ in range(400)]
    assert 0.02 <= np.mean(rejected) <= 0.10  # 5% +- about 2.5 standard errors


def test_a_planted_two_point_gap_on_ten_thousand_images_is_detected():
    rng = np.random.default_rng(2)
    found = []
    for _ in range(20):  # MNIST-like: ~96.5% against ~98.5%, seed std of accuracy ~0.3 points
        a, b = simulate(rng, n=10_000, gap=1.0, seed_noise=0.1, own=0.5, skill=5.0)
        iv = significance.crossed(a, b)
        assert 0.01 < iv.diff < 0.03  # about 2 points
        found.append(iv.real and iv.lo > 0)
    assert np.mean(found) >= 0.9


def test_a_second_set_of_items_adds_its_image_term_and_counts_the_seeds_once():
    """crossed(..., also=) for an AUROC's two sides: OOD items with no spread of their own leave the
    interval as it was; OOD items that vary image by image widen it, by their term alone."""
    rng = np.random.default_rng(4)
    a, b = rng.random((3, 400)), rng.random((3, 400))
    base = significance.crossed(a, b)
    flat = np.repeat((a - b).mean(1, keepdims=True), 100, 1)  # per seed, the same mean
    same = significance.crossed(a, b, also=(flat, np.zeros_like(flat)))
    assert (same.diff, same.lo, same.hi) == pytest.approx((base.diff, base.lo, base.hi))
    noisy = flat + rng.normal(0, 1, (1, 100)) * [[1], [1], [1]]  # an image effect, shared by the seeds
    side = noisy - noisy.mean(1, keepdims=True) + flat
    wide = significance.crossed(a, b, also=(side, np.zeros_like(flat)))
    assert wide.diff == pytest.approx(base.diff) and wide.hi - wide.lo > base.hi - base.lo
    one = significance.crossed(a[:1], b[:1], also=(side[:1], np.zeros((1, 100))))
    assert one.basis == significance.TEST_ONLY and one.hi - one.lo > 0


def test_a_single_seed_says_so_and_gives_no_verdict():
    rng = np.random.default_rng(3)
    a, b = simulate(rng, seeds=1, gap=1.0)
    iv = significance.between(
        {0: {"acc": a.mean(), "correct": a[0]}}, {0: {"acc": b.mean(), "correct": b[0]}}
    )
    assert iv.basis == significance.TEST_ONLY and not iv.tested and not iv.real
    assert not math.isnan(iv.lo)  # the interval over images is still shown
    assert significance.verdict(iv) == "1 seed: no verdict"
    bare = significance.between({0: {"acc": 0.9, "correct": None}}, {0: {"acc": 0.8, "correct": None}})
    assert bare.basis == significance.UNTESTED and math.isnan(bare.lo)


def test_runs_without_predictions_fall_back_to_the_seed_spread_and_say_so():
    a = {s: {"acc": acc, "correct": None} for s, acc in enumerate([0.95, 0.96, 0.97])}
    b = {s: {"acc": acc, "correct": None} for s, acc in enumerate([0.90, 0.91, 0.92])}
    iv = significance.between(a, b)
    assert iv.basis == significance.SEEDS_ONLY and iv.real and iv.diff == pytest.approx(0.05)
    # a paired t interval over seeds: the differences are all 0.05, so the spread is zero
    assert iv.lo == pytest.approx(0.05) and iv.hi == pytest.approx(0.05)


def test_the_main_table_marks_the_best_and_those_tied_with_it():
    rng = np.random.default_rng(4)
    a, b = simulate(rng, n=2000, gap=0.0)
    c = rng.random((3, 2000)) < 0.5  # far below
    rows, correct = [], {}
    for name, arr in (("a", a), ("b", b), ("c", c)):
        for s in range(3):
            key = f"{name}{s}"
            correct[key] = arr[s]
            rows.append({"key": key, "learner": name, "latent_dim": 8, "seed": s, "status": "ok",
                         "linear": arr[s].mean(), "kind": "learner"})  # fmt: skip
    df = pd.DataFrame(rows)
    summary = df.groupby(["learner", "latent_dim"], as_index=False).agg(
        linear_mean=("linear", "mean"), kind=("kind", "first"), n=("seed", "nunique")
    )
    intervals = significance.versus_best(summary, df, correct)
    marks = significance.marks(summary, intervals)
    best = summary.sort_values("linear_mean").iloc[-1].learner
    other = "b" if best == "a" else "a"
    assert marks[(best, 8)] == " ▲" and marks.get((other, 8)) == " =" and (("c", 8) not in marks)
    assert "below" in significance.table(summary, intervals)


# --- label-free measures, on matrices whose value is known ------------------------------------


def orthogonal(n, d, seed=0):
    q, _ = torch.linalg.qr(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    q = q - q.mean(0)  # centred columns (still orthogonal up to the mean's rank-1 part: redo)
    q, _ = torch.linalg.qr(q)
    return q


def test_spectrum_measures_of_a_white_latent_a_rank_one_latent_and_a_power_law():
    n, d = 400, 16
    white = orthogonal(n, d) * math.sqrt(n)  # covariance ~ identity: every direction equal
    lam = spectrum.covariance_eigenvalues(white)
    assert spectrum.nesum(lam) == pytest.approx(d, rel=1e-3)
    assert spectrum.alpha_req(lam) == pytest.approx(0.0, abs=1e-3)
    gram = torch.linalg.eigvalsh(white.T @ white)
    assert spectrum.stable_rank(gram) == pytest.approx(d, rel=1e-6)
    assert rankme.rankme(torch.eye(d)) == pytest.approx(d, rel=1e-3)

    u = torch.randn(n, 1, dtype=torch.float64)
    rank1 = u @ torch.randn(1, d, dtype=torch.float64)
    assert spectrum.nesum(spectrum.covariance_eigenvalues(rank1)) == pytest.approx(1.0, rel=1e-6)
    assert spectrum.stable_rank(torch.linalg.eigvalsh(rank1.T @ rank1)) == pytest.approx(1.0, rel=1e-6)
    assert math.isnan(spectrum.alpha_req(spectrum.covariance_eigenvalues(rank1)))  # one eigenvalue

    for alpha in (0.5, 1.0, 2.0):
        i = torch.arange(1, d + 1, dtype=torch.float64)
        z = orthogonal(n, d, seed=1) * (i ** (-alpha / 2)) * math.sqrt(n - 1)  # eigenvalues i^-alpha
        lam = spectrum.covariance_eigenvalues(z)
        assert torch.allclose(lam, i**-alpha, rtol=1e-6)
        assert spectrum.alpha_req(lam) == pytest.approx(alpha, rel=1e-6)
        assert spectrum.nesum(lam) == pytest.approx(float((i**-alpha).sum()), rel=1e-6)


def test_spearman_counts_learners_only_and_is_nan_when_undefined():
    df = pd.DataFrame({
        "status": "ok", "latent_dim": 8, "family": ["views"] * 4 + ["baselines"] * 2,
        "linear": [0.1, 0.2, 0.3, 0.4, 0.99, 0.01], "rankme": [1, 2, 3, 4, 0, 100],
        "alpha_req": [4, 3, 2, 1, 0, 0], "nesum": [1, 1, 1, 1, 1, 1], "stable_rank": np.nan,
    })  # fmt: skip
    corr = labelfree.correlations(df, 8).set_index("key")
    assert corr.loc["rankme", "rho"] == pytest.approx(1.0) and corr.loc["rankme", "runs"] == 4
    assert corr.loc["alpha_req", "rho"] == pytest.approx(-1.0)
    assert math.isnan(corr.loc["nesum", "rho"]) and corr.loc["stable_rank", "runs"] == 0


def test_the_latent_map_sample_is_class_balanced_fixed_and_oriented():
    y = np.repeat(np.arange(4), [50, 30, 200, 5])
    idx = latent_map.sample(y, 4, 80)
    assert np.array_equal(idx, latent_map.sample(y, 4, 80))  # the same for every run
    assert np.bincount(y[idx], minlength=4).tolist() == [20, 20, 20, 5]
    rng = np.random.default_rng(0)
    xy = latent_map.orient(rng.normal(size=(len(idx), 2)) * [1, 5] + 3, y[idx])
    assert np.allclose(xy.mean(0), 0, atol=1e-9) and np.sqrt((xy**2).sum(1).mean()) == pytest.approx(1)
    assert xy[:, 0].var() >= xy[:, 1].var()  # the widest spread horizontal
    assert (xy[y[idx] == 0].mean(0) <= 0).all()  # class 0 towards the lower left


def test_the_latent_map_of_a_degenerate_latent_is_a_point_not_a_crash():
    """A constant latent (or two distinct points) maps to a point: Barnes-Hut t-SNE divided by
    zero distances there and took the process down; a 1-wide latent has no PCA init to take."""
    y = np.repeat(np.arange(4), 20)
    assert not latent_map.embed(np.zeros((80, 16), np.float32), y).any()
    two = np.repeat(np.eye(2, dtype=np.float32), 40, axis=0)
    assert latent_map.embed(two, y).shape == (80, 2) and not latent_map.embed(two, y).any()
    wide1 = latent_map.embed(np.random.default_rng(0).normal(size=(80, 1)), y)
    assert wide1.shape == (80, 2) and np.isfinite(wide1).all() and wide1.any()


def test_outdated_runs_are_those_todays_evaluators_would_measure_more_of():
    from bench import evaluators
    from bench.store import compat

    current = {e.name: e.version for e in evaluators.all()}
    finished = {"status": "ok", "linear": {"test_acc": 0.9}, "evaluators": current}
    finished |= {e.name: {} for e in evaluators.all()}
    assert not compat.outdated(finished)
    assert compat.outdated({**finished, "evaluators": {**current, "linear": 2}})  # before predictions
    before_maps = {k: v for k, v in current.items() if k != "latent_map"}
    assert compat.outdated({**finished, "latent_map": None, "evaluators": before_maps})  # before the map
    assert not compat.outdated({**finished, "recon": None})  # ran, had nothing to measure
    assert not compat.outdated({**finished, "evaluators": before_maps, "steer_only": True})  # a trial
    assert not compat.outdated({"status": "diverged"})
