"""Training throughput for results/speed.md: each learner's step against the pipeline a user of
lightly (per-image transforms through a DataLoader) or plain PyTorch would write, and
`--compile` against eager, with the FLOPs each step must do."""

from __future__ import annotations

import os

import torch

from bench import config, data, registry
from bench.run import train
from bench.tools.timing import alternate, timed

VIEW_LEARNERS = ("simclr", "byol", "vicreg", "barlowtwins")


def _fit_steps(model, x: torch.Tensor, steps: int, batch: int) -> None:
    cfg = config.TrainConfig(epochs=1, batch_size=batch, warmup_epochs=0)
    train.fit(model, x[: steps * batch], cfg, 0, torch.device("cpu"))


def _loader_steps(model, loader, steps: int, views: bool) -> None:
    """The same model and optimiser fed by a DataLoader: per-image transforms (views) or a plain
    TensorDataset (autoencoders)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for i, batch in enumerate(loader):
        if i == steps:
            break
        if views:
            (v1, v2), _ = batch
            model.views = lambda _x, pair=(v1, v2): pair  # the learner's own loss, lightly's views
            out = model.training_step(v1)
        else:
            out = model.training_step(batch[0])
        loss = out["loss"] if isinstance(out, dict) else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


class _Images(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) images as PIL images, the input lightly's transforms expect."""

    def __init__(self, x: torch.Tensor, transform):
        self.x, self.transform = x, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        img = self.x[i].permute(1, 2, 0).numpy()
        pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
        return self.transform(pil), 0


def training(ds: data.Dataset, cfg_name: str, steps: int = 8, batch: int = 256) -> list[dict]:
    """Images (pairs for view learners) per second: the project's batched on-device path against
    lightly's SimCLRTransform per image through a DataLoader, and for an autoencoder against a
    TensorDataset DataLoader loop. The DataLoader's worker count (0 or every core) is the faster
    of one timing each; then the two sides alternate."""
    cfg = config.load(cfg_name, [])
    autoencoders = [m for m in registry.names() if registry.get(m).trainable and registry.get(m).reconstructs]
    return [_training_row(name, cfg, ds, steps, batch) for name in (*VIEW_LEARNERS, *autoencoders)]


def _training_row(name: str, cfg: config.Config, ds: data.Dataset, steps: int, batch: int) -> dict:
    from lightly.transforms import SimCLRTransform

    x = ds.x_train[: steps * batch]
    method_cfg = config.method_config(name, {**cfg.method_overrides(name), "latent_dim": 256})
    views = name in VIEW_LEARNERS
    if views:
        aug = method_cfg
        transform = SimCLRTransform(
            input_size=ds.shape.height,
            cj_prob=aug.jitter_prob,
            cj_strength=aug.jitter_strength,
            min_scale=aug.crop_scale[0],
            random_gray_scale=aug.gray_prob,
            gaussian_blur=0.0,
            hf_prob=0.5 if aug.hflip else 0.0,
            normalize=None,
        )
        dataset = _Images(x, transform)
    else:
        dataset = torch.utils.data.TensorDataset(x.float().div(255))
    torch.manual_seed(0)
    ours_model = registry.create(name, method_cfg, ds.shape)
    theirs_model = registry.create(name, method_cfg, ds.shape)
    loaders = {
        w: torch.utils.data.DataLoader(
            dataset,
            batch_size=batch,
            shuffle=True,
            num_workers=w,
            drop_last=True,
            persistent_workers=w > 0,
        )
        for w in (0, os.cpu_count() or 1)
    }
    w = min(loaders, key=lambda w_: timed(lambda: _loader_steps(theirs_model, loaders[w_], steps, views)))
    t_ours, t_theirs = alternate(
        lambda: _fit_steps(ours_model, x, steps, batch),
        lambda: _loader_steps(theirs_model, loaders[w], steps, views),
    )
    flops = _train_flops(registry.create(name, method_cfg, ds.shape), ds, batch, views)
    return {
        "what": f"train {name} (batch {batch}, {steps} steps)",
        "ours": f"{steps * batch / t_ours:,.0f} img/s",
        "alternative": f"{steps * batch / t_theirs:,.0f} img/s "
        + ("(lightly SimCLRTransform, DataLoader" if views else "(TensorDataset DataLoader")
        + f", {w} workers)",
        "ratio": t_theirs / t_ours,
        "flops": flops * steps,
        "seconds": t_ours,
        "kind": "views" if views else "autoencoder",
    }


def compiled(ds: data.Dataset, cfg_name: str, name: str = "simclr", steps: int = 8, batch: int = 256) -> dict:
    """`--compile` (torch.compile of the training step) against eager on the same model: the first
    call pays the compilation; then the two alternate."""
    cfg = config.load(cfg_name, [])
    method_cfg = config.method_config(name, {**cfg.method_overrides(name), "latent_dim": 256})
    x = ds.x_train[: steps * batch]
    torch.manual_seed(0)
    eager = registry.create(name, method_cfg, ds.shape)
    comp = registry.create(name, method_cfg, ds.shape)

    def run(model, compile_):
        train_cfg = config.TrainConfig(epochs=1, batch_size=batch, warmup_epochs=0, compile=compile_)
        train.fit(model, x, train_cfg, 0, torch.device("cpu"))

    first = timed(lambda: run(comp, True))
    t_eager, t_comp = alternate(lambda: run(eager, False), lambda: run(comp, True))
    return {
        "what": f"train {name} with --compile (torch.compile), batch {batch}, {steps} steps",
        "ours": f"{steps * batch / t_comp:,.0f} img/s compiled (first call {first:.0f} s: compilation)",
        "alternative": f"{steps * batch / t_eager:,.0f} img/s eager",
        "ratio": t_eager / t_comp,
        "flops": None,
        "seconds": t_comp,
        "kind": "compile",
    }


def _train_flops(model, ds, batch: int, views: bool) -> float:
    """Forward + backward FLOPs of one training step (3x the forward's multiply-adds x 2),
    counted with torch's FLOP counter on a real batch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = ds.x_train[:batch].float().div(255)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model.training_step(x)
        loss = out["loss"] if isinstance(out, dict) else out
        loss.backward()
    return float(counter.get_total_flops())
