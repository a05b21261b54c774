"""The contract every learner meets, and the input description the harness hands it.

A method is a small nn.Module with a `Config` dataclass (its defaults are the only defaults), a
`latent_dim`, `training_step(x) -> loss` and `encode(x) -> (B, D)`. Inputs are float images in
[0, 1], shape (B, C, H, W), already on the training device; labels never reach a method.
Optional: `search_space(trial) -> dict` (Optuna suggestions as config overrides, for `bench tune`),
`reconstruct(x)` for learners that reconstruct (enables MSE/PSNR/SSIM and the grid) and
`prepare(x_train)` for closed-form fitting on training images (PCA). Baselines set
`trainable = False` and are evaluated as built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import BenchError


class Unsupported(BenchError):
    """This learner cannot take this setting on this data (e.g. PCA wider than the image): a grid
    skips the combination with a note instead of failing."""


@dataclass(frozen=True)
class InputShape:
    """What a method may know about its data: image geometry and train-split channel statistics."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale, from the training split
    std: tuple[float, ...]

    @property
    def numel(self) -> int:
        return self.channels * self.height * self.width


class Method(nn.Module):
    name: str = ""  # set by registry.register
    trainable: bool = True  # False: a baseline that the harness never trains

    @dataclass
    class Config:
        latent_dim: int = 64

    def __init__(self, cfg, shape: InputShape):
        super().__init__()
        self.cfg = cfg
        self.shape = shape
        self.latent_dim = getattr(cfg, "latent_dim", None)  # baselines may set it themselves
        c = shape.channels
        self.register_buffer("mean", torch.tensor(shape.mean).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(shape.std).view(1, c, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize [0, 1] images per channel with training-split statistics."""
        return (x - self.mean) / self.std

    def prepare(self, x_train: torch.Tensor) -> None:
        """Closed-form fitting on uint8 training images (N, C, H, W). Default: nothing to fit."""

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def reconstructs(self) -> bool:
        return hasattr(self, "reconstruct")
