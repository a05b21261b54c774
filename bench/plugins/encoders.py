"""Frozen pretrained encoders, evaluated as they are: nothing is trained, the evaluator measures
their latents like any baseline's, and the tables show them beside the learners.

Given where a learner's name goes, as `[NAME=]KIND:...` (NAME defaults to the file's stem, the
timm model or the function):
- `torchscript:PATH`: a TorchScript file (`torch.jit.save`); `bench export RUN --encoder PATH`
  writes one from a run of this harness. TorchScript files are code: load only files you trust.
- `timm:MODEL@WEIGHTS`: a timm architecture with the weights in a local file (nothing is
  downloaded); its input channels and classifier size are read from the weights, its classifier
  is then removed, so the latent is timm's pooled features.
- `factory:MODULE:FUNCTION[@WEIGHTS]`: `FUNCTION()` of a module (a dotted name or a .py file)
  returns the `nn.Module`; the weights, if given, are loaded into it strictly.
Weights files are read with `torch.load(weights_only=True)` (tensors only, never code) and must
fit the architecture key for key and shape for shape. A run is keyed by the sha256 of the files.

Input handling is the encoder's `Config`, set like any learner's (`--set methods.NAME.size=224`):
`channels` (grey images are repeated for an encoder that takes three, colour becomes grey, ITU-R
BT.601 luma, for one that takes one; 0: what it takes, a timm model's from its weights, the
data's for the others), `size` (bilinear, antialiased resize to size x size; 0: keep the data's),
`mean`/`std` (normalisation after that; empty: a timm model's pretrained_cfg values, none for the
others, which get [0, 1] images like every learner here) and `layer` (the latent is that named
submodule's output, average-pooled over space or tokens, instead of the module's own output).
"""

from __future__ import annotations

import copy
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench import BenchError, nets
from bench.checks import any_value, at_least, one_of, values_within
from bench.method import InputShape, Method
from bench.plugins import outside


@dataclass
class EncoderConfig:
    size: int = at_least(0, 0)  # resize to size x size; 0: the data's own size
    channels: int = one_of((0, 1, 3), 0)  # 0: what the encoder takes
    mean: list[float] = values_within(-1e3, 1e3, [], "per channel; empty: the encoder's")
    std: list[float] = values_within(0, 1e3, [], "per channel; empty: the encoder's", open_lo=True)
    layer: str = any_value("", "a submodule's name from named_modules() (empty: the output)")


class Encoder(Method):
    """A frozen module given from outside; each `--methods` item makes a subclass (`make`)."""

    trainable = False
    takes_latent_dim = False
    search_space = None
    Config = EncoderConfig
    kind = ""  # torchscript, timm or factory
    target = ""  # the TorchScript file, the timm model name or MODULE:FUNCTION
    weights = ""  # the weights file (timm, factory)
    built: tuple | None = None  # (module, channels it takes or None, mean, std), loaded once

    def __init__(self, cfg: EncoderConfig, shape: InputShape):
        super().__init__(cfg, shape)
        net, takes, mean, std = type(self).build()
        self.net = copy.deepcopy(net).eval()
        self.takes = cfg.channels or takes or shape.channels
        if self.takes != shape.channels and {self.takes, shape.channels} != {1, 3}:
            raise BenchError(
                f"{self.name}: takes {self.takes} channels; {shape.channels}-channel images cannot be adapted"
            )
        mean, std = list(cfg.mean or _fit(mean, self.takes)), list(cfg.std or _fit(std, self.takes))
        if len(mean) != len(std) or (mean and len(mean) != self.takes) or any(s <= 0 for s in std):
            raise BenchError(
                f"methods.{self.name}.mean/std: give {self.takes} values each (std > 0), got {mean} and {std}"
            )
        self.normalise = bool(mean)
        view = (1, len(mean) or 1, 1, 1)
        self.register_buffer("in_mean", torch.tensor(mean or [0.0]).view(view), persistent=False)
        self.register_buffer("in_std", torch.tensor(std or [1.0]).view(view), persistent=False)
        self.kept = None
        if cfg.layer:
            self._hook(cfg.layer)
        try:
            with torch.no_grad():
                z = self.encode(torch.zeros(2, shape.channels, shape.height, shape.width))
        except BenchError:
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise BenchError(
                f"{self.name}: the encoder fails on {shape.channels}x{shape.height}x{shape.width} images "
                f"({type(e).__name__}: {first}); see methods.{self.name}.size and .channels"
            ) from None
        if z.is_floating_point() and not z.is_meta and not torch.isfinite(z).all():
            raise BenchError(f"{self.name}: the encoder gives NaN or inf on blank images: check its weights")
        self.latent_dim = z.shape[1]

    @classmethod
    def build(cls) -> tuple:
        if cls.built is None:
            cls.built = {"torchscript": _torchscript, "timm": _timm, "factory": _factory}[cls.kind](cls)
        return cls.built

    def _hook(self, layer: str) -> None:
        if isinstance(self.net, torch.jit.ScriptModule):
            raise BenchError(f"methods.{self.name}.layer: a TorchScript encoder gives its output only")
        try:
            sub = self.net.get_submodule(layer)
        except AttributeError:
            some = ", ".join(n for n, _ in list(self.net.named_modules())[1:6])
            raise BenchError(
                f"methods.{self.name}.layer={layer!r}: no such submodule (e.g. {some})"
            ) from None
        sub.register_forward_hook(lambda module, args, out: setattr(self, "kept", out))

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # evaluated as it is: its BatchNorm statistics never move
        return self

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of the data's geometry -> what the encoder takes (`nets.adapt_images`)."""
        size = self.cfg.size
        x = nets.adapt_images(x, self.takes, size or x.shape[-2], size or x.shape[-1])
        return (x - self.in_mean) / self.in_std if self.normalise else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.adapt(x))
        if self.cfg.layer:
            out, self.kept = self.kept, None
        if isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise BenchError(f"{self.name}: the encoder returns {type(out).__name__}, not a tensor")
        if self.cfg.layer and out.ndim == 4:
            out = out.mean((2, 3))  # (B, C, H, W) -> (B, C)
        elif self.cfg.layer and out.ndim == 3:
            out = out.mean(1)  # tokens (B, N, D) -> (B, D)
        return out.flatten(1)


