"""Cost: what a learner's accuracy costs, beside the training images per second and peak memory
every run records (bench/run/env.py). Encoder FLOPs per image and training FLOPs per image (one
training step's forward and backward, views and targets included, divided by its images), counted
by `torch.utils.flop_counter` (matmuls, convolutions and attention: the ops that dominate), and
the encoder's latency per image on this run's device.

FLOPs depend on the architecture and the image shape only, never on the weights: `count` gives
them for any stored run from its spec (`python -m bench cost`), without retraining. Latency is a
measured time and exists only for runs measured since. Only validation images are read; the
model is copied before its training step, so the frozen encoder stays as it was.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.evaluators import Column, Context, Evaluator, register

SAMPLE = 32  # images a FLOP count runs on (FLOPs per image do not depend on how many)
LATENCY_BATCH = 256  # images an encode latency is timed on
REPEATS = 5  # timed encodes after one warm-up; the median is kept


def _cost(name: str):
    return lambda m: (m.get("cost") or {}).get(name)


@register("cost")
class Cost(Evaluator):
    order = 99  # last: it runs the model once more after every measure is taken
    needs_model = True
    columns = (
        Column("encode_flops", _cost("encode_flops"), spread=False),
        Column("train_flops", _cost("train_flops"), spread=False),
        Column("latency_ms", _cost("latency_ms")),
        Column("images_per_s", lambda m: (m.get("train") or {}).get("images_per_s")),
        Column("peak_mb", lambda m: (m.get("env") or {}).get("peak_memory_mb")),
    )

    def __call__(self, ctx: Context) -> dict:
        x, y = ctx.data.x_val, ctx.data.y_val
        out = count(ctx.model, x[:SAMPLE], y[:SAMPLE], ctx.device)
        out["latency_ms"] = latency(ctx.model, x[:LATENCY_BATCH], ctx.device)
        out["latency_threads"] = torch.get_num_threads()
        return {"cost": out}


def _floats(x: torch.Tensor, device) -> torch.Tensor:
    return x.to(device).float().div_(255).contiguous(memory_format=torch.channels_last)


def count(model, x: torch.Tensor, y: torch.Tensor, device) -> dict:
    """{"encode_flops", "train_flops" (None for a baseline, which is not trained)} per image of
    uint8 images `x` (labels `y`, for a learner trained with them)."""
    xb = _floats(x, device)
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as flops:
        model.encode(xb)
    out = {"encode_flops": flops.get_total_flops() / len(xb), "train_flops": None}
    if model.trainable:
        twin = copy.deepcopy(model).train()  # its batch statistics and gradients are its own
        with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as flops:
            loss = twin.training_step(xb, y.to(device)) if twin.needs_labels else twin.training_step(xb)
            (loss["loss"] if isinstance(loss, dict) else loss).backward()
        out["train_flops"] = flops.get_total_flops() / len(xb)
    return out


@torch.inference_mode()
def latency(model, x: torch.Tensor, device) -> float:
    """Milliseconds per image of `model.encode` on a batch of `x`: the median of REPEATS timed
    encodes after a warm-up."""
    model.eval()
    xb = _floats(x, device)
    times = []
    for i in range(REPEATS + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model.encode(xb)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(xb)
