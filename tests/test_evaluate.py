"""The evaluator must be right before any table can be trusted."""

import pytest
import torch
import torch.nn.functional as F

from bench import config, evaluators
from bench.config import EvalConfig
from bench.evaluators import knn, linear, mlp, recon
from bench.run import evaluate


def _splits(make):
    z, y = {}, {}
    for split, n in (("train", 600), ("val", 200), ("test", 300)):
        z[split], y[split] = make(n)
    return evaluate.standardize(z), y


def _separable(n, k=5, d=16):
    y = torch.arange(n) % k
    centers = torch.eye(d)[:k] * 6
    return centers[y] + torch.randn(n, d), y


def test_separable_latents_score_near_100():
    z, y = _splits(_separable)
    result = evaluate.on_latents(z, y, 5, EvalConfig(), seed=0)
    for probe in ("linear", "mlp", "knn"):
        assert result[probe]["test_acc"] > 0.98, probe


def test_shuffled_labels_score_near_chance():
    z, y = _splits(_separable)
    gen = torch.Generator().manual_seed(1)
    y = {s: v[torch.randperm(len(v), generator=gen)] for s, v in y.items()}
    result = evaluate.on_latents(z, y, 5, EvalConfig(), seed=0)
    for probe in ("linear", "mlp", "knn"):
        assert result[probe]["test_acc"] < 0.35, probe  # chance is 0.2


def test_mlp_budget_is_steps_not_passes():
    """Validation is read every round: a pass where a pass is long enough (MNIST), stretched to
    mlp_min_steps / mlp_max_epochs steps where it is not (digits: 3 steps a pass)."""
    cfg = EvalConfig()
    assert mlp.round_steps(1293, cfg) == 38 and mlp.round_steps(54000, cfg) == 106
    z, y = _splits(lambda n: _separable(n // 4))  # 150 training latents: one step a pass
    out = mlp.mlp_probe(z, y, 5, EvalConfig(mlp_hidden=32, mlp_max_epochs=10, mlp_min_steps=100), 0)
    assert out["steps"] == 10 * out["epochs"] and out["test_acc"] > 0.95


def test_mlp_pairs_train_apart_and_validation_chooses():
    """Each (learning rate, weight decay) pair is its own head: the same weights and numbers as
    when trained alone; a pair that cannot learn (lr 1e-6) loses on validation."""
    z, y = _splits(_separable)
    small = dict(mlp_hidden=32, mlp_max_epochs=6, mlp_min_steps=60)
    alone = mlp.mlp_probe(z, y, 5, EvalConfig(**small, mlp_lr_factors=[1.0], mlp_weight_decays=[0.0]), 0)
    both = mlp.mlp_probe(z, y, 5, EvalConfig(**small, mlp_lr_factors=[1e-3, 1.0], mlp_weight_decays=[0.0]), 0)
    assert both["lr"] == 1e-3 and both["weight_decay"] == 0.0
    for k in ("test_acc", "val_acc", "epochs"):
        assert both[k] == pytest.approx(alone[k]), k


def test_mlp_version_1_is_stale_where_it_was_starved():
    """The old head's numbers are wrong where a pass was shorter than today's round (digits),
    merely different where it was not (MNIST): stale there, outdated here."""
    from bench.store import compat

    def stored(n_train):
        entries = {e.name: {"test_acc": 0.9} for e in evaluators.all()}
        versions = {e.name: e.version for e in evaluators.all()} | {"mlp": 1}
        return {"status": "ok", "n": {"train": n_train}, **entries, "evaluators": versions}

    assert compat.stale_by(stored(1293)) == ["mlp"] and compat.stale(stored(1293))
    assert not compat.stale(stored(54000)) and compat.outdated(stored(54000))
    today = stored(1293)
    today["evaluators"]["mlp"] = mlp.MLP.version
    assert not compat.stale(today) and not compat.outdated(today)


def test_linear_probe_matches_autograd_gradient():
    x, y = torch.randn(50, 7), torch.randint(0, 3, (50,))
    w = linear.fit_logreg(x, y, 3, wd=1e-2, max_iter=200)
    w = w.detach().requires_grad_()
    loss = F.cross_entropy(x @ w[:-1] + w[-1], y) + 0.5 * 1e-2 * w[:-1].pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-4  # the hand-written gradient led L-BFGS to the true optimum


def test_weight_decay_is_chosen_on_validation_not_test():
    z, y = _splits(_separable)
    y_bad_test = dict(y, test=torch.zeros_like(y["test"]))
    a = linear.linear_probe(z, y, 5, [1e-4, 1e-1], 100)
    b = linear.linear_probe(z, y_bad_test, 5, [1e-4, 1e-1], 100)
    assert a["weight_decay"] == b["weight_decay"] and a["val_acc"] == b["val_acc"]


def test_knn_votes_with_nearest_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels, sims = knn.votes(torch.tensor([[1.0, 0.05]]), bank, torch.tensor([0, 0, 1]), 3, 2)
    assert knn.predict(labels, sims, 1, 2).item() == 0
    assert knn.predict(labels, sims, 3, 2).item() == 0


def test_standardize_uses_train_statistics_only():
    z = {"train": torch.tensor([[0.0], [2.0]]), "test": torch.tensor([[100.0]])}
    out = evaluate.standardize(z)
    assert torch.allclose(out["train"].mean(0), torch.zeros(1))
    assert out["test"].item() > 50


def test_reconstruction_metrics_of_a_perfect_and_a_blank_decoder():
    class Identity(torch.nn.Module):
        def reconstruct(self, x):
            return x

    class Blank(Identity):
        def reconstruct(self, x):
            return torch.zeros_like(x)

    x = (torch.rand(20, 1, 16, 16) * 255).to(torch.uint8)
    perfect = recon.reconstruction(Identity(), x, torch.device("cpu"))
    assert perfect["mse"] == 0 and perfect["ssim"] > 0.999 and perfect["psnr"] >= 99
    blank = recon.reconstruction(Blank(), x, torch.device("cpu"))
    expected = (x.float() / 255).pow(2).mean().item()
    assert abs(blank["mse"] - expected) < 1e-6 and blank["ssim"] < 0.1


def test_confusion_rows_are_true_classes():
    conf = linear.confusion(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
    assert conf == [[1, 1], [0, 1]]


def test_eval_config_defaults_are_lists_for_json():
    assert config.to_dict(EvalConfig())["knn_ks"] == [1, 3, 5, 10, 20, 50]
