"""SimCLR (Chen et al. 2020): two augmented views of each image must find each other among the
batch under the NT-Xent loss (lightly's loss and projection head). The latent is the backbone's
pooled features, before the projection head (section 4.2 of the paper).

Temperature 0.5 is the paper's CIFAR-10 choice (appendix B.9); the head is scaled down from
2048 to 512 hidden units to fit the small CPU backbones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least, within
from bench.method import InputShape
from bench.registry import register
from bench.views import ViewConfig, ViewLearner


@register("simclr")
class SimCLR(ViewLearner):
    @dataclass
    class Config(ViewConfig):
        proj_hidden: int = at_least(1, 512)
        proj_dim: int = at_least(1, 128)  # SimCLR's projection output size
        temperature: float = within(1e-8, 1e3, 0.5)  # lightly's NTXentLoss refuses < 1e-8

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.loss import NTXentLoss  # lightly is slow to import: only when needed
        from lightly.models.modules import SimCLRProjectionHead

        self.head = SimCLRProjectionHead(cfg.latent_dim, cfg.proj_hidden, cfg.proj_dim)
        self.criterion = NTXentLoss(temperature=cfg.temperature)

    @staticmethod
    def search_space(trial) -> dict:
        """The view knobs plus the temperature, over the range the paper's Table 5 explores."""
        return {
            **ViewLearner.search_space(trial),
            "temperature": trial.suggest_float("temperature", 0.05, 1.0, log=True),
        }

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        v1, v2 = self.views(x)
        return self.criterion(self.head(self.encode(v1)), self.head(self.encode(v2)))
