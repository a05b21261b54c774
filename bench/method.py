"""The contract every learner meets, and the input description the harness hands it.

A method is a small nn.Module with a `Config` dataclass (its defaults are the only defaults), a
`latent_dim`, `training_step(x) -> loss` and `encode(x) -> (B, D)`. Inputs are float images in
[0, 1], shape (B, C, H, W), already on the training device.

What a learner can do is declared on its class, never guessed (the defaults are on `Method`):
`trainable` (False: a baseline, evaluated as built), `reconstructs` (it has `reconstruct(x)`:
MSE/PSNR/SSIM and the grid), `takes_latent_dim` (its Config has `latent_dim`, swept by the grid),
`needs_labels` (its `training_step(x, y)` receives labels: only the supervised reference),
`family` (a group whose `[methods.<family>]` and `[train.<family>]` config tables apply to it,
e.g. "views" for the view-based learners) and `search_space(trial)` (None: nothing to tune).

Optional hooks: `prepare(x_train)` for closed-form fitting (PCA) and `on_step(step, total)` for
state outside the optimiser (an EMA target), called after every optimiser step. `training_step`
may return a dict with a `loss` entry plus named loss terms; the terms are logged per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import BenchError

LR_RANGE = (3e-4, 1e-2)  # AdamW peak learning rate, log scale: the range every learner tunes over


def suggest_lr(trial) -> float:
    """The shared learning-rate suggestion (`train.lr`): every learner's study searches the same
    range, and the default 2e-3 is a point of each space (`bench compare` starts from it)."""
    return trial.suggest_float("lr", *LR_RANGE, log=True)


class Unsupported(BenchError):
    """This learner cannot take this setting on this data (e.g. PCA wider than the image): a grid
    skips the combination with a note instead of failing."""


@dataclass(frozen=True)
class InputShape:
    """What a method may know about its data: image geometry, train-split channel statistics and
    the number of classes (used only by a learner that declares `needs_labels`)."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale, from the training split
    std: tuple[float, ...]
    num_classes: int = 0

    @property
    def numel(self) -> int:
        return self.channels * self.height * self.width


class Method(nn.Module):
    name: str = ""  # set by registry.register: the file name and the CLI name
    trainable: bool = True
    reconstructs: bool = False
    takes_latent_dim: bool = True
    needs_labels: bool = False
    family: str = ""

    @dataclass
    class Config:
        latent_dim: int = 64

    def __init__(self, cfg, shape: InputShape):
        super().__init__()
        self.cfg = cfg
        self.shape = shape
        self.latent_dim = cfg.latent_dim if self.takes_latent_dim else None  # baselines set their own
        c = shape.channels
        self.register_buffer("mean", torch.tensor(shape.mean).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(shape.std).view(1, c, 1, 1), persistent=False)

    @staticmethod
    def search_space(trial) -> dict:
        """Optuna suggestions as config overrides: `train.*` keys or this learner's own (bare) keys.
        The default tunes the learning rate only, over the range every learner shares."""
        return {"train.lr": suggest_lr(trial)}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize [0, 1] images per channel with training-split statistics."""
        return (x - self.mean) / self.std

    def prepare(self, x_train: torch.Tensor) -> None:
        """Closed-form fitting on uint8 training images (N, C, H, W). Default: nothing to fit."""

    def on_step(self, step: int, total: int) -> None:
        """Called after optimiser step `step` (1-based) of `total`. Default: nothing."""

    def training_step(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
