"""U-Net autoencoder (Ronneberger et al. 2015): the decoder also receives the encoder's feature
maps at every resolution except the bottleneck's.

Why its latent is expected to probe worse than `ae`'s: the skips carry most of what the decoder
needs to rebuild the image, so the reconstruction loss no longer forces the bottleneck to summarise
the image. The bottleneck (what `encode` returns) is then free to hold little class information,
while reconstructions get sharper. `skip_drop` (zero all skips on a random fraction of training
batches) and `skips = false` are the ablations that put the pressure back on the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import flag, within
from bench.method import suggest_lr
from bench.nets import reconstruction_loss
from bench.registry import register
from methods.ae import AE


@register("unet")
class UNet(AE):
    @dataclass
    class Config(AE.Config):
        skips: bool = flag(True)  # false: the same network with its skips removed (an `ae` twin)
        skip_drop: float = within(0, 1, 0.0)  # probability that a training batch sees all skips zeroed

    def __init__(self, cfg: Config, shape):
        self.skips = cfg.skips  # read by AE.__init__ when it builds the decoder
        super().__init__(cfg, shape)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "train.lr": suggest_lr(trial),
            "loss": trial.suggest_categorical("loss", ["mse", "l1", "l1+ssim"]),
            "skip_drop": trial.suggest_float("skip_drop", 0.0, 0.9),
        }

    def _forward(self, x: torch.Tensor, drop_skips: bool) -> tuple[torch.Tensor, torch.Tensor]:
        feat, skips = self.encoder(self.normalize(x))
        z = self.bottleneck.down(feat)  # (B, latent_dim)
        if not self.skips:
            return z, self.decoder(self.bottleneck.up(z))
        if drop_skips:
            skips = [torch.zeros_like(s) for s in skips]
        return z, self.decoder(self.bottleneck.up(z), skips)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, drop_skips=False)[1]

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        drop = self.cfg.skip_drop > 0 and bool(torch.rand(()) < self.cfg.skip_drop)
        _, x_hat = self._forward(x, drop_skips=drop)
        return reconstruction_loss(self.cfg.loss, x_hat, x, self.cfg.ssim_weight)
