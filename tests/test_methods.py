"""The method contract, checked for every registered learner: a new file in methods/ is tested
the moment it exists (tiny shapes here; a tiny train + evaluate on digits; its search space
sampled by a real Optuna sampler; its config through JSON and back)."""

import dataclasses
import json

import optuna
import pytest
import torch

from bench import BenchError, config, data, registry, store
from bench.config import Config
from bench.method import Unsupported
from bench.run import runner
from bench.studies import tune
from tests.conftest import GREY8, RGB32, ROOT

TINY = {"channels": (8, 16), "latent_dim": 12}
QUICK = ROOT / "tests" / "quick.toml"  # the digits protocol at a test's budget


def build(name, shape):
    """A tiny instance: small channel widths and a 12-d latent where the learner has them."""
    fields = {f.name for f in dataclasses.fields(registry.get(name).Config)}
    model = registry.create(
        name, config.method_config(name, {k: v for k, v in TINY.items() if k in fields}), shape
    )
    x_train = (torch.rand(64, shape.channels, shape.height, shape.width) * 255).to(torch.uint8)
    model.prepare(x_train)
    return model


def _step(model, x):
    return model.training_step(x, torch.arange(len(x)) % 10) if model.needs_labels else model.training_step(x)


@pytest.mark.parametrize("shape", [GREY8, RGB32], ids=["grey8", "rgb32"])
@pytest.mark.parametrize("name", registry.names())
def test_contract(name, shape):
    model = build(name, shape)
    x = torch.rand(6, shape.channels, shape.height, shape.width)
    model.eval()
    z = model.encode(x)
    assert z.shape == (6, model.latent_dim)
    assert torch.equal(z, model.encode(x)), "encode must be deterministic in eval()"
    if model.reconstructs:
        assert model.reconstruct(x).shape == x.shape
        assert torch.equal(model.reconstruct(x), model.reconstruct(x))
    if not model.trainable:
        return
    model.train()
    out = _step(model, x)
    loss = out["loss"] if isinstance(out, dict) else out
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", registry.names())
def test_declared_capabilities_match_the_class(name):
    cls = registry.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert cls.takes_latent_dim == ("latent_dim" in fields), "takes_latent_dim must match Config"
    has_reconstruct = callable(getattr(cls, "reconstruct", None))
    assert cls.reconstructs == has_reconstruct, "reconstructs must match a reconstruct() method"
    assert cls.trainable or not cls.needs_labels
    if registry.source(name) is None:  # a learner of methods/ (one from outside lives where it likes)
        assert cls.__module__ == f"methods.{name}", "one learner, one file named after it"


