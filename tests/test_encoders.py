"""Pretrained encoders benchmarked as they are, built offline by the tests themselves: a random
conv net saved as TorchScript, a timm resnet18 with weights written here, a factory function,
and this harness's own `ae` exported and re-imported (which must score exactly what its run did)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from bench import BenchError, config, data, registry, store
from bench.commands import export
from bench.report import tables
from bench.run import preflight, runner

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "tests" / "quick.toml"  # every evaluator on the least work; one epoch
TINY = ["data.train_limit=256"]


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    registry.names()
    for attr in ("_METHODS", "_SOURCES", "_RESOLVED", "_RECORDED"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))


@pytest.fixture(scope="module")
def digits():
    cfg = config.load(QUICK, TINY)
    return cfg, data.load(cfg.data)


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


def run(entry, digits, extra=None, seed=0):
    cfg, ds = digits
    (name,) = registry.resolve(entry)
    if extra:
        cfg = config.with_values(cfg, {f"methods.{name}.{k}": v for k, v in extra.items()})
    spec = runner.spec(cfg, ds, name, {}, seed=seed)
    return spec, runner.run_one(spec, ds, torch.device("cpu"))


def test_a_torchscript_file_is_a_baseline_keyed_by_its_bytes(tmp_path, digits):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(conv_net()), path)
    spec, m = run(f"torchscript:{path}", digits)
    assert m["status"] == "ok" and m["latent_dim"] == 32 and m["encoder_unchanged"]
    assert spec.method == "net" and spec.train is None and tables.kind("net") == "baseline"
    assert spec.source["kind"] == "torchscript" and 0.3 < m["linear"]["test_acc"] <= 1
    other = tmp_path / "other.pt"
    other.write_bytes(path.read_bytes())
    spec2, _ = run(f"copy=torchscript:{other}", digits)
    assert spec2.source["sha256"] == spec.source["sha256"]  # same bytes, same code
    net = conv_net()
    with torch.no_grad():
        net[0].bias.add_(1)
    torch.jit.save(torch.jit.script(net), tmp_path / "changed.pt")
    spec3, _ = run(f"changed=torchscript:{tmp_path / 'changed.pt'}", digits)
    assert spec3.source["sha256"] != spec.source["sha256"]


@pytest.mark.parametrize("shipped", sorted(p.name for p in (ROOT / "configs").glob("*.toml")))
def test_the_readme_encoder_example_runs_under_every_shipped_config(tmp_path, digits, shipped):
    """`--methods torchscript:encoder.pt,pca` under each configs/*.toml: `[methods.all] channels =
    [32, 64]` (the networks' stages) does not reach the encoder's `channels: int` (its input)."""
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(conv_net()), path)
    cfg = config.load(ROOT / "configs" / shipped, TINY)
    (name,) = registry.resolve(f"torchscript:{path}")
    shared = cfg.methods.get("all", {})
    assert "channels" not in cfg.method_overrides(name)
    assert cfg.method_overrides("ae").get("channels") == shared.get("channels")
    spec = runner.spec(cfg, digits[1], name, {}, seed=0)
    assert spec.method_config["channels"] == 0
    assert preflight.check([spec], digits[1]) == [spec]  # the encoder builds under this config
    if shipped == "default.toml":  # the config `make bench` reads: the whole run
        assert runner.run_one(spec, digits[1], torch.device("cpu"))["status"] == "ok"


def test_a_shared_value_no_learner_can_take_is_still_an_error():
    with pytest.raises(BenchError, match="methods.all.channels: expected"):
        config.load(None, ["methods.all.channels=[[1]]"])
    with pytest.raises(BenchError, match=r"methods.all.channels=\[32, -1\]: every item must be >= 1"):
        config.load(None, ["methods.all.channels=[32, -1]"])


def test_an_encoder_named_after_a_builtin_is_one_line(tmp_path):
    (tmp_path / "enc.py").write_text("from torch import nn\ndef make():\n    return nn.Flatten()\n")
    with pytest.raises(BenchError, match="'ae' is already registered") as e:
        registry.resolve(f"ae=factory:{tmp_path / 'enc.py'}:make")
    assert "\n" not in str(e.value) and "name it NAME=" in str(e.value)


def test_degenerate_latents_are_measured_or_refused_in_one_line(tmp_path, digits):
    """Where an encoder's output enters the evaluator it is checked once: a constant latent is
    measured (its map is a point: t-SNE crashed on it), integers or a wrong batch size are refused
    with one line naming what the encoder returned."""
    (tmp_path / "odd.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Out(nn.Module):\n"
        "    def __init__(self, f):\n"
        "        super().__init__()\n"
        "        self.f, self.w = f, nn.Parameter(torch.zeros(1))\n"
        "    def forward(self, x):\n"
        "        return self.f(x)\n"
        "def zeros():\n"
        "    return Out(lambda x: torch.zeros(len(x), 4))\n"
        "def ints():\n"
        "    return Out(lambda x: (x.flatten(1) * 255).long())\n"
        "def short():\n"
        "    return Out(lambda x: x.flatten(1)[:-1])\n"
        "def blank_nan():\n"
        "    return Out(lambda x: x.flatten(1) / 0)\n"
        "def wide():\n"
        "    return Out(lambda x: nn.functional.interpolate(x, size=(1790, 1790)).flatten(1))\n"
        "def ink_nan():\n"
        "    return Out(lambda x: torch.where(x > 0.5, float('nan'), x).flatten(1))\n"
    )
    _, m = run(f"factory:{tmp_path / 'odd.py'}:zeros", digits)
    assert m["status"] == "ok" and m["latent_map"]["points"] > 0
    with pytest.raises(BenchError, match=r"the encoder returns torch.int64, not float latents"):
        run(f"factory:{tmp_path / 'odd.py'}:ints", digits)
    with pytest.raises(
        BenchError, match=r"the encoder gives train latents of shape \(\d+, 64\) for \d+ train"
    ):
        run(f"factory:{tmp_path / 'odd.py'}:short", digits)
    (wide,) = registry.resolve(f"factory:{tmp_path / 'odd.py'}:wide")  # 3.2M wide: estimated, refused
    with pytest.raises(BenchError, match=r"needs ~[\d,.]+ GiB .*: choose a narrower output \(methods.wide"):
        preflight.check([runner.spec(*digits, wide, {}, 0)], digits[1])
    with pytest.raises(BenchError, match="gives NaN or inf on blank images"):
        registry.resolve(f"factory:{tmp_path / 'odd.py'}:blank_nan") and run(  # refused as it is built
            f"factory:{tmp_path / 'odd.py'}:blank_nan", digits
        )
    with pytest.raises(BenchError, match="not finite .* with nothing trained: check its weights") as e:
        run(f"factory:{tmp_path / 'odd.py'}:ink_nan", digits)  # nothing diverged: no 'lower train.lr'
    assert "train.lr" not in str(e.value)
    folders = list(store.results_dir().glob("runs/*"))
    assert len(folders) == 1 and (folders[0] / "metrics.json").is_file()  # zeros; the refused left nothing


def test_a_timm_model_with_a_local_weights_file(tmp_path, digits):
    net = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=10)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "r18.pth")  # a training checkpoint
    spec, m = run(f"timm:resnet18@{tmp_path / 'r18.pth'}", digits, {"size": 32})
    assert m["status"] == "ok" and m["latent_dim"] == 512  # the classifier is removed: pooled features
    model = registry.create("resnet18", config.method_config("resnet18", {}), digits[1].shape)
    assert model.takes == 1 and model.normalise  # one channel read from the weights; timm's mean/std
    layer = registry.create(
        "resnet18", config.method_config("resnet18", {"layer": "layer3"}), digits[1].shape
    )
    assert layer.latent_dim == 256
    rgb = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pth")
    (name,) = registry.resolve(f"rgb18=timm:resnet18@{tmp_path / 'rgb.pth'}")
    grey_to_rgb = registry.create(name, config.method_config(name, {}), digits[1].shape)
    assert grey_to_rgb.takes == 3 and grey_to_rgb.adapt(torch.rand(2, 1, 8, 8)).shape == (2, 3, 8, 8)


def test_bad_weights_files_are_one_line(tmp_path):
    net = timm.create_model("resnet18", pretrained=False, num_classes=0)
    state = net.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4")}, tmp_path / "missing.pth")
    wrong = dict(state)
    wrong["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(wrong, tmp_path / "shape.pth")
    (tmp_path / "corrupt.pth").write_bytes((tmp_path / "shape.pth").read_bytes()[:5000])
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "code.pth")  # a pickled module: code, refused
    cases = {
        f"timm:resnet18@{tmp_path / 'missing.pth'}": "does not fit timm resnet18: .* missing key",
        f"timm:resnet18@{tmp_path / 'shape.pth'}": r"of another shape \(conv1.weight: \(64, 3, 5, 5\)",
        f"timm:resnet18@{tmp_path / 'corrupt.pth'}": "not readable by torch.load",
        f"timm:resnet18@{tmp_path / 'code.pth'}": "holds more than tensors",
        f"timm:resnet18@{tmp_path / 'absent.pth'}": "not found",
        "timm:resnet18": "give the weights file",
        f"timm:notamodel@{tmp_path / 'shape.pth'}": "timm has no model 'notamodel'",
        f"torchscript:{tmp_path / 'shape.pth'}": "not a readable TorchScript file",
    }
    for entry, message in cases.items():
        with pytest.raises(BenchError, match=message) as e:
            registry.resolve(entry)
        assert "\n" not in str(e.value), entry
    r = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--methods", f"timm:resnet18@{tmp_path / 'corrupt.pth'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: weights file") and "Traceback" not in r.stderr


def test_a_factory_function_with_optional_weights(tmp_path, digits):
    (tmp_path / "encoders.py").write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
        "def nothing():\n"
        "    return 3\n"
        "def leave():\n"
        "    raise SystemExit(4)\n"
    )
    spec, m = run(f"factory:{tmp_path / 'encoders.py'}:make", digits)
    assert spec.method == "make" and m["latent_dim"] == 10 and m["status"] == "ok"
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    spec2, _ = run(f"loaded=factory:{tmp_path / 'encoders.py'}:make@{tmp_path / 'w.pt'}", digits)
    assert spec2.source["sha256"] != spec.source["sha256"]
    with pytest.raises(BenchError, match=r"nothing\(\) returned int, not an nn.Module"):
        registry.resolve(f"factory:{tmp_path / 'encoders.py'}:nothing")
    with pytest.raises(BenchError, match="has no function 'absent'"):
        registry.resolve(f"factory:{tmp_path / 'encoders.py'}:absent")
    with pytest.raises(BenchError, match=r"leave\(\) raised SystemExit\(4\)"):  # not the end of the process
        registry.resolve(f"factory:{tmp_path / 'encoders.py'}:leave")


def test_an_exported_harness_encoder_scores_exactly_what_its_run_scored(tmp_path, digits):
    cfg, ds = digits
    for method in ("ae", "random"):  # a trained learner from its checkpoint, a baseline from its seed
        spec = runner.spec(cfg, ds, method, {"latent_dim": 16, "channels": (8, 16)}, seed=1)
        before = runner.run_one(spec, ds, torch.device("cpu"))
        run_ = next(r for r in store.load_runs() if r["key"] == spec.key)
        path = tmp_path / f"{method}.pt"
        export.write_encoder(path, run_, ds, export.frozen_model(run_, ds, torch.device("cpu"), False))
        again, after = run(f"{method}_again=torchscript:{path}", digits, seed=1)
        for e in ("linear", "mlp", "knn"):
            assert after[e]["test_acc"] == before[e]["test_acc"], (method, e)
        ours = store.load_artifact(store.run_dir(spec.key), "predictions")
        theirs = store.load_artifact(store.run_dir(again.key), "predictions")
        assert np.array_equal(ours["linear"], theirs["linear"]) and np.array_equal(ours["y"], theirs["y"])
    with pytest.raises(BenchError, match="no cached checkpoint"):
        store.cache_dir().joinpath("ckpt", f"{spec.train_key}.pt").unlink(missing_ok=True)
        other = runner.spec(cfg, ds, "ae", {"latent_dim": 16, "channels": (8, 16)}, seed=1)
        store.cache_dir().joinpath("ckpt", f"{other.train_key}.pt").unlink(missing_ok=True)
        run_ = next(r for r in store.load_runs() if r["key"] == other.key)
        export.frozen_model(run_, ds, torch.device("cpu"), False)
