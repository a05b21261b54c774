"""Random training-image patches as convolution filters: the strong label-free control of Coates &
Ng (2011, "An analysis of single-layer networks in unsupervised feature learning", AISTATS),
where K filters chosen as random whitened patches, rectified and sum-pooled over quadrants, came
close to K-means features and beat several trained single-layer learners. A learner that cannot
beat this row has learned little beyond what local image statistics give for free.

The pipeline is the paper's: every r x r patch is normalised for brightness and contrast (its
mean removed, divided by sqrt(var + 10), on the 0-255 scale), ZCA-whitened (eps 0.1) with
statistics of patches drawn from the training images; K of those whitened patches, scaled to unit
norm, are the filters. An image's feature map is the rectified response max(0, w.x - alpha) of
every filter at every position (the soft-threshold encoder, alpha = 0.25: Coates & Ng 2011, ICML),
pooled over pool x pool cells (the cell's mean: the paper's sum up to a scale that the evaluator's
standardisation removes): latent_dim = K * pool^2. Seeded (the run's seed draws the
patches), no labels, no gradient training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.checks import at_least, within
from bench.method import InputShape, Method, Unsupported
from bench.registry import register

BRIGHTNESS_EPS = 10 / 255**2  # the paper's +10 on the 0-255 scale, on our [0, 1] pixels
ZCA_EPS = 0.1  # the paper's whitening regulariser (normalised patches have unit variance)
SAMPLE = 10_000  # patches drawn for the whitening statistics


@register("patches")
class Patches(Method):
    trainable = False
    search_space = None  # nothing is fitted beyond the draw: no setting to tune at equal budget

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)  # K filters x pool^2 cells
        patch: int = at_least(1, 5)  # r: filters are r x r (Coates & Ng: 6 on 32 px)
        pool: int = within(1, 64, 2)  # cells per side of the pooling grid (the paper's quadrants: 2)
        alpha: float = within(0, 10, 0.25)  # the soft threshold

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        if cfg.latent_dim % cfg.pool**2:
            raise Unsupported(
                f"patches: latent_dim {cfg.latent_dim} is not a multiple of pool^2 = {cfg.pool**2}"
            )
        side = min(shape.height, shape.width) - cfg.patch + 1
        if side < cfg.pool:
            raise Unsupported(f"patches: {cfg.patch}x{cfg.patch} patches leave no {cfg.pool}x{cfg.pool} grid")
        p = shape.channels * cfg.patch**2
        self.register_buffer("filters", torch.zeros(cfg.latent_dim // cfg.pool**2, p))  # (K, P), whitened
        self.register_buffer("zca", torch.eye(p))  # (P, P)

    def prepare(self, x_train: torch.Tensor) -> None:
        r, k = self.cfg.patch, len(self.filters)
        n, _, h, w = x_train.shape
        count = max(SAMPLE, k)
        i = torch.randint(n, (count,))
        top, left = torch.randint(h - r + 1, (count,)), torch.randint(w - r + 1, (count,))
        images = x_train[i].float().div_(255)  # (S, C, H, W)
        windows = images.unfold(2, r, 1).unfold(3, r, 1)  # (S, C, H', W', r, r): a view
        patches = windows[torch.arange(count), :, top, left].flatten(1)  # (S, P)
        patches = _normalise(patches)
        lam, u = torch.linalg.eigh(patches.T.double() @ patches.double() / count)
        self.zca.copy_((u * (lam.clamp_min(0) + ZCA_EPS).rsqrt()) @ u.T)
        chosen = patches[torch.randperm(count)[:k]] @ self.zca  # (K, P)
        self.filters.copy_(F.normalize(chosen, dim=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # In chunks: the responses of every patch to every filter are (B, positions, K) floats, and
        # under the Makefile's allocator setting (no mmap) large temporaries fragment the heap
        # (54,000 MNIST images at d = 1024: past 24 GB in one go; in chunks of 128, 1.5 GB, 2.4x faster).
        return torch.cat([self._encode(chunk) for chunk in x.split(128)])  # (B, latent_dim)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        b, r, pool = len(x), self.cfg.patch, self.cfg.pool
        cols = F.unfold(x, r)  # (B, P, L): every patch of every image
        side_h, side_w = x.shape[2] - r + 1, x.shape[3] - r + 1
        cols = _normalise(cols.transpose(1, 2))  # (B, L, P)
        response = cols @ (self.zca @ self.filters.T)  # (B, L, K): the whitened patch . filter
        maps = (response - self.cfg.alpha).relu_().view(b, side_h, side_w, -1).permute(0, 3, 1, 2)  # a view
        return F.adaptive_avg_pool2d(maps, pool).flatten(1)  # (B, K * pool^2)


def _normalise(p: torch.Tensor) -> torch.Tensor:
    """Each patch (last dimension) with its mean removed, divided by sqrt(var + eps)."""
    p = p - p.mean(-1, keepdim=True)
    return p / (p.var(-1, keepdim=True) + BRIGHTNESS_EPS).sqrt()
