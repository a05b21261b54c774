"""VICReg (Bardes et al. 2022): two views' projections must agree (invariance) while each
dimension keeps a standard deviation of at least 1 across the batch (variance) and dimensions
stay decorrelated (covariance): no negatives, no momentum target. lightly's loss (weights 25 /
25 / 1, the paper's) and projection head; the three terms are logged per epoch.

Choices for small images on a CPU budget: a 3-layer head of 512 units (the paper: 8192) and
SimCLR's augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least
from bench.method import InputShape
from bench.registry import register
from bench.views import ViewConfig, ViewLearner


@register("vicreg")
class VICReg(ViewLearner):
    @dataclass
    class Config(ViewConfig):
        proj_hidden: int = at_least(1, 512)
        proj_dim: int = at_least(1, 512)
        invariance_weight: float = at_least(0, 25.0)  # lambda in the paper
        variance_weight: float = at_least(0, 25.0)  # mu
        covariance_weight: float = at_least(0, 1.0)  # nu

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.head = VICRegProjectionHead(cfg.latent_dim, cfg.proj_hidden, cfg.proj_dim)
        self.criterion = VICRegLoss(cfg.invariance_weight, cfg.variance_weight, cfg.covariance_weight)

    @staticmethod
    def search_space(trial) -> dict:
        """The paper's Table 7 varies lambda = mu against nu = 1; so does this space."""
        weight = trial.suggest_float("invariance_weight", 5.0, 50.0, log=True)
        return {**ViewLearner.search_space(trial), "invariance_weight": weight, "variance_weight": weight}

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from lightly.loss.vicreg_loss import covariance_loss, invariance_loss, variance_loss

        v1, v2 = self.views(x)
        z1, z2 = self.head(self.encode(v1)), self.head(self.encode(v2))
        loss = self.criterion(z1, z2)
        with torch.no_grad():  # the unweighted terms, for the training log
            terms = {
                "invariance": invariance_loss(z1, z2),
                "variance": 0.5 * (variance_loss(z1) + variance_loss(z2)),
                "covariance": covariance_loss(z1) + covariance_loss(z2),
            }
        return {"loss": loss, **terms}
