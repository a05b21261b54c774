"""One training loop for every learner: same optimiser, schedule and budget rules for all.

Batches are index slices of the in-memory uint8 tensor, converted to [0, 1] floats on the
training device; augmentation happens inside the method, on the batch. Labels come here only for
a learner that declares `needs_labels`, and only the training split's.
"""

from __future__ import annotations

import math
import sys
import time

import torch
from tqdm import tqdm

from bench import BenchError
from bench.config import TrainConfig

LOG_EVERY_S = 60.0


class Diverged(BenchError):
    """The loss became NaN or infinite: the run is recorded as diverged and the grid goes on."""


def fit(
    model,
    x_train: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    on_epoch=None,
    desc: str = "",
    y_train: torch.Tensor | None = None,
    log=None,
) -> dict:
    """Train `model` on uint8 images (N, C, H, W) for cfg.epochs with AdamW and a warmup+cosine
    schedule. `on_epoch(epoch, model)` is called after each epoch (tuning hooks in here),
    `log(epoch, {term: value})` with the epoch's mean loss terms, `model.on_step(step, total)`
    after every optimiser step. `y_train` is given to a learner that declares `needs_labels`, and
    to no other.

    Returns the per-epoch mean loss and loss terms, wall time and throughput.
    """
    if (y_train is not None) != model.needs_labels:
        raise BenchError(f"{model.name}: labels go to a learner that declares needs_labels, and only to it")
    model.prepare(x_train)
    if not model.trainable:
        return {"epochs": 0, "loss_per_epoch": [], "time_s": 0.0, "images_per_s": None}
    x_train = x_train.to(device)
    y_train = y_train.to(device) if y_train is not None else None
    n = len(x_train)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # drop the ragged last batch: contrastive losses want full ones
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, warmup, total))
    gen = torch.Generator().manual_seed(seed)
    # bf16 autocast: always on CUDA; on a CPU only when asked (train.bf16), which the GPU
    # config's CPU test uses to run the CUDA path's arithmetic here
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cfg.bf16)
    step_fn = torch.compile(model.training_step) if cfg.compile else model.training_step
    model.train()
    losses, terms, start = [], {}, time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=None)
    last_line = start  # without a terminal the bar is off: a line every LOG_EVERY_S instead
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        running: dict[str, torch.Tensor] = {}
        for step in range(steps_per_epoch):
            idx = perm[step * batch : (step + 1) * batch]
            with amp:
                out = step_fn(_batch(x_train, idx), *(() if y_train is None else (y_train[idx],)))
            out = out if isinstance(out, dict) else {"loss": out}
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            model.on_step(epoch * steps_per_epoch + step + 1, total)
            for name, value in out.items():
                running[name] = running.get(name, 0) + value.detach().float().to(device)
            bar.update()
        means = {k: v.item() / steps_per_epoch for k, v in running.items()}  # one sync per epoch
        losses.append(means.pop("loss"))
        for name, value in means.items():
            terms.setdefault(name, []).append(value)
        if log is not None:
            log(epoch, {"loss": losses[-1], **means})
        bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{losses[-1]:.4g}")
        if not math.isfinite(losses[-1]):
            bar.close()
            raise Diverged(
                f"{desc}: loss became {losses[-1]} in epoch {epoch + 1}; "
                "lower train.lr or set train.grad_clip"
            )
        if bar.disable and time.perf_counter() - last_line >= LOG_EVERY_S:
            last_line = time.perf_counter()
            print(
                f"  {desc}: epoch {epoch + 1}/{cfg.epochs}  loss {losses[-1]:.4g}  "
                f"({last_line - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        if on_epoch is not None:
            on_epoch(epoch, model)
            model.train()
    bar.close()
    elapsed = time.perf_counter() - start
    model.eval()
    return {
        "epochs": cfg.epochs,
        "loss_per_epoch": losses,
        "terms_per_epoch": terms,  # the learner's named loss terms (e.g. a VAE's recon and kl)
        "time_s": elapsed,
        "images_per_s": cfg.epochs * steps_per_epoch * batch / elapsed,
    }


def _batch(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    xb = x[idx].float().div_(255)  # (B, C, H, W) in [0, 1]
    return xb.contiguous(memory_format=torch.channels_last)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
