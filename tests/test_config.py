from pathlib import Path

import pytest

from bench import BenchError, config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"default.toml", "mnist.toml", "cifar10.toml", "cifar10-gpu.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses_and_its_methods_resolve(path):
    cfg = config.load(path)
    for name in cfg.grid_methods():
        config.method_config(name, cfg.method_overrides(name))
        cfg.train_for(name)


def test_the_default_grid_is_the_registry():
    from bench import registry

    assert config.load(None).grid_methods() == registry.names()


def test_shared_tables_reach_every_learner_that_has_the_field(tmp_path):
    """A new learner gets its neighbours' widths and augmentations with no config edit."""
    from bench import registry

    path = tmp_path / "c.toml"
    path.write_text(
        "[methods.all]\nchannels = [8, 16]\n[methods.views]\nhflip = false\n[methods.simclr]\nhflip = true\n"
        "[train.views]\nepochs = 40\n[train.byol]\nlr = 0.5\n"
    )
    cfg = config.load(path)
    for name in registry.names():
        cls = registry.get(name)
        resolved = config.method_config(name, cfg.method_overrides(name))
        if "channels" in {f.name for f in __import__("dataclasses").fields(cls.Config)}:
            assert resolved.channels == (8, 16), name
        if cls.family == "views":
            assert resolved.hflip == (name == "simclr"), name  # the learner's own table wins
            assert cfg.train_for(name).epochs == 40
    assert "channels" not in cfg.method_overrides("mae") and "channels" not in cfg.method_overrides("pixels")
    assert cfg.train_for("byol").lr == 0.5 and cfg.train_for("simclr").lr == config.TrainConfig().lr
    assert cfg.train_for("ae").epochs == config.TrainConfig().epochs


@pytest.mark.parametrize(
    "override, message",
    [
        (["methods.all.chanels=8"], "unknown key methods.all.chanels: no learner there has it"),
        (["methods.views.loss=l1"], "unknown key methods.views.loss"),
        (["methods.all.channels=a,b"], "expected int"),
        (["train.nothing.epochs=3"], "unknown method 'nothing'"),
    ],
)
def test_shared_tables_are_checked_too(override, message):
    with pytest.raises(BenchError, match=message):
        config.load(None, override)


def test_layering_defaults_file_then_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 7\nlr = 0.01\n[methods.ae]\nloss = 'l1'\n")
    cfg = config.load(path, ["train.epochs=3", "methods.ae.channels=16,32", "eval.knn_ks=[1,5]"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 0.01 and cfg.train.batch_size == config.TrainConfig().batch_size
    assert cfg.eval.knn_ks == [1, 5]
    ae = config.method_config("ae", cfg.methods["ae"])
    assert ae.loss == "l1" and ae.channels == (16, 32)


@pytest.mark.parametrize(
    "override, message",
    [
        (["train.epoch=3"], "unknown key train.epoch: valid keys are .*epochs"),
        (["trian.epochs=3"], "unknown config section 'trian'"),
        (["methods.ae.los=l1"], "unknown key methods.ae.los: valid keys are .*loss"),
        (["methods.vae2.latent_dim=3"], "unknown method 'vae2'"),
        (["train.epochs=three"], "train.epochs: expected int, got 'three'"),
        (["train.epochs=1.5"], "train.epochs: expected int"),
        (["methods.unet.skips=maybe"], "methods.unet.skips: expected bool"),
        (["epochs"], "expected section.key=value"),
    ],
)
def test_bad_overrides_fail_with_one_clear_message(override, message):
    with pytest.raises(BenchError, match=message):
        config.load(None, override)


def test_per_method_training_budget(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 7\n[train.simclr]\nepochs = 30\n")
    cfg = config.load(path, ["train.simclr.lr=0.5"])
    assert cfg.train.epochs == 7 and cfg.train_for("ae").epochs == 7
    assert cfg.train_for("simclr").epochs == 30 and cfg.train_for("simclr").lr == 0.5
    with pytest.raises(BenchError, match="unknown key train.simclr.epoch"):
        config.load(None, ["train.simclr.epoch=3"])
    with pytest.raises(BenchError, match="unknown method 'vae2'"):
        config.load(None, ["train.vae2.epochs=3"])


def test_bad_toml_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nepochs=")
    with pytest.raises(BenchError, match="not valid TOML"):
        config.load(path)
    with pytest.raises(BenchError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_toml_types_are_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(BenchError, match="train.epochs: expected int"):
        config.load(path)


def test_every_field_of_every_section_and_learner_declares_its_range():
    """A new learner's Config is held to the same rule: `at_least(1, 64)`, `one_of(...)`, ..."""
    import dataclasses

    from bench import registry
    from bench.augment import Views

    classes = [config.DataConfig, config.TrainConfig, config.EvalConfig, config.GridConfig, Views]
    classes += [registry.get(n).Config for n in registry.names()]
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert "rule" in f.metadata, (
                f"{cls.__qualname__}.{f.name} has no declared range (bench/checks.py)"
            )


def test_every_number_field_has_an_upper_bound_that_its_consumers_take():
    """Past int64 nothing here takes an int; a float of 1e300 or a subnormal 1e-320 (which passes
    `> 0`) is no rate, scale or std: every numeric field of every section, learner and encoder
    refuses them as one line, before any run folder exists."""
    import dataclasses
    import typing

    from bench import checks, registry
    from bench.augment import Views
    from bench.plugins import encoders

    classes = [config.DataConfig, config.ProbeConfig, config.TrainConfig, config.EvalConfig]
    classes += [config.GridConfig, Views, encoders.EncoderConfig]
    classes += [registry.get(n).Config for n in registry.names()]
    checked = 0
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            one = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, tuple) else tp
            bad = {int: [2**63, 2**31], float: [1e300, 1e-320, float("inf")]}.get(one, [])
            for value in bad:
                shaped = [value] if one is not tp else value
                with pytest.raises(BenchError, match=f"{f.name}"):
                    checks.validate(dataclasses.replace(cls(), **{f.name: shaped}), "x")
                checked += 1
    assert checked > 150


def test_an_optional_list_takes_a_comma_separated_set():
    """`--set grid.methods=ae,unet` is the list of two learners (it once became letters)."""
    assert config.load(None, ["grid.methods=ae,unet"]).grid.methods == ["ae", "unet"]