@pytest.mark.parametrize("name", registry.names())
def test_tiny_run_on_digits_freezes_the_encoder(name):
    cfg = config.load(QUICK, ["data.train_limit=256"])  # every evaluator, on the least work
    ds = data.load(cfg.data)
    fields = {f.name for f in dataclasses.fields(registry.get(name).Config)}
    spec = runner.spec(cfg, ds, name, {k: v for k, v in TINY.items() if k in fields}, seed=0)
    m = runner.run_one(spec, ds, torch.device("cpu"))
    assert m["status"] == "ok" and m["encoder_unchanged"] is True
    assert 0 <= m["linear"]["test_acc"] <= 1
    assert m["latent_dim"] == 12 if "latent_dim" in fields else m["latent_dim"] >= 1  # pixels: 64
    assert (m["recon"] is not None) == registry.get(name).reconstructs
    assert store.is_done(spec.key)


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.tunable(n)])
def test_search_space_samples_and_builds(name):
    """A real sampler (not hand-written values) proposes points; each must build and replay."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = Config()
    cfg.grid.latent_dims = [12]
    ds = data.load(cfg.data)
    for _ in range(3):
        trial = study.ask()
        params = registry.get(name).search_space(trial)
        spec = tune.trial_spec(cfg, ds, name, params, seed=0, steer_only=True)
        registry.create(name, config.method_config(name, spec.method_config), ds.shape)
        assert tune._replay(name, trial.params) == params  # the best trial can be re-run
        study.tell(trial, 0.5)


@pytest.mark.parametrize("name", registry.names())
def test_config_round_trips_through_json(name):
    cfg = config.method_config(name, {})
    back = config.method_config(name, json.loads(json.dumps(config.to_dict(cfg))))
    assert back == cfg


def test_register_rejects_duplicates_and_misnamed_files():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ae")(type("Other", (), {}))
    misnamed = type("Misnamed", (), {"__module__": "methods.something"})
    with pytest.raises(ValueError, match="name the file"):
        registry.register("other")(misnamed)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(BenchError, match="choose from .*simclr"):
        registry.get("vae2")


def test_discovery_finds_every_file_in_methods():
    from pathlib import Path

    files = {p.stem for p in Path(registry.__file__).parent.parent.joinpath("methods").glob("*.py")}
    assert {n for n in registry.names() if registry.source(n) is None} == files - {"__init__"}


def test_labels_reach_only_a_learner_that_declares_them(monkeypatch):
    """The harness hands training labels to `supervised` and to no label-free learner."""
    seen = {}
    for name in ("ae", "supervised"):
        cls = registry.get(name)
        real = cls.training_step

        def spy(self, *args, _real=real, _name=name):
            seen.setdefault(_name, []).append(len(args))
            if len(args) == 2:
                assert torch.equal(args[1].unique(), torch.arange(10))  # real digit labels
            return _real(self, *args)

        monkeypatch.setattr(cls, "training_step", spy)
    cfg = config.load(QUICK, ["data.train_limit=256"])
    ds = data.load(cfg.data)
    for name in ("ae", "supervised"):
        runner.run_one(runner.spec(cfg, ds, name, TINY, seed=0), ds, torch.device("cpu"))
    assert set(seen["ae"]) == {1} and set(seen["supervised"]) == {2}
    model = build("ae", GREY8)
    with pytest.raises(BenchError, match="needs_labels"):
        from bench.run import train

        train.fit(
            model,
            ds.x_train[:64],
            config.TrainConfig(epochs=1),
            0,
            torch.device("cpu"),
            y_train=ds.y_train[:64],
        )


def test_byol_target_follows_the_cosine_momentum_schedule():
    model = build("byol", GREY8)
    online = [p.detach().clone() for p in model.backbone.parameters()]
    target = [p.detach().clone() for p in model.target[0].parameters()]
    assert all(torch.equal(a, b) for a, b in zip(online, target))  # starts as a copy
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    model.on_step(1, 100)
    m = model.ema
    assert 0.99 <= m < 1
    for t0, p, t in zip(target, model.backbone.parameters(), model.target[0].parameters()):
        assert torch.allclose(t, m * t0 + (1 - m) * p, atol=1e-6)
    model.on_step(100, 100)
    assert model.ema == pytest.approx(1.0)  # the target freezes at the end of training
    assert not any(p.requires_grad for p in model.target.parameters())


def test_training_loop_calls_the_step_hook_and_logs_loss_terms():
    cfg = config.load(QUICK, ["train.epochs=2", "data.train_limit=256"])
    ds = data.load(cfg.data)
    m = runner.run_one(runner.spec(cfg, ds, "vae", TINY, seed=0), ds, torch.device("cpu"))
    terms = m["train"]["terms_per_epoch"]
    assert set(terms) == {"recon", "kl"} and all(len(v) == 2 for v in terms.values())
    assert terms["kl"][0] > 0
    calls = []
    model = build("byol", GREY8)
    model.on_step = lambda step, total: calls.append((step, total))
    from bench.run import train

    train.fit(model, ds.x_train[:256], config.TrainConfig(epochs=2, batch_size=128), 0, torch.device("cpu"))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_spatial_bottleneck_expresses_the_classic_256x2x2():
    cfg = config.method_config(
        "ae", {"channels": (32, 64, 128, 256), "bottleneck": "spatial", "latent_dim": 1024}
    )
    model = registry.create("ae", cfg, RGB32)
    model.eval()
    assert model.encode(torch.rand(2, 3, 32, 32)).shape == (2, 1024)
    assert model.bottleneck.down[0].out_channels == 256  # 256 channels x 2 x 2


def test_unet_without_skips_ignores_encoder_features():
    cfg = config.method_config("unet", {"channels": (8, 16), "skips": False, "latent_dim": 4})
    model = registry.create("unet", cfg, GREY8).eval()
    x = torch.rand(3, 1, 8, 8)
    z = model.encode(x)
    assert torch.allclose(model.reconstruct(x), model.decoder(model.bottleneck.up(z)))


def test_pca_reconstructs_exactly_at_full_rank():
    x = torch.rand(200, 1, 8, 8)
    model = registry.create("pca", config.method_config("pca", {"latent_dim": 64}), GREY8)
    model.prepare((x * 255).round().to(torch.uint8))
    x = (x * 255).round() / 255
    assert torch.allclose(model.reconstruct(x), x, atol=1e-4)


def test_patches_are_seeded_normalised_and_brightness_free():
    """Random-patch features (Coates & Ng 2011): the run's seed draws the filters, each patch is
    normalised before it is compared (so adding a constant to an image changes nothing), and a
    latent size that K filters x pool^2 cells cannot make is refused as unsupported."""
    torch.manual_seed(0)
    a = build("patches", RGB32)
    torch.manual_seed(0)
    b = build("patches", RGB32)
    torch.manual_seed(1)
    c = build("patches", RGB32)
    assert torch.equal(a.filters, b.filters) and not torch.equal(a.filters, c.filters)
    assert a.filters.shape == (3, 75) and torch.allclose(a.filters.norm(dim=1), torch.ones(3))
    x = torch.rand(4, 3, 32, 32) * 0.5
    z = a.encode(x)
    assert z.shape == (4, 12) and (z >= 0).all() and z.abs().sum() > 0
    assert torch.allclose(a.encode(x + 0.3), z, atol=1e-4)
    with pytest.raises(Unsupported, match="pool"):
        registry.create("patches", config.method_config("patches", {"latent_dim": 10}), RGB32)


def test_dae_corruption_is_batched_and_bounded():
    model = build("dae", GREY8)
    x = torch.rand(16, 1, 8, 8)
    noisy = model.corrupt(x)
    assert noisy.shape == x.shape and noisy.min() >= 0 and noisy.max() <= 1
    assert not torch.equal(noisy, x)


def test_vae_latent_is_the_posterior_mean_and_kl_is_zero_at_the_prior():
    model = build("vae", GREY8).eval()
    x = torch.rand(4, 1, 8, 8)
    feat, _ = model.encoder(model.normalize(x))
    assert torch.equal(model.encode(x), model.bottleneck.down(feat))
    with torch.no_grad():  # a posterior equal to the prior: KL exactly 0
        for p in list(model.bottleneck.down.parameters()) + list(model.logvar.parameters()):
            p.zero_()
    assert model.train().training_step(x)["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_mae_masks_the_ratio_and_pastes_visible_patches():
    model = build("mae", RGB32).eval()
    assert model.patch == 4 and model.tokens == 64
    x = torch.rand(2, 3, 32, 32)
    pred, target, idx_mask = model._predict(x, torch.rand(2, model.tokens))
    assert pred.shape == target.shape == (2, 48, 48)  # 75% of 64 patches, 4x4x3 values each
    from lightly.models import utils

    same = (utils.patchify(model.reconstruct(x), 4) == utils.patchify(x, 4)).all(-1)  # (2, 64)
    assert same.sum(1).tolist() == [16, 16]  # the visible 25% are the input's own pixels
    assert torch.equal(same[0], same[1])  # one fixed mask for every image


def test_resnet18_backbone_with_cifar_stem():
    cfg = config.method_config("simclr", {"backbone": "resnet18", "latent_dim": 512, "proj_hidden": 64})
    model = registry.create("simclr", cfg, RGB32)
    assert model.backbone.conv1.stride == (1, 1)  # CIFAR stem: 3x3 stride 1, no max-pool
    x = torch.rand(4, 3, 32, 32)
    assert torch.isfinite(model.training_step(x))
    assert model.eval().encode(x).shape == (4, 512)
    with pytest.raises(BenchError, match="set latent_dim=512"):
        registry.create("simclr", config.method_config("simclr", {"backbone": "resnet18"}), RGB32)


def test_an_encoder_that_changes_during_evaluation_fails_the_run(monkeypatch):
    cls = registry.get("ae")
    real = cls.encode

    def drifting(self, x):
        with torch.no_grad():
            self.bottleneck.down[1].bias.add_(1e-3)  # a learner whose encode() mutates itself
        return real(self, x)

    monkeypatch.setattr(cls, "encode", drifting)
    cfg = config.load(QUICK, ["data.train_limit=256"])
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "ae", TINY, seed=0)
    with pytest.raises(BenchError, match="evaluation changed the encoder's weights"):
        runner.run_one(spec, ds, torch.device("cpu"))
    assert not store.is_done(spec.key)


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.get(n).trainable])
def test_a_stopped_training_resumes_bit_for_bit(name, tmp_path):
    """Stopped after its first epoch and resumed (in what could be a new process: another global
    RNG state), a training ends with the weights and losses of the uninterrupted one."""
    from bench.run import train

    ds = data.load(config.DataConfig())
    x, y = ds.x_train[:384], ds.y_train[:384]
    cfg = config.TrainConfig(epochs=3, batch_size=128, warmup_epochs=1)
    cpu = torch.device("cpu")

    def fit(model, **kw):
        return train.fit(model, x, cfg, 0, cpu, y_train=y if model.needs_labels else None, **kw)

    def fresh():
        torch.manual_seed(0)
        fields = {f.name for f in dataclasses.fields(registry.get(name).Config)}
        small = {k: v for k, v in {**TINY, "kl_warmup": 1.0}.items() if k in fields}  # a KL weight that moves
        return registry.create(name, config.method_config(name, small), ds.shape)

    whole = fresh()
    expected = fit(whole)
    path = tmp_path / "resume.pt"

    def stop(epoch, model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(fresh(), on_epoch=stop, resume=path, resume_every_s=0)
    assert path.is_file()
    resumed = fresh()
    torch.manual_seed(12345)  # a new process starts from another RNG state
    got = fit(resumed, resume=path, resume_every_s=0)
    assert got["resumed_after_epoch"] == 1 and not path.exists()
    assert got["loss_per_epoch"] == expected["loss_per_epoch"]
    assert got["terms_per_epoch"] == expected["terms_per_epoch"]
    want = whole.state_dict()
    assert all(torch.equal(t, want[k]) for k, t in resumed.state_dict().items())
