"""Corruption robustness: the linear probe fitted on clean latents, scored on corrupted test images
encoded by the frozen encoder. Nothing is refitted on corrupted data.

The corruptions and their five severities follow CIFAR-10-C (Hendrycks & Dietterich 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"; the parameters
of its generator `make_cifar_c.py`), written here with numpy, scipy and Pillow:
- noise: `gaussian_noise` (sigma .04-.10 of the [0, 1] range), `shot_noise` (Poisson, 500-50
  photons), `impulse_noise` (salt and pepper on 1-7% of values);
- blur: `gaussian_blur` (sigma .4-1 px), `defocus_blur` (disk of radius .3-1.5 px, anti-aliased),
  `zoom_blur` (mean of bilinear zooms up to 1.06-1.26x);
- weather: `fog` (a seeded plasma fractal, diamond-square, added with strength .2-1.5);
- digital: `brightness` (+.05-.3 on HSV value), `contrast` (.75-.15 of the distance to the mean),
  `pixelate` (box-down to 95-65% of the side and back), `jpeg` (quality 80-40).
Left out: motion blur and snow (ImageMagick's motion blur), frost (its photographs), spatter and
elastic (OpenCV), glass blur (a per-pixel Python loop); MNIST-C's own families (affine maps,
stripes, zigzags, dotted lines, Canny edges; Mu & Gilmer 2019) are not implemented yet. The same
parameters serve grey and colour images; they were set for 32 px, so on 8x8 digits a 1 px blur is
a large one, the mildest zoom blur changes nothing, and pixelate's factors round to the same width
at two severities (its box filter can even leave a higher severity closer to the clean image).

Every corruption is seeded by its name and severity alone, so every run of a dataset sees the same
corrupted images; they are made once per process and dataset, from a fixed class-balanced sample of
`eval.corruption_images` test images. Each (corruption, severity) is one test read.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from bench.checks import at_least, one_of
from bench.evaluators import Card, Column, Context, Evaluator, listed, register
from bench.evaluators.linear import hits, logits
from bench.evaluators.ood import encode

SEVERITIES = (1, 2, 3, 4, 5)


def gaussian_noise(x, s, rng):
    return x + rng.normal(size=x.shape, scale=[0.04, 0.06, 0.08, 0.09, 0.10][s - 1])


def shot_noise(x, s, rng):
    c = [500, 250, 100, 75, 50][s - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x, s, rng):
    amount = [0.01, 0.02, 0.03, 0.05, 0.07][s - 1]
    hit = rng.random(x.shape) < amount
    return np.where(hit, (rng.random(x.shape) < 0.5).astype(x.dtype), x)  # half salt, half pepper


def gaussian_blur(x, s, rng):
    return ndimage.gaussian_filter(x, sigma=(0, 0, *[[0.4, 0.6, 0.7, 0.8, 1.0][s - 1]] * 2), mode="nearest")


def defocus_blur(x, s, rng):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    span = np.arange(-8, 9)
    disk = (span[:, None] ** 2 + span[None] ** 2 <= radius**2).astype(np.float64)
    disk = ndimage.gaussian_filter(disk / disk.sum(), alias, mode="constant", truncate=1 / max(alias, 1e-3))
    disk /= disk.sum()
    return ndimage.convolve(x, disk[None, None], mode="reflect")


def zoom_blur(x, s, rng):
    top = [1.06, 1.11, 1.16, 1.21, 1.26][s - 1]
    factors = np.arange(1, top, 0.01)
    t = torch.from_numpy(x)
    out = t.clone()
    for f in factors:
        out += _zoom(t, f)
    return (out / (len(factors) + 1)).numpy()


def _zoom(t: torch.Tensor, factor: float) -> torch.Tensor:
    """The centre of every image zoomed by `factor` (bilinear), cropped back to its size."""
    h, w = t.shape[-2:]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    size = (round(ch * factor), round(cw * factor))
    z = torch.nn.functional.interpolate(t[..., top : top + ch, left : left + cw], size=size, mode="bilinear")
    th, tw = (z.shape[-2] - h) // 2, (z.shape[-1] - w) // 2
    return z[..., th : th + h, tw : tw + w]


def fog(x, s, rng):
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s - 1]
    h, w = x.shape[-2:]
    size = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two that covers the image
    layers = plasma(len(x), max(size, 2), decay, rng)[:, None, :h, :w]
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + strength * layers) * top / (top + strength)


def plasma(n: int, size: int, decay: float, rng) -> np.ndarray:
    """n heightmaps of size x size in [0, 1] by the diamond-square algorithm (a fog's texture)."""
    grid = np.zeros((n, size, size))
    step, wobble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, 1)
        squares = squares + np.roll(squares, -1, 2)
        grid[:, half:size:step, half:size:step] = squares / 4 + wobble * rng.uniform(
            -wobble, wobble, squares.shape
        )
        centres, corners = grid[:, half:size:step, half:size:step], grid[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, 1) + corners + np.roll(corners, -1, 2)
        grid[:, 0:size:step, half:size:step] = left / 4 + wobble * rng.uniform(-wobble, wobble, left.shape)
        up = centres + np.roll(centres, 1, 2) + corners + np.roll(corners, -1, 1)
        grid[:, half:size:step, 0:size:step] = up / 4 + wobble * rng.uniform(-wobble, wobble, up.shape)
        step, wobble = half, wobble / decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / np.maximum(grid.max(axis=(1, 2), keepdims=True), 1e-12)


