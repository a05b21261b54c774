"""Barlow Twins (Zbontar et al. 2021): the cross-correlation matrix between two views'
projections, computed over the batch, is pushed to the identity: diagonal to 1 (invariance),
off-diagonal to 0 (redundancy reduction). lightly's loss and projection head.

Choices for small images on a CPU budget: a head of 512 units (the paper: 8192), the paper's
off-diagonal weight 5e-3, and SimCLR's augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least
from bench.method import InputShape
from bench.registry import register
from bench.views import ViewConfig, ViewLearner


@register("barlowtwins")
class BarlowTwins(ViewLearner):
    @dataclass
    class Config(ViewConfig):
        proj_hidden: int = at_least(1, 512)
        proj_dim: int = at_least(1, 512)
        offdiag_weight: float = at_least(0, 5e-3)  # lambda in the paper

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules import BarlowTwinsProjectionHead

        self.head = BarlowTwinsProjectionHead(cfg.latent_dim, cfg.proj_hidden, cfg.proj_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=cfg.offdiag_weight)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            **ViewLearner.search_space(trial),
            "offdiag_weight": trial.suggest_float("offdiag_weight", 1e-3, 2e-2, log=True),
        }

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        v1, v2 = self.views(x)
        return self.criterion(self.head(self.encode(v1)), self.head(self.encode(v2)))
