"""CIFAR-10-C's corruptions (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations"; the parameters of its generator `make_cifar_c.py` in
hendrycks/robustness), written with numpy, scipy and Pillow: the suite of colour images
(bench/evaluators/corruptions.py). Each takes float images (N, C, H, W) in [0, 1], a severity 1-5
and a seeded numpy generator, and returns float images (clipped by the caller).
- noise: `gaussian_noise` (sigma .04-.10 of the [0, 1] range), `shot_noise` (Poisson, 500-50
  photons), `impulse_noise` (salt and pepper on 1-7% of values);
- blur: `gaussian_blur` (sigma .4-1 px), `defocus_blur` (disk of radius .3-1.5 px, anti-aliased),
  `zoom_blur` (mean of bilinear zooms up to 1.06-1.26x);
- weather: `fog` (a seeded plasma fractal, diamond-square, added with strength .2-1.5);
- digital: `brightness` (+.05-.3 on HSV value), `contrast` (.75-.15 of the distance to the mean),
  `pixelate` (box-down to 95-65% of the side and back), `jpeg` (quality 80-40).
Left out: motion blur and snow (ImageMagick's motion blur), frost (its photographs), spatter and
elastic (OpenCV), glass blur (a per-pixel loop). The parameters were set for 32 px.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from scipy import ndimage


def gaussian_noise(x, s, rng):
    return x + rng.normal(size=x.shape, scale=[0.04, 0.06, 0.08, 0.09, 0.10][s - 1])


def shot_noise(x, s, rng):
    c = [500, 250, 100, 75, 50][s - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x, s, rng):
    return salt_and_pepper(x, [0.01, 0.02, 0.03, 0.05, 0.07][s - 1], rng)


def salt_and_pepper(x, amount, rng):
    hit = rng.random(x.shape) < amount
    return np.where(hit, (rng.random(x.shape) < 0.5).astype(x.dtype), x)  # half salt, half pepper


def gaussian_blur(x, s, rng):
    return ndimage.gaussian_filter(x, sigma=(0, 0, *[[0.4, 0.6, 0.7, 0.8, 1.0][s - 1]] * 2), mode="nearest")


def defocus_blur(x, s, rng):
    return disk_blur(x, *[(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1])


def disk_blur(x, radius, alias):
    """`x` convolved with a disk of `radius` px, anti-aliased by a 3x3 Gaussian of sigma `alias`."""
    span = np.arange(-max(8, int(np.ceil(radius))), max(8, int(np.ceil(radius))) + 1)
    disk = (span[:, None] ** 2 + span[None] ** 2 <= radius**2).astype(np.float64)
    disk = ndimage.gaussian_filter(disk / disk.sum(), alias, mode="constant", truncate=1 / max(alias, 1e-3))
    disk /= disk.sum()
    return ndimage.convolve(x, disk[None, None], mode="reflect")


def zoom_blur(x, s, rng):
    return zoom_mean(x, np.arange(1, [1.06, 1.11, 1.16, 1.21, 1.26][s - 1], 0.01))


def zoom_mean(x, factors):
    """The mean of `x` and its centre zoomed by each of `factors`."""
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
    size = 1 << (max(x.shape[-2:]) - 1).bit_length()  # the smallest power of two that covers the image
    return fogged(x, strength, decay, max(size, 2), rng)


def fogged(x, strength, decay, size, rng):
    """`x` under a plasma fog of `strength`, each image's texture the top-left corner of a
    `size` x `size` heightmap (made 64 MB of maps at a time: a 256 px map is 0.5 MB)."""
    h, w = x.shape[-2:]
    step = max(1, (64 << 20) // (size * size * 8))
    layers = np.concatenate([plasma(len(x[i : i + step]), size, decay, rng) for i in range(0, len(x), step)])
    layers = layers[:, None, :h, :w]
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
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(np.clip(x, 0, 1).transpose(0, 2, 3, 1))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return hsv_to_rgb(hsv).transpose(0, 3, 1, 2)


def contrast(x, s, rng):
    mean = x.mean(axis=(2, 3), keepdims=True)
    return (x - mean) * [0.75, 0.5, 0.4, 0.3, 0.15][s - 1] + mean


def pixelate(x, s, rng):
    return pixelated(x, [0.95, 0.9, 0.85, 0.75, 0.65][s - 1])


def pixelated(x, c):
    def once(im):
        small = (max(1, int(im.width * c)), max(1, int(im.height * c)))
        return im.resize(small, Image.BOX).resize(im.size, Image.BOX)

    return each_pil(x, once)


def jpeg(x, s, rng):
    return jpeged(x, [80, 65, 58, 50, 40][s - 1])


def jpeged(x, quality):
    def once(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(buf).convert(im.mode)

    return each_pil(x, once)


def each_pil(x, change):
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
