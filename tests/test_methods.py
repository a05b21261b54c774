"""The method contract, checked for every registered learner (a new one is tested on registration)."""

import pytest
import torch

from bench import BenchError, config, registry
from tests.conftest import GREY8, RGB32


def build(name, shape):
    """A tiny instance: small channel widths and a 12-d latent where the method has them."""
    fields = registry.get(name).Config.__dataclass_fields__
    overrides = {k: v for k, v in {"channels": (8, 16), "latent_dim": 12}.items() if k in fields}
    model = registry.create(name, config.method_config(name, overrides), shape)
    x_train = (torch.rand(64, shape.channels, shape.height, shape.width) * 255).to(torch.uint8)
    model.prepare(x_train)
    return model


@pytest.mark.parametrize("shape", [GREY8, RGB32], ids=["grey8", "rgb32"])
@pytest.mark.parametrize("name", registry.names())
def test_contract(name, shape):
    model = build(name, shape)
    x = torch.rand(6, shape.channels, shape.height, shape.width)
    model.eval()
    z = model.encode(x)
    assert z.shape == (6, model.latent_dim)
    assert torch.equal(z, model.encode(x)), "encode must be deterministic in eval()"
    if model.reconstructs:
        assert model.reconstruct(x).shape == x.shape
    if not model.trainable:
        return
    model.train()
    loss = model.training_step(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ae")(type("Other", (), {}))


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(BenchError, match="choose from .*simclr"):
        registry.get("vae2")


def test_spatial_bottleneck_expresses_the_classic_256x2x2():
    cfg = config.method_config(
        "ae", {"channels": (32, 64, 128, 256), "bottleneck": "spatial", "latent_dim": 1024}
    )
    model = registry.create("ae", cfg, RGB32)
    model.eval()
    assert model.encode(torch.rand(2, 3, 32, 32)).shape == (2, 1024)
    assert model.bottleneck.down[0].out_channels == 256  # 256 channels x 2 x 2


def test_unet_without_skips_ignores_encoder_features():
    cfg = config.method_config("unet", {"channels": (8, 16), "skips": False, "latent_dim": 4})
    model = registry.create("unet", cfg, GREY8).eval()
    x = torch.rand(3, 1, 8, 8)
    z = model.encode(x)
    assert torch.allclose(model.reconstruct(x), model.decoder(model.bottleneck.up(z)))


def test_pca_reconstructs_exactly_at_full_rank():
    x = torch.rand(200, 1, 8, 8)
    model = registry.create("pca", config.method_config("pca", {"latent_dim": 64}), GREY8)
    model.prepare((x * 255).round().to(torch.uint8))
    x = (x * 255).round() / 255
    assert torch.allclose(model.reconstruct(x), x, atol=1e-4)


def test_dae_corruption_is_batched_and_bounded():
    model = build("dae", GREY8)
    x = torch.rand(16, 1, 8, 8)
    noisy = model.corrupt(x)
    assert noisy.shape == x.shape and noisy.min() >= 0 and noisy.max() <= 1
    assert not torch.equal(noisy, x)


def test_simclr_resnet18_backbone_with_cifar_stem():
    cfg = config.method_config("simclr", {"backbone": "resnet18", "latent_dim": 512, "proj_hidden": 64})
    model = registry.create("simclr", cfg, RGB32)
    assert model.backbone.conv1.stride == (1, 1)  # CIFAR stem: 3x3 stride 1, no max-pool
    x = torch.rand(4, 3, 32, 32)
    assert torch.isfinite(model.training_step(x))
    assert model.eval().encode(x).shape == (4, 512)
    with pytest.raises(BenchError, match="set latent_dim=512"):
        registry.create("simclr", config.method_config("simclr", {"backbone": "resnet18"}), RGB32)
