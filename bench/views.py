"""What the view-based learners (SimCLR, BYOL, VICReg, Barlow Twins) share: the backbone, its
settings and the batched two-view augmentation, so each learner file holds only its own loss
and heads. The latent is the backbone's pooled features, before any projection head (SimCLR
section 4.2: the layer before the head is the better representation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import BenchError, augment
from bench.checks import at_least, one_of
from bench.method import InputShape, Method, suggest_lr
from bench.nets import CHANNELS, Encoder, conv_bn


@dataclass
class ViewConfig(augment.Views):
    latent_dim: int = at_least(1, 64)  # small CNN: width of the last conv; resnet18: must be 512
    # small | resnet18 (timm, CIFAR stem: 3x3 conv, no max-pool)
    backbone: str = one_of(("small", "resnet18"), "small")
    channels: tuple[int, ...] = at_least(1, CHANNELS, each=True)  # small backbone stages


class ViewLearner(Method):
    """Base of the view-based learners: `self.backbone`, `encode` and `views(x)`."""

    family = "views"

    def __init__(self, cfg: ViewConfig, shape: InputShape):
        super().__init__(cfg, shape)
        self.backbone = backbone(cfg, shape)

    @staticmethod
    def search_space(trial) -> dict:
        """The knobs every view-based learner has: learning rate (the range every learner shares,
        `bench.method.LR_RANGE`), the crop's smallest area (0.08, SimCLR's default, to 0.6: SimCLR
        appendix B.7 and Fig. 5 show crop strength as the most important augmentation), colour-jitter strength
        (0 to 1: SimCLR Table 1 uses 0.5 on CIFAR-10, 1 on ImageNet) and horizontal flips (on or
        off: digits and some datasets are not mirror-symmetric)."""
        return {
            "train.lr": suggest_lr(trial),
            "crop_scale": (trial.suggest_float("crop_min", 0.08, 0.6), 1.0),
            "jitter_strength": trial.suggest_float("jitter_strength", 0.0, 1.0),
            "hflip": trial.suggest_categorical("hflip", [True, False]),
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))  # (B, latent_dim)

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augment.view(x, self.cfg), augment.view(x, self.cfg)


def backbone(cfg: ViewConfig, shape: InputShape) -> nn.Module:
    """The small CNN (the autoencoders' encoder, a 1x1 conv to latent_dim, global average pool) or
    timm's ResNet-18 with the CIFAR stem."""
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
            raise BenchError("backbone=resnet18 has a 512-d latent: set latent_dim=512")
        net = timm.create_model("resnet18", num_classes=0, in_chans=shape.channels)
        net.conv1 = nn.Conv2d(shape.channels, 64, 3, 1, 1, bias=False)  # CIFAR stem
        net.maxpool = nn.Identity()
        return net
    raise BenchError(f"backbone={cfg.backbone!r}: choose 'small' or 'resnet18'")


class _FeatureMap(nn.Module):
    """An `Encoder` that returns only its last feature map."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]
