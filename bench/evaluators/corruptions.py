"""Corruption robustness: the linear probe fitted on clean latents, scored on corrupted test images
encoded by the frozen encoder. Nothing is refitted on corrupted data.

Two suites, chosen by the images: colour images get CIFAR-10-C's corruptions (Hendrycks &
Dietterich 2019; bench/evaluators/_cifar_c.py), grey images MNIST-C's (Mu & Gilmer 2019;
bench/evaluators/_mnist_c.py). `eval.corruption_names` picks among the families both define
(noise, blur, fog, brightness, contrast, pixelate, JPEG), each at its suite's parameters;
`eval.corruption_mnist_c` among MNIST-C's own (glass and motion blur, affine maps, spatter,
stripe, lines, edges), measured on grey images only. A graded corruption is measured at each of
`eval.corruption_severities` (1-5), one with a single form (stripe, lines, edges) once, under
severity "-". The mean corrupted accuracy is the mean over corruptions of each one's mean over
its severities.

Every corruption is seeded by its name and severity alone, so every run of a dataset sees the same
corrupted images; they are made once per dataset from a fixed random sample of
`eval.corruption_images` test images and kept in the project's cache (`Context.kept`). Each
(corruption, severity) is one test read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from bench.checks import at_least, one_of
from bench.evaluators import Card, Column, Context, Evaluator, listed, register
from bench.evaluators.linear import hits, logits
from bench.evaluators.ood import encode

SEVERITIES = (1, 2, 3, 4, 5)
SHARED = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "defocus_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg",
)  # fmt: skip  (the families both suites define)
OWN = (
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "translate",
    "spatter",
    "stripe",
    "dotted_line",
    "zigzag",
    "canny_edges",
)  # fmt: skip  (MNIST-C's beyond them: grey images)
ONE_FORM = ("stripe", "dotted_line", "zigzag", "canny_edges")  # measured once, under severity "-"


def suite(channels: int) -> dict:
    """The corruptions of images with `channels` channels: MNIST-C's for grey, CIFAR-10-C's else
    (their modules, with scipy and Pillow, are imported only when images are corrupted)."""
    from bench.evaluators import _cifar_c, _mnist_c

    return _mnist_c.CORRUPTIONS if channels == 1 else _cifar_c.CORRUPTIONS


def corrupt(x: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) under corruption `name` of their suite at `severity` (1-5; one
    with a single form ignores it): uint8, seeded by the name and severity alone."""
    seed = int.from_bytes(hashlib.sha256(f"{name}/{severity}".encode()).digest()[:4], "little")
    change = suite(x.shape[1])[name]
    out = change(x.numpy().astype(np.float64) / 255, severity, np.random.default_rng(seed))
    if not np.isfinite(out).all():
        raise ValueError(f"corruption {name} severity {severity} made non-finite pixels")
    return torch.from_numpy(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))


def _get(which: str):
    return lambda m: (
        (m.get("corruptions") or {}).get(which) if isinstance(m.get("corruptions"), dict) else None
    )


