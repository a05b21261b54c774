"""BYOL (Grill et al. 2020): an online network predicts a slowly moving target network's
projection of another view of the same image; no negatives. The target is an exponential moving
average of the online backbone and projector whose momentum follows the paper's cosine schedule
from `momentum` to 1 over training (section 3.2), updated after every optimiser step through the
harness's per-step hook. Loss: the symmetrised negative cosine similarity (lightly's), heads and
momentum update from lightly.

Choices for small images on a CPU budget: heads of 512 hidden / 128 output units (the paper:
4096 / 256), base momentum 0.99 (the paper's 0.996 is for 1000-epoch ImageNet runs; short
schedules need a faster target), and SimCLR's augmentations (the paper adds blur and
solarisation, which mean little at 8-32 px).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from bench.checks import at_least, within
from bench.method import InputShape
from bench.registry import register
from bench.views import ViewConfig, ViewLearner


@register("byol")
class BYOL(ViewLearner):
    @dataclass
    class Config(ViewConfig):
        proj_hidden: int = at_least(1, 512)
        proj_dim: int = at_least(1, 128)
        momentum: float = within(0, 1, 0.99)  # target EMA momentum at step 0, cosine-scheduled to 1

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.projector = BYOLProjectionHead(cfg.latent_dim, cfg.proj_hidden, cfg.proj_dim)
        self.predictor = BYOLPredictionHead(cfg.proj_dim, cfg.proj_hidden, cfg.proj_dim)
        self.target = copy.deepcopy(nn.Sequential(self.backbone, self.projector))
        deactivate_requires_grad(self.target)  # moved only by the EMA in on_step
        self.criterion = NegativeCosineSimilarity()
        self.ema = cfg.momentum  # the current momentum, logged per epoch

    @staticmethod
    def search_space(trial) -> dict:
        return {
            **ViewLearner.search_space(trial),
            "momentum": trial.suggest_float("momentum", 0.9, 0.999, log=True),
        }

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v1, v2 = self.views(x)
        p1 = self.predictor(self.projector(self.encode(v1)))
        p2 = self.predictor(self.projector(self.encode(v2)))
        with torch.no_grad():
            t1, t2 = self.target(self.normalize(v1)), self.target(self.normalize(v2))
        loss = 0.5 * (self.criterion(p1, t2) + self.criterion(p2, t1))
        return {"loss": loss, "momentum": torch.tensor(self.ema)}

    def on_step(self, step: int, total: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        self.ema = cosine_schedule(step, total, self.cfg.momentum, 1.0)
        update_momentum(nn.Sequential(self.backbone, self.projector), self.target, self.ema)
