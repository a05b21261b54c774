"""A sparse autoencoder, written outside the harness the way a user writes one: fully connected,
its latent pushed towards sparsity by an L1 penalty on the code (Ng 2011; here with ReLU codes).

Benchmark it beside the built-in learners, with no edit to the repository:

    python -m bench run --methods examples/sparse_ae.py,ae,pca --dataset digits

Its runs are keyed by this file's content: edit it, and the next run is a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.checks import at_least
from bench.method import InputShape, Method
from bench.registry import register


@register("sparse_ae")
class SparseAE(Method):
    reconstructs = True  # it has reconstruct(): the harness measures MSE, PSNR and SSIM

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)
        hidden: int = at_least(1, 256)
        l1: float = at_least(0, 1e-3)  # weight of the mean |code| in the loss

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        pixels = shape.numel
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.latent_dim),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, pixels)
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))  # (B, latent_dim)

    def decode(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(like.shape)  # pixels in [0, 1]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x)

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        mse = F.mse_loss(self.decode(z, x), x)
        l1 = z.abs().mean()
        return {"loss": mse + self.cfg.l1 * l1, "mse": mse, "l1": l1}
