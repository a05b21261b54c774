"""Raw pixels as the latent: the floor every learner must beat (no training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.method import InputShape, Method
from bench.registry import register


@register("pixels")
class Pixels(Method):
    trainable = False
    takes_latent_dim = False
    search_space = None

    @dataclass
    class Config:  # no latent_dim: the latent is the image itself, C*H*W values
        pass

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        self.latent_dim = shape.numel

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # (B, C*H*W); the evaluator standardises features itself
