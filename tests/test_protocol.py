"""The protocol checked by the code: the test split is read through a recorded accessor and a
run that chooses on test is refused; k-shot episodes; what a learner costs."""

import json

import pytest
import torch
from conftest import GREY8, ROOT

from bench import config, evaluators, registry, store
from bench.__main__ import main
from bench.config import EvalConfig
from bench.evaluators import Card, Context, Evaluator, cost, fewshot, linear
from bench.run import evaluate

QUICK = ["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pca"]


def _clusters(k=4, d=8, n=(60, 20, 40), seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 4
    y = {s: torch.arange(k).repeat(m) for s, m in zip(("train", "val", "test"), n)}
    z = {s: centers[v] + torch.randn(len(v), d, generator=g) for s, v in y.items()}
    return evaluate.standardize(z), y


class _Planted(Evaluator):
    """Scores every weight decay on test and keeps the best: a choice made on test."""

    def card(self, cfg):
        return [Card("planted", "weight decay", "-", "validation", "test", 1)]

    def __call__(self, ctx):
        scores = []
        for wd in ctx.cfg.probe_weight_decays:
            test = ctx.test(f"planted wd={wd}")
            w = linear.fit_logreg(ctx.z["train"], ctx.y["train"], ctx.num_classes, wd, 50)
            scores.append(linear.hits(linear.logits(test.z, w).argmax(1), test.y))
        return {"planted": {"test_acc": max(scores)}}


class _Twice(_Planted):
    def __call__(self, ctx):
        for _ in range(2):
            ctx.test("planted")
        return {"planted": {"test_acc": 0.0}}


@pytest.fixture
def planted():
    """Register an evaluator for one test (`planted(cls)`), removed afterwards."""
    added = []

    def plant(cls):
        evaluators.register("zzplanted")(type("Planted", (cls,), {"__module__": "tests.planted"}))
        added.append("zzplanted")

    yield plant
    for name in added:
        evaluators._EVALUATORS.pop(name, None)


@pytest.mark.parametrize(
    "cls, why", [(_Planted, "times where its protocol card declares 1"), (_Twice, "twice")]
)
def test_an_evaluator_that_reads_test_to_choose_is_refused(planted, cls, why, capsys):
    """In a real run: one line, exit 2, and no run folder."""
    planted(cls)
    assert main([*QUICK, "--set", "eval.probe_weight_decays=[1e-4,1e-2]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and why in err and "zzplanted" in err, err
    assert not list(store.results_dir().glob("runs/*/metrics.json"))


def test_the_test_split_is_held_back_and_every_read_recorded():
    z, y = _clusters()
    ctx = Context(z, z, y, 4, EvalConfig(fewshot_episodes=2), 0)
    assert set(ctx.z) == set(ctx.y) == {"train", "val"}  # no evaluator sees test but through ctx.test
    out = evaluate.run(ctx)
    card = {line["evaluator"]: line for line in out["protocol"]}
    assert card["linear"]["reads"] == card["knn"]["reads"] == card["mlp"]["reads"] == 1
    assert card["label_efficiency"]["reads"] == 2 * 5 and card["fewshot"]["reads"] == 4 * 2
    assert card["rankme"]["reads"] == 0 and card["linear"]["on"] == "validation"
    assert all(len(set(reads)) == len(reads) for reads in ctx.reads.values())


def test_batched_probes_are_the_single_probes():
    """fit_logreg_many on P problems gives each problem's own optimum (the same predictions)."""
    z, y = _clusters(d=6)
    pre = linear.preconditioner(z["train"])
    idx = torch.stack(
        [torch.randperm(240, generator=torch.Generator().manual_seed(s))[:40] for s in range(3)]
    )
    wds = torch.tensor([1e-2, 1e-3, 1e-4])
    many = linear.fit_logreg_many(z["train"][idx], y["train"][idx], 4, wds, 150, pre)
    for p in range(3):
        one = linear.fit_logreg(z["train"][idx[p]], y["train"][idx[p]], 4, float(wds[p]), 150, precond=pre)
        assert torch.equal(
            linear.logits(z["test"], one).argmax(1), linear.logits(z["test"], many[p]).argmax(1)
        )
        x, t = z["train"][idx[p]], y["train"][idx[p]]

        def objective(w, x=x, t=t, wd=float(wds[p])):  # mean cross-entropy + wd/2 ||W||^2, bias free
            ce = torch.nn.functional.cross_entropy(linear.logits(x, w), t)
            return float(ce + 0.5 * wd * w[:-1].pow(2).sum())

        assert abs(objective(one) - objective(many[p])) < 1e-4


def test_fewshot_episodes_are_nested_balanced_and_the_same_for_every_learner():
    y = torch.arange(5).repeat(30)
    a = fewshot.class_order(y, torch.arange(5), 10, episode=3)
    assert a.shape == (5, 10) and all((y[a[c]] == c).all() for c in range(5))
    assert torch.equal(a, fewshot.class_order(y, torch.arange(5), 10, episode=3))  # seeded by e alone
    assert not torch.equal(a, fewshot.class_order(y, torch.arange(5), 10, episode=4))
    assert torch.equal(
        fewshot.class_order(y, torch.arange(5), 20, episode=3)[:, :10], a
    )  # 10-shot in 20-shot
    z, ys = _clusters()
    ctx = Context(z, z, ys, 4, EvalConfig(fewshot_ks=[1, 5, 500], fewshot_episodes=3), 0)
    out = fewshot.episodes(ctx, linear.shared(ctx))
    assert sorted(out, key=int) == ["1", "5"]  # 500 is above the smallest class (60): left out
    assert out["5"]["labels"] == 20 and len(out["1"]["linear"]) == 3 and min(out["5"]["knn"]) > 0.9


@pytest.mark.parametrize(
    "setting, message",
    [
        ("eval.fewshot_ks=[]", "eval.fewshot_ks=[]"),
        ("eval.fewshot_ks=[0]", "eval.fewshot_ks=[0]: every item must be >= 1"),
        (
            "eval.fewshot_ks=[5000]",
            "5000-shot needs 5000 training images of every class, the smallest class has",
        ),
        ("eval.fewshot_episodes=0", "eval.fewshot_episodes=0: must be >= 1"),
        (
            "eval.knn_ks=[15]",
            "eval.knn_ks=[15]: every k is more than the 10 labelled images of a 1-shot episode",
        ),
    ],
)
def test_bad_fewshot_settings_are_one_line_before_any_run(setting, message, capsys):
    assert main([*QUICK, "--set", setting, "--set", "eval.label_fractions=[0.5]"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not (store.results_dir() / "runs").exists()


def test_flops_are_counted_and_the_frozen_model_is_left_as_it_was():
    pca = registry.create("pca", config.method_config("pca", {"latent_dim": 16}), GREY8)
    x = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    counted = cost.count(pca, x, torch.zeros(8, dtype=torch.long), torch.device("cpu"))
    assert counted == {"encode_flops": 2 * 64 * 16, "train_flops": None}  # one (64 -> 16) matmul, untrained
    ae = registry.create("ae", config.method_config("ae", {"latent_dim": 16}), GREY8)
    before = evaluate.weights_hash(ae)
    state = torch.random.get_rng_state()
    counted = cost.count(ae, x, torch.zeros(8, dtype=torch.long), torch.device("cpu"))
    assert counted["train_flops"] > 2 * counted["encode_flops"] > 0  # a decoder and a backward pass
    assert evaluate.weights_hash(ae) == before and torch.equal(torch.random.get_rng_state(), state)


def test_stored_runs_get_their_flops_from_the_spec(capsys):
    """`bench cost` fills in the FLOPs a run measured since would have, and nothing else moves."""
    assert main(["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "ae"]) == 0
    (folder,) = store.results_dir().glob("runs/*")
    measured = json.loads((folder / "metrics.json").read_text())
    assert measured["cost"]["latency_ms"] > 0 and measured["env"]["peak_memory_kind"] == "run's peak RSS"
    old = {k: v for k, v in measured.items() if k != "cost"}
    (folder / "metrics.json").write_text(json.dumps(old))
    assert main(["cost"]) == 0
    filled = json.loads((folder / "metrics.json").read_text())
    assert filled["cost"]["counted_from"] == "spec" and filled["cost"]["latency_ms"] is None
    for key in ("encode_flops", "train_flops"):
        assert filled["cost"][key] == measured["cost"][key]
    assert {k: v for k, v in filled.items() if k != "cost"} == old
    assert "1 had them" in (main(["cost"]) == 0 and capsys.readouterr().out)


def test_a_dataset_without_its_own_config_is_named_with_the_command_that_tunes_there(capsys):
    from bench.run.session import Setup

    Setup(dataset="fashion-mnist").resolve()
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("settings:"))
    assert (
        "fashion-mnist has no config of its own" in line and "the learners run with their defaults," in line
    )
    assert "`python -m bench compare --dataset fashion-mnist --latent-dim 16`" in line
    Setup(dataset="mnist").resolve()
    assert "settings:" not in capsys.readouterr().out