@register("corruptions")
class Corruptions(Evaluator):
    order = 72
    # 1: CIFAR-10-C's 11 corruptions at its 32 px parameters on every image, grey ones too;
    # 2: MNIST-C's suite for grey images; 3: also keeps which images it got right (corrupted.npz)
    version = 3
    needs_model = True
    columns = (
        Column("corrupted", _get("mean_acc"), scale=100, spread=False),
        Column("corruption_drop", _get("drop"), scale=100, spread=False),
        Column("corruption_relative", _get("relative"), scale=100, spread=False),
    )

    @dataclass
    class Config:
        corruption_names: list[str] = one_of(SHARED, list(SHARED), each=True)  # at its suite's parameters
        corruption_mnist_c: list[str] = one_of(OWN, list(OWN), each=True, empty=True)  # grey images only
        corruption_severities: list[int] = one_of(SEVERITIES, list(SEVERITIES), each=True)
        corruption_images: int = at_least(0, 2000, hi=1_000_000)  # test images corrupted (0: not measured)

    def card(self, cfg) -> list[Card]:
        if not cfg.corruption_images:
            return []
        severities = listed(sorted(set(cfg.corruption_severities)))
        graded = [n for n in dict.fromkeys(cfg.corruption_mnist_c) if n not in ONE_FORM]
        once = [n for n in dict.fromkeys(cfg.corruption_mnist_c) if n in ONE_FORM]
        lines = [
            (
                f"linear on {listed(sorted(set(cfg.corruption_names)))} x severities {severities}",
                len(set(cfg.corruption_names)) * len(set(cfg.corruption_severities)),
            )
        ]
        if graded or once:
            lines.append((
                f"linear on MNIST-C's {listed(sorted(graded))} x severities {severities}"
                + (f" and {listed(sorted(once))}" if once else "") + ", grey images",
                len(graded) * len(set(cfg.corruption_severities)) + len(once),
            ))  # fmt: skip
        scored = "corrupted test images"
        return [Card(f"{m} (the clean probe)", "nothing", "-", "-", scored, n) for m, n in lines if n]

    def cells(self, metrics: dict) -> dict:
        """The columns, and `corrupted:NAME`: the accuracy under each corruption, mean over its
        severities (`bench runs`' CSV: what the findings compare per corruption)."""
        out = super().cells(metrics)
        found = metrics.get("corruptions")
        for name, by in ((found or {}).get("accuracy") or {}).items() if isinstance(found, dict) else ():
            out[f"corrupted:{name}"] = sum(by.values()) / len(by)
        return out

    def extra_csv(self, columns) -> list[str]:
        return [c for c in columns if c.startswith("corrupted:")]

    def __call__(self, ctx: Context) -> dict:
        w = ctx.shared.get("linear_w")
        if w is None or not ctx.cfg.corruption_images:
            return {"corruptions": None}
        cfg = ctx.cfg
        train = ctx.z_raw["train"]
        mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
        clean = None
        per: dict[str, dict[str, float]] = {}
        right, which = [], []  # kept per image, for intervals over seeds and images (report/stress.py)
        digest = None
        severities = sorted(set(cfg.corruption_severities))
        for name in names(cfg, ctx.data.x_test.shape[1]):
            per[name] = {}
            for severity in ["-"] if name in ONE_FORM else severities:
                x, y = ctx.test_images(f"corruption {name} {severity}")
                index = sample(y, cfg.corruption_images)
                if clean is None:
                    z = (_encode(ctx, x[index]) - mean) / std
                    clean = hits(logits(z, w).argmax(1), y[index])
                digest = digest or _digest(x, index)  # hashed once a run, not once a condition
                images = _corrupted(ctx, name, 1 if severity == "-" else severity, index, x, digest)
                z = (_encode(ctx, images) - mean) / std
                got = logits(z, w).argmax(1) == y[index]
                per[name][str(severity)] = got.float().mean().item()
                right.append(got.numpy())
                which.append(code(name, severity))
        mean_acc = sum(sum(by.values()) / len(by) for by in per.values()) / len(per)
        ctx.artifacts["corrupted"] = {
            "right": np.packbits(np.stack(right), axis=1),
            "which": np.asarray(which, dtype=np.int16),
        }
        return {
            "corruptions": {
                "images": len(index),
                "suite": "MNIST-C" if ctx.data.x_test.shape[1] == 1 else "CIFAR-10-C",
                "clean_acc": clean,
                "mean_acc": mean_acc,
                "drop": clean - mean_acc,
                "relative": mean_acc / clean if clean else None,
                "accuracy": per,
            }
        }


def code(name: str, severity) -> int:
    """A condition as one integer: 10 x the corruption's place in SHARED + OWN, plus its severity
    (0: one form)."""
    return 10 * (SHARED + OWN).index(name) + (0 if severity == "-" else int(severity))


def unpacked(arrays: dict, n: int) -> np.ndarray:
    """A run's `corrupted.npz` unpacked: (conditions, n) booleans, rows in the order of `which`."""
    return np.unpackbits(arrays["right"], axis=1, count=n).astype(bool)


def names(cfg, channels: int) -> list[str]:
    """The corruptions measured on images with `channels` channels, in the config's order."""
    return list(dict.fromkeys([*cfg.corruption_names, *(cfg.corruption_mnist_c if channels == 1 else [])]))


def sample(y: torch.Tensor, n: int) -> torch.Tensor:
    """A fixed random sample of `n` test indices, sorted (all of them where n >= N)."""
    if n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(0)
    return torch.sort(torch.randperm(len(y), generator=g)[:n]).values


_MADE: dict[str, torch.Tensor] = {}


def _digest(x: torch.Tensor, index: torch.Tensor) -> str:
    """What names a dataset's corrupted sample: the test images and the sampled indices."""
    h = hashlib.sha256(x.numpy().tobytes())
    h.update(index.numpy().tobytes())
    return h.hexdigest()[:16]


def _corrupted(
    ctx: Context, name: str, severity: int, index: torch.Tensor, x: torch.Tensor, digest: str | None = None
) -> torch.Tensor:
    """The corrupted sample: made once per dataset and kept (in this process, and in the project's
    cache through `ctx.kept`), under the digest of the test images and the sample."""
    key = f"corrupted-{digest or _digest(x, index)}-{name}-{severity}"
    if key not in _MADE:
        if len(_MADE) > 256:
            _MADE.clear()
        clean = x[index]

        def fits(t) -> str | None:
            ok = torch.is_tensor(t) and t.dtype == torch.uint8 and t.shape == clean.shape
            return None if ok else "is not the corrupted images it is named for"

        _MADE[key] = ctx.kept(key, lambda: corrupt(clean, name, severity), fits)
    return _MADE[key]


def _encode(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return encode(ctx.model, x, ctx.device)