def brightness(x, s, rng):
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]
    if x.shape[1] == 1:  # grey: the value is the intensity
        return x + c
    hsv = rgb_to_hsv(np.clip(x, 0, 1).transpose(0, 2, 3, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return hsv_to_rgb(hsv).transpose(0, 3, 1, 2)


def contrast(x, s, rng):
    mean = x.mean(axis=(2, 3), keepdims=True)
    return (x - mean) * [0.75, 0.5, 0.4, 0.3, 0.15][s - 1] + mean


def pixelate(x, s, rng):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]

    def once(im):
        small = (max(1, int(im.width * c)), max(1, int(im.height * c)))
        return im.resize(small, Image.BOX).resize(im.size, Image.BOX)

    return _each_pil(x, once)


def jpeg(x, s, rng):
    quality = [80, 65, 58, 50, 40][s - 1]

    def once(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(buf).convert(im.mode)

    return _each_pil(x, once)


def _each_pil(x, change):
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    out = []
    for im in u8:
        pil = Image.fromarray(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0))
        arr = np.asarray(change(pil), dtype=np.float64) / 255
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return np.stack(out)


CORRUPTIONS = {
    f.__name__: f
    for f in (gaussian_noise, shot_noise, impulse_noise, gaussian_blur, defocus_blur, zoom_blur, fog,
              brightness, contrast, pixelate, jpeg)
}  # fmt: skip


def corrupt(x: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) under corruption `name` at `severity` (1-5): uint8, seeded by the
    name and severity alone."""
    seed = int.from_bytes(hashlib.sha256(f"{name}/{severity}".encode()).digest()[:4], "little")
    out = CORRUPTIONS[name](x.numpy().astype(np.float64) / 255, severity, np.random.default_rng(seed))
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
    needs_model = True
    columns = (
        Column("corrupted", _get("mean_acc"), scale=100, spread=False),
        Column("corruption_drop", _get("drop"), scale=100, spread=False),
        Column("corruption_relative", _get("relative"), scale=100, spread=False),
    )

    @dataclass
    class Config:
        corruption_names: list[str] = one_of(tuple(CORRUPTIONS), list(CORRUPTIONS), each=True)
        corruption_severities: list[int] = one_of(SEVERITIES, list(SEVERITIES), each=True)
        corruption_images: int = at_least(0, 2000, hi=1_000_000)  # test images corrupted (0: not measured)

    def card(self, cfg) -> list[Card]:
        if not cfg.corruption_images:
            return []
        n = len(set(cfg.corruption_names)) * len(set(cfg.corruption_severities))
        return [
            Card(
                f"linear on {listed(sorted(set(cfg.corruption_names)))} x severities "
                f"{listed(sorted(set(cfg.corruption_severities)))} (the clean probe)",
                "nothing",
                "-",
                "-",
                "corrupted test images",
                n,
            )
        ]

    def __call__(self, ctx: Context) -> dict:
        w = ctx.shared.get("linear_w")
        if w is None or not ctx.cfg.corruption_images:
            return {"corruptions": None}
        cfg = ctx.cfg
        train = ctx.z_raw["train"]
        mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
        clean = None
        per: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(cfg.corruption_names):
            per[name] = {}
            for severity in sorted(set(cfg.corruption_severities)):
                x, y = ctx.test_images(f"corruption {name} {severity}")
                index = sample(y, cfg.corruption_images)
                if clean is None:
                    z = (_encode(ctx, x[index]) - mean) / std
                    clean = hits(logits(z, w).argmax(1), y[index])
                images = _corrupted(_digest(x), name, severity, index, x)
                z = (_encode(ctx, images) - mean) / std
                per[name][str(severity)] = hits(logits(z, w).argmax(1), y[index])
        accs = [a for by in per.values() for a in by.values()]
        mean_acc = sum(accs) / len(accs)
        return {
            "corruptions": {
                "images": len(index),
                "clean_acc": clean,
                "mean_acc": mean_acc,
                "drop": clean - mean_acc,
                "relative": mean_acc / clean if clean else None,
                "accuracy": per,
            }
        }


def sample(y: torch.Tensor, n: int) -> torch.Tensor:
    """A fixed random sample of `n` test indices, sorted (all of them where n >= N)."""
    if n >= len(y):
        return torch.arange(len(y))
    g = torch.Generator().manual_seed(0)
    return torch.sort(torch.randperm(len(y), generator=g)[:n]).values


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]


_MADE: dict[tuple, torch.Tensor] = {}


def _corrupted(digest: str, name: str, severity: int, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The corrupted sample, made once per process and dataset (keyed by the test images' digest)."""
    key = (digest, name, severity, len(index), int(index.sum()))
    if key not in _MADE:
        if len(_MADE) > 256:
            _MADE.clear()
        _MADE[key] = corrupt(x[index], name, severity)
    return _MADE[key]


def _encode(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return encode(ctx.model, x, ctx.device)
