"""Denoising autoencoder (Vincent et al. 2008): rebuild the clean image from a corrupted one.

Corruption is made here, on the batch and on the training device: additive Gaussian noise and
masking noise (each pixel zeroed with probability `mask_prob`). The latent is the encoding of the
clean image; corruption is a training-time pressure only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least, within
from bench.method import suggest_lr
from bench.nets import reconstruction_loss
from bench.registry import register
from methods.ae import AE


@register("dae")
class DAE(AE):
    @dataclass
    class Config(AE.Config):
        noise_std: float = at_least(0, 0.3)  # Gaussian noise std, on the [0, 1] pixel scale
        mask_prob: float = within(0, 1, 0.25, open_hi=True)  # fraction of pixels set to 0 (masking noise)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "train.lr": suggest_lr(trial),
            "noise_std": trial.suggest_float("noise_std", 0.0, 0.8),
            "mask_prob": trial.suggest_float("mask_prob", 0.0, 0.75),
        }

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        noisy = x + self.cfg.noise_std * torch.randn_like(x)
        keep = torch.rand_like(x[:, :1]) >= self.cfg.mask_prob  # (B, 1, H, W): whole pixels
        return (noisy * keep).clamp(0, 1)

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.decoder(self.bottleneck.up(self.encode(self.corrupt(x))))
        return reconstruction_loss(self.cfg.loss, x_hat, x, self.cfg.ssim_weight)