def _fit(values, channels: int) -> list[float]:
    """An encoder's default per-channel values for `channels` channels (RGB values averaged for a
    one-channel encoder, as timm adapts its first convolution)."""
    values = list(values or [])
    if values and len(values) != channels:
        values = [sum(values) / len(values)] * channels
    return values


def make(entry: str) -> tuple[str, type, outside.Source]:
    """The encoder a `[NAME=]KIND:...` item gives: (its name, its class, its source)."""
    m = outside.ENCODER.match(entry)
    kind, target, weights = m["kind"], m["target"], ""
    if kind in ("timm", "factory") and "@" in target:
        target, weights = target.rsplit("@", 1)
    if kind == "timm" and not weights:
        raise BenchError(f"{entry}: give the weights file, timm:MODEL@WEIGHTS (nothing is downloaded)")
    files = [] if kind == "timm" else [Path(target)] if kind == "torchscript" else _factory_files(target)
    files += [Path(weights)] if weights else []
    for f in files:
        if not f.is_file():
            raise BenchError(f"{entry}: file {f} not found")
    default = Path(target).stem if kind == "torchscript" else target.rsplit(":", 1)[-1]
    name = m["name"] or re.sub(r"[^A-Za-z0-9_-]", "_", default)
    cls = type(
        f"Encoder_{name}",
        (Encoder,),
        {"kind": kind, "target": target, "weights": weights, "__module__": __name__, "built": None},
    )
    cls.build()  # a missing, corrupt or mismatched file fails now, as one line
    what = {"torchscript": "", "timm": target, "factory": target.rsplit(":", 1)[-1]}[kind]  # not paths
    extra = f"{kind}:{what}".encode()
    return (
        name,
        cls,
        outside.Source(kind, entry, outside.digest_files(files, extra), {}, files=tuple(files), extra=extra),
    )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file, tensors only (`weights_only=True`), unwrapped from the
    usual checkpoint containers (`state_dict`, `model`, `state`: this harness's) and DataParallel's
    `module.` prefix."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise BenchError(
            f"weights file {path} holds more than tensors (weights_only=True refuses code): save a state_dict"
        ) from None
    except Exception as e:
        raise BenchError(
            f"weights file {path} is not readable by torch.load (corrupt or truncated: {type(e).__name__})"
        ) from None
    for key in ("state_dict", "model", "state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"weights file {path} holds no state dict (a dict of tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def fit(model: nn.Module, state: dict, path: Path, what: str) -> None:
    """Load `state` into `model` strictly; a file that does not fit is one line naming how."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    for what_, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(
                f"{len(keys)} {what_} key(s) ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            )
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of another shape ({k}: {tuple(state[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the model)"
        )
    if parts:
        raise BenchError(f"weights file {path} does not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def _torchscript(cls) -> tuple:
    path = Path(cls.target)
    try:
        with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; it loads all the same
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise BenchError(f"{path} is not a readable TorchScript file (torch.jit.save): {first}") from None
    return net, None, None, None


def _timm(cls) -> tuple:
    import timm

    name, path = cls.target, Path(cls.weights)
    if not timm.is_model(name):
        raise BenchError(f"timm has no model {name!r} (timm.list_models('{name[:6]}*') lists its neighbours)")
    state = read_weights(path)
    convs = [t for t in state.values() if t.ndim == 4]
    in_chans = convs[0].shape[1] if convs else 3
    with torch.device("meta"):
        probe = timm.create_model(name, pretrained=False, in_chans=in_chans)
    head = probe.pretrained_cfg.get("classifier") or ""
    head = head[0] if isinstance(head, list | tuple) else head
    classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else 0
    net = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=classes)
    fit(net, state, path, f"timm {name}")
    net.reset_classifier(0)  # the latent is the pooled features, not the class scores
    cfg = net.pretrained_cfg
    return net, in_chans, cfg.get("mean"), cfg.get("std")


def _factory_files(target: str) -> list[Path]:
    module, _, function = target.rpartition(":")
    if not module or not function:
        raise BenchError(
            f"factory:{target}: expected factory:MODULE:FUNCTION (MODULE a dotted name or a .py file)"
        )
    if module.endswith(".py") or "/" in module:
        return [Path(module)]
    return outside.module_files(outside.import_module(module))


def _factory(cls) -> tuple:
    module, _, function = cls.target.rpartition(":")
    is_file = module.endswith(".py") or "/" in module
    mod = outside.import_file(Path(module)) if is_file else outside.import_module(module)
    make = getattr(mod, function, None)
    if not callable(make):
        raise BenchError(f"factory:{cls.target}: {module} has no function {function!r}")
    try:
        net = make()
    except (Exception, SystemExit) as e:
        raise BenchError(f"factory:{cls.target}: {function}() raised {outside.failure(e)}") from None
    if not isinstance(net, nn.Module):
        raise BenchError(
            f"factory:{cls.target}: {function}() returned {type(net).__name__}, not an nn.Module"
        )
    if cls.weights:
        fit(net, read_weights(Path(cls.weights)), Path(cls.weights), f"{function}()")
    return net, None, None, None
