"""Convolutional building blocks shared by the learners, sized from the input at build time.

Each encoder stage halves the resolution (stride-2 conv) and the decoder upsamples back to the
exact sizes the encoder saw, so one definition serves 8x8 digits, 28x28 MNIST and 32x32 CIFAR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import nn

from bench import BenchError

# The default stage widths of every conv encoder here (one stride-2 stage each): the autoencoders,
# the supervised reference and the view-based learners' small backbone start from the same network.
CHANNELS = (32, 64, 128)


# One rule adapts images of one geometry to another: a transfer's probe data to the trained
# learner's, and any data to what a pretrained encoder takes. Grey is repeated to RGB, RGB becomes
# grey by ITU-R BT.601 luma, sizes change by antialiased bilinear resampling.
LUMA = (0.299, 0.587, 0.114)


def adapt_images(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Float images (N, C, H, W), any scale -> (N, channels, height, width) by the rule above."""
    if x.shape[1] != channels:
        luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else (x * luma).sum(1, keepdim=True)
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x


def adaptation(source, target) -> str:
    """How `adapt_images` takes geometry `source` (C, H, W) to `target`, in words."""
    steps = []
    if source[0] != target[0]:
        steps.append("grey repeated to RGB" if source[0] == 1 else "RGB to grey (BT.601 luma)")
    if tuple(source[1:]) != tuple(target[1:]):
        steps.append(f"resized {source[1]}x{source[2]} -> {target[1]}x{target[2]} (bilinear, antialiased)")
    return ", ".join(steps) or "as they are (same geometry)"


def conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Stages of (stride-2 conv, conv); returns the last feature map and every stage's output."""

    def __init__(self, c_in: int, channels: tuple[int, ...], size: tuple[int, int]):
        super().__init__()
        self.stages = nn.ModuleList()
        self.sizes = [size]  # sizes[i] is the input size of stage i; sizes[-1] the output size
        for c in channels:
            self.stages.append(nn.Sequential(conv_bn(c_in, c, stride=2), conv_bn(c, c)))
            h, w = self.sizes[-1]
            self.sizes.append(((h + 1) // 2, (w + 1) // 2))
            c_in = c
        self.out_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return x, feats


class Bottleneck(nn.Module):
    """Maps the encoder's (C, h, w) feature map to a flat latent (B, D) and back.

    `dense`: flatten, then Linear to D. `spatial`: a 1x1 conv to D/(h*w) channels, flattened, so
    the latent keeps its layout (the classic 256x2x2 = 1024-d bottleneck of a CIFAR autoencoder).
    """

    def __init__(self, channels: int, size: tuple[int, int], latent_dim: int, kind: str):
        super().__init__()
        h, w = size
        self.shape = (channels, h, w)
        if kind == "dense":
            self.down = nn.Sequential(nn.Flatten(), nn.Linear(channels * h * w, latent_dim))
            self.up = nn.Sequential(
                nn.Linear(latent_dim, channels * h * w), nn.ReLU(inplace=True), nn.Unflatten(1, self.shape)
            )
        elif kind == "spatial":
            if latent_dim % (h * w):
                raise BenchError(
                    f"spatial bottleneck: latent_dim {latent_dim} is not a multiple of "
                    f"the {h}x{w} feature map; use a multiple of {h * w}"
                )
            c = latent_dim // (h * w)
            self.down = nn.Sequential(nn.Conv2d(channels, c, 1), nn.Flatten())
            self.up = nn.Sequential(nn.Unflatten(1, (c, h, w)), conv_bn(c, channels, kernel=1))
        else:
            raise BenchError(f"bottleneck {kind!r}: choose 'dense' or 'spatial'")


class Decoder(nn.Module):
    """Mirror of `Encoder`; with `skip_channels`, concatenates encoder features at each resolution."""

    def __init__(self, channels: tuple[int, ...], sizes: list, c_out: int, skips: bool = False):
        super().__init__()
        n = len(channels)
        self.sizes = sizes
        self.blocks = nn.ModuleList()
        for i in reversed(range(n)):
            c_in = channels[i] * (2 if skips and i < n - 1 else 1)
            c_next = channels[i - 1] if i > 0 else channels[0]
            self.blocks.append(nn.Sequential(conv_bn(c_in, channels[i]), conv_bn(channels[i], c_next)))
        self.head = nn.Conv2d(channels[0], c_out, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        n = len(self.blocks)
        for j, block in enumerate(self.blocks):
            i = n - 1 - j  # encoder stage this block mirrors
            if skips is not None and i < n - 1:
                x = torch.cat([x, skips[i]], dim=1)
            x = F.interpolate(block(x), size=self.sizes[i], mode="nearest")
        return torch.sigmoid(self.head(x))  # images live in [0, 1]


def ssim_window(height: int, width: int) -> int:
    """Gaussian window for SSIM: the standard 11 (Wang et al. 2004) where the image allows it."""
    side = min(height, width)
    return 11 if side >= 22 else 7 if side >= 14 else 3


def ssim(x_hat: torch.Tensor, x: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """SSIM of [0, 1] images. MS-SSIM needs sides > 160 px, so plain SSIM at 8-32 px."""
    win = ssim_window(*x.shape[-2:])
    return _ssim(x_hat.float(), x.float(), data_range=1.0, win_size=win, size_average=not per_image)


LOSSES = ("mse", "l1", "ssim", "l1+ssim")


def reconstruction_loss(
    kind: str, x_hat: torch.Tensor, x: torch.Tensor, ssim_weight: float = 0.84
) -> torch.Tensor:
    """`l1+ssim` mixes (1 - SSIM) and L1 as in Zhao et al. 2017, "Loss Functions for Image
    Restoration with Neural Networks" (weight 0.84 on the SSIM term)."""
    if kind == "mse":
        return F.mse_loss(x_hat, x)
    if kind == "l1":
        return F.l1_loss(x_hat, x)
    if kind == "ssim":
        return 1 - ssim(x_hat, x)
    if kind == "l1+ssim":
        return ssim_weight * (1 - ssim(x_hat, x)) + (1 - ssim_weight) * F.l1_loss(x_hat, x)
    raise BenchError(f"loss {kind!r}: choose from {', '.join(LOSSES)}")
