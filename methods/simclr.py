"""SimCLR (Chen et al. 2020): two augmented views of each image must find each other among the
batch under the NT-Xent loss. The latent is the backbone's pooled features, before the projection
head (section 4.2 of the paper: the layer before the head is the better representation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import BenchError, augment
from bench.method import InputShape, Method
from bench.nets import Encoder, conv_bn
from bench.registry import register


@register("simclr")
class SimCLR(Method):
    @dataclass
    class Config:
        latent_dim: int = 64  # small CNN: width of the last conv; resnet18: must be 512
        backbone: str = "small"  # small | resnet18 (timm, CIFAR stem: 3x3 conv, no max-pool)
        channels: tuple[int, ...] = (32, 64, 128)  # small backbone stages
        proj_hidden: int = 512
        proj_dim: int = 128  # SimCLR's projection output size
        temperature: float = 0.5  # the paper's choice for CIFAR-10 (appendix B.9)
        crop_scale: tuple[float, ...] = (0.08, 1.0)
        hflip: bool = True
        jitter_strength: float = 0.5  # 0.5 on CIFAR-10 in the paper; grey images get no hue/sat
        jitter_prob: float = 0.8
        gray_prob: float = 0.2

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.loss import NTXentLoss  # lightly is slow to import: only when needed
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone = self._backbone(cfg, shape)
        self.head = SimCLRProjectionHead(cfg.latent_dim, cfg.proj_hidden, cfg.proj_dim)
        self.criterion = NTXentLoss(temperature=cfg.temperature)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "train.lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "temperature": trial.suggest_float("temperature", 0.05, 1.0, log=True),
            "crop_scale": (trial.suggest_float("crop_min", 0.08, 0.6), 1.0),
            "jitter_strength": trial.suggest_float("jitter_strength", 0.0, 1.0),
        }

    @staticmethod
    def _backbone(cfg: Config, shape: InputShape) -> nn.Module:
        if cfg.backbone == "small":
            encoder = Encoder(shape.channels, cfg.channels, (shape.height, shape.width))
            return nn.Sequential(
                _FeatureMap(encoder),
                conv_bn(cfg.channels[-1], cfg.latent_dim, kernel=1),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
        if cfg.backbone == "resnet18":
            import timm

            if cfg.latent_dim != 512:
                raise BenchError("simclr with backbone=resnet18 has a 512-d latent: set latent_dim=512")
            net = timm.create_model("resnet18", num_classes=0, in_chans=shape.channels)
            net.conv1 = nn.Conv2d(shape.channels, 64, 3, 1, 1, bias=False)  # CIFAR stem
            net.maxpool = nn.Identity()
            return net
        raise BenchError(f"methods.simclr.backbone={cfg.backbone!r}: choose 'small' or 'resnet18'")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))  # (B, latent_dim)

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        v1, v2 = augment.view(x, self.cfg), augment.view(x, self.cfg)
        return self.criterion(self.head(self.encode(v1)), self.head(self.encode(v2)))


class _FeatureMap(nn.Module):
    """An `Encoder` that returns only its last feature map."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]
