"""NT-Xent (lightly) against a naive loop over the 2N views, as lightly tests its own losses."""

import math

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss

from bench import augment


def naive_ntxent(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)  # the other view of the same image
        sims = [math.exp(float(z[i] @ z[k]) / temperature) for k in range(2 * n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / temperature) / sum(sims))
    return total / (2 * n)


def test_ntxent_matches_naive_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    for t in (0.1, 0.5):
        assert abs(NTXentLoss(temperature=t)(z1, z2).item() - naive_ntxent(z1, z2, t)) < 1e-4


def test_views_keep_shape_range_and_differ():
    aug = augment.Views(crop_scale=(0.2, 1.0))
    x = torch.rand(32, 3, 32, 32)
    v1, v2 = augment.view(x, aug), augment.view(x, aug)
    assert v1.shape == x.shape and v1.min() >= 0 and v1.max() <= 1
    assert not torch.allclose(v1, v2)


def test_crop_is_per_sample():
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(16, 1, 1, 1) / 64
    out = augment.random_resized_crop(x, (0.1, 0.5), hflip=True)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16  # every image got its own crop


def test_hue_rotation_by_zero_and_full_turn_is_identity():
    x = torch.rand(3, 3, 4, 4)
    assert torch.allclose(augment._hue_rotate(x, torch.zeros(3)), x, atol=1e-5)
    assert torch.allclose(augment._hue_rotate(x, torch.ones(3)), x, atol=1e-5)
