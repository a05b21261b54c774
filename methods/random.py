"""The `ae` encoder at random initialisation, never trained: what architecture alone gives the
probe (random conv features are far from useless, Jarrett et al. 2009), so a learner's gain over
it is the gain from training."""

from __future__ import annotations

import torch

from bench.method import InputShape, Method
from bench.registry import register
from methods.ae import AE


@register("random")
class Random(Method):
    trainable = False
    search_space = None  # nothing is fitted: no setting to tune
    Config = AE.Config  # same architecture options as `ae`, so the two stay comparable

    def __init__(self, cfg: AE.Config, shape: InputShape):
        super().__init__(cfg, shape)
        self.net = AE(cfg, shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(x)  # (B, latent_dim)
