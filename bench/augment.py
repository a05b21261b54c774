"""Batched image augmentation on tensors, on the training device.

One call transforms a whole batch with per-sample random parameters: a random resized crop and
horizontal flip are one `affine_grid` + `grid_sample`, colour jitter is a few broadcast ops.
results/speed.md times training with these batched views end to end against lightly's per-image
transforms through a DataLoader.
Parameters follow SimCLR (Chen et al. 2020, appendix A): crop scale (0.08, 1), aspect (3/4, 4/3),
colour jitter (0.8 * strength for brightness/contrast/saturation, 0.2 * strength hue) with p=0.8,
grayscale with p=0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.checks import at_least, flag, fraction_range, within


@dataclass
class Views:
    """Augmentation settings shared by every view-based learner (their Configs inherit these
    fields, so `[methods.views]` sets them for all of them at once). Defaults: SimCLR's."""

    crop_scale: tuple[float, ...] = fraction_range((0.08, 1.0))
    hflip: bool = flag(True)
    jitter_strength: float = at_least(0, 0.5)  # 0.5 on CIFAR-10 in the paper; grey images get no hue/sat
    jitter_prob: float = within(0, 1, 0.8)
    gray_prob: float = within(0, 1, 0.2)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], hflip: bool) -> torch.Tensor:
    """Per-sample crop of area fraction in `scale` and aspect ratio in [3/4, 4/3], resized back
    to the input size with bilinear sampling; optionally mirrored with p=0.5. x: (B, C, H, W)."""
    b, dev = x.shape[0], x.device
    area = torch.empty(b, device=dev).uniform_(*scale)
    log_ratio = torch.empty(b, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3))
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, device=dev) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
    cy = (torch.rand(b, device=dev) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0) if hflip else torch.ones(b, device=dev)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601 luma
    return (x * weights).sum(1, keepdim=True)


def _factor(b: int, strength: float, device) -> torch.Tensor:
    return torch.empty(b, 1, 1, 1, device=device).uniform_(max(0.0, 1 - strength), 1 + strength)


def color_jitter(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    """Brightness, contrast, saturation (colour images) and hue, each per sample; applied to a
    random fraction p of the batch. x in [0, 1], (B, C, H, W)."""
    b, dev = x.shape[0], x.device
    s = 0.8 * strength
    out = x * _factor(b, s, dev)
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * _factor(b, s, dev) + mean
    if x.shape[1] == 3:
        gray = _gray(out)
        out = (out - gray) * _factor(b, s, dev) + gray
        out = _hue_rotate(out, torch.empty(b, device=dev).uniform_(-0.2 * strength, 0.2 * strength))
    out = out.clamp(0, 1)
    apply = (torch.rand(b, 1, 1, 1, device=dev) < p).to(x.dtype)
    return apply * out + (1 - apply) * x


def _hue_rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `turns` (fractions of a full turn) in YIQ space; one 3x3 matrix per sample."""
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = turns * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x)


def random_grayscale(x: torch.Tensor, p: float) -> torch.Tensor:
    if x.shape[1] == 1 or p == 0:
        return x
    apply = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)
    return apply * _gray(x).expand_as(x) + (1 - apply) * x


def view(x: torch.Tensor, aug: Views) -> torch.Tensor:
    """One random view of every image in the batch (x in [0, 1], (B, C, H, W))."""
    x = random_resized_crop(x, aug.crop_scale, aug.hflip)
    x = color_jitter(x, aug.jitter_strength, aug.jitter_prob)
    return random_grayscale(x, aug.gray_prob)
