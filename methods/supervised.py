"""The supervised reference: the `ae` encoder trained with cross-entropy on the training labels
through a linear classifier on its latent. Papers print such a row beside self-supervised ones
as the ceiling for the architecture and budget; here it is the one learner that receives
labels (it declares `needs_labels`, and the harness hands labels to no other), and every table
marks it as a reference, never "the best learner". Training labels only: the validation slice
and the test split stay unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench import BenchError
from bench.checks import at_least, one_of, within
from bench.method import InputShape, Method
from bench.nets import CHANNELS, Bottleneck, Encoder
from bench.registry import register


@register("supervised")
class Supervised(Method):
    needs_labels = True

    @dataclass
    class Config:  # the `ae` encoder's settings
        latent_dim: int = at_least(1, 64)
        channels: tuple[int, ...] = at_least(1, CHANNELS, each=True)
        bottleneck: str = one_of(("dense", "spatial"), "dense")
        label_smoothing: float = within(0, 1, 0.0, open_hi=True)

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        if shape.num_classes < 2:
            raise BenchError("supervised needs the number of classes (InputShape.num_classes >= 2)")
        self.encoder = Encoder(shape.channels, cfg.channels, (shape.height, shape.width))
        size = self.encoder.sizes[-1]
        self.to_latent = Bottleneck(self.encoder.out_channels, size, cfg.latent_dim, cfg.bottleneck).down
        self.classifier = nn.Linear(cfg.latent_dim, shape.num_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        feat, _ = self.encoder(self.normalize(x))
        return self.to_latent(feat)  # (B, latent_dim), before the classifier

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(self.encode(x)), y, label_smoothing=self.cfg.label_smoothing)
