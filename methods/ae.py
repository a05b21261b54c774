"""Plain convolutional autoencoder: the decoder sees only the latent, so everything it rebuilds
must pass through the bottleneck (Hinton & Salakhutdinov 2006, convolutional form)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench import BenchError
from bench.checks import at_least, one_of, within
from bench.method import InputShape, Method, suggest_lr
from bench.nets import CHANNELS, LOSSES, Bottleneck, Decoder, Encoder, reconstruction_loss
from bench.registry import register


@register("ae")
class AE(Method):
    reconstructs = True
    family = "autoencoders"
    skips = False  # the U-Net subclass turns them on

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)
        channels: tuple[int, ...] = at_least(1, CHANNELS, each=True)  # one stride-2 stage per entry
        # "spatial": keep the (C, h, w) layout, e.g. 256x2x2 = 1024
        bottleneck: str = one_of(("dense", "spatial"), "dense")
        loss: str = one_of(LOSSES, "mse")
        ssim_weight: float = within(0, 1, 0.84)  # weight of (1 - SSIM) in l1+ssim (Zhao et al. 2017)

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        if cfg.loss not in LOSSES:
            raise BenchError(f"methods.{self.name}.loss={cfg.loss!r}: choose from {', '.join(LOSSES)}")
        self.encoder = Encoder(shape.channels, cfg.channels, (shape.height, shape.width))
        size = self.encoder.sizes[-1]
        self.bottleneck = Bottleneck(self.encoder.out_channels, size, cfg.latent_dim, cfg.bottleneck)
        self.decoder = Decoder(cfg.channels, self.encoder.sizes, shape.channels, skips=self.skips)

    @staticmethod
    def search_space(trial) -> dict:
        """Learning rate over the shared range; the loss among the pixel losses of the AE family."""
        return {
            "train.lr": suggest_lr(trial),
            "loss": trial.suggest_categorical("loss", ["mse", "l1", "l1+ssim"]),
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        feat, _ = self.encoder(self.normalize(x))
        return self.bottleneck.down(feat)  # (B, latent_dim)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck.up(self.encode(x)))  # (B, C, H, W) in [0, 1]

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(self.cfg.loss, self.reconstruct(x), x, self.cfg.ssim_weight)
