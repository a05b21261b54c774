"""Evaluation of a frozen encoder: the only code that sees labels, with the evaluators of
bench/evaluators/ doing the measuring.

Latents are extracted once, in eval() under inference_mode, cached, and standardised with
training-split statistics; every evaluator picks its hyperparameters on the validation slice and
scores the test split once. The encoder's weights are hashed before and after: evaluation must
not change them (docs/protocol.md, rule 3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch

from bench import BenchError, evaluators, store
from bench.evaluators import Context, Plan
from bench.evaluators.linear import fit_logreg, hits, logits
from bench.run.train import Diverged

SPLITS = ("train", "val", "test")


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def extract(model, x: torch.Tensor, device: torch.device, batch: int = 1024) -> torch.Tensor:
    """Latents (N, D) float32 on the CPU of uint8 images (N, C, H, W)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z = model.encode(xb)
        if not (torch.is_tensor(z) and z.is_floating_point()):  # .float() would hide it (complex: silently)
            what = z.dtype if torch.is_tensor(z) else type(z).__name__
            raise BenchError(
                f"the encoder returns {what}, not float latents: an encoder returns (B, D) floats"
            )
        out.append(z.float().cpu())
    return torch.cat(out)


def standardize(z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale every split with the training split's per-feature mean and std."""
    mean, std = z["train"].mean(0), z["train"].std(0).clamp_min(1e-6)
    return {k: (v - mean) / std for k, v in z.items()}


def latents(model, data, device, cache: Path) -> dict[str, torch.Tensor]:
    """The model's raw latents of every split, from the cache file `cache` when it fits `data`,
    or extracted (and cached: a full disk costs the cache, not the run). Latents that are not
    finite are a diverged encoder: nothing to measure."""
    z = store.load_tensor(cache, fits(data))
    if z is None:
        z = {s: extract(model, getattr(data, f"x_{s}"), device) for s in SPLITS}
        if (why := fits(data)(z)) and "not finite" not in why:  # checked once, where they enter
            raise BenchError(
                f"the encoder {why.replace('holds', 'gives', 1)}: an encoder returns one "
                "float row of D values per image, (B, D)"
            )
        if not all(torch.isfinite(t).all() for t in z.values()):
            raise Diverged("the encoder's latents are not finite (NaN or inf)")
        store.try_save_tensor(cache, z, "latents")
    return z


def kept(path: Path, make, check):
    """A cache file of what an evaluator reuses across runs (corrupted test images): loaded when
    `check` finds it sound, else made and saved (a file that cannot be written costs the cache)."""
    obj = store.load_tensor(path, check)
    if obj is None:
        obj = make()
        store.try_save_tensor(path, obj, "evaluator cache")
    return obj


def fits(data):
    """A check for store.load_tensor: what is wrong with cached latents of `data`, or None. They
    must be one float (N, D) tensor per split, N that split's size, one D, every value finite."""

    def check(z) -> str | None:
        if not isinstance(z, dict) or set(z) != set(SPLITS) or not all(map(torch.is_tensor, z.values())):
            return "is not a latents file (one tensor per split)"
        for s in SPLITS:
            t, n = z[s], len(getattr(data, f"x_{s}"))
            if t.ndim != 2 or len(t) != n or not t.is_floating_point() or t.shape[1] == 0:
                return f"holds {s} latents of shape {tuple(t.shape)} for {n} {s} images"
        if len({t.shape[1] for t in z.values()}) > 1:
            return "holds latents of different widths per split"
        if not all(torch.isfinite(t).all() for t in z.values()):
            return "holds latents that are not finite (NaN or inf)"
        return None

    return check


def preflight(cfg, plan: Plan, what: str, shrink: str = "a smaller latent size") -> None:
    """Refuse, before any training, a run whose evaluators cannot measure it (`Evaluator.refuse`)
    or whose evaluation would not fit in this machine's memory: the shared latents, and every
    evaluator's peak (`Evaluator.memory`), held together as the largest one runs."""
    chosen = [e for e in evaluators.all() if e.steers or not plan.steer_only]
    for e in chosen:
        if why := e.refuse(cfg, plan):
            raise BenchError(f"{what}: {why}")
    if not plan.dim:
        return  # a frozen encoder's width is known once it has run: nothing to estimate yet
    peaks = sorted((e.memory(cfg, plan) for e in chosen), reverse=True)
    need = plan.latents_bytes() + peaks[0][0]
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        biggest = (
            peaks[0][1] if peaks[0][0] > plan.latents_bytes() else f"{plan.dim}-wide latents of every image"
        )
        raise BenchError(
            f"{what}: evaluating it needs ~{need / 2**30:,.1f} GiB ({biggest}); this machine has "
            f"{have / 2**30:.0f} GiB: choose {shrink} or fewer images (data.train_limit)"
        )


def run(ctx: Context) -> dict:
    """Every registered evaluator, in order, on `ctx` (a study's trial, `ctx.steer_only`: only
    those that steer studies); returns their metrics entries, the versions that measured them
    and the protocol card they kept to (`audit`)."""
    out, versions, card = {}, {}, []
    for e in evaluators.all():
        if (ctx.steer_only and not e.steers) or (e.needs_model and ctx.model is None):
            continue
        ctx.reader = e.name
        out.update(e(ctx))
        card += audit(e, ctx)
        versions[e.name] = e.version
    return {**out, "evaluators": versions, "protocol": card}


def audit(e, ctx: Context) -> list[dict]:
    """`e`'s lines of the protocol card with the test reads it made. A number read twice from
    the test split, or more reads than its card declares (a choice made on test: one read per
    candidate), refuses the run: nothing is stored."""
    reads = ctx.reads.get(e.name, [])
    lines = [dataclasses.asdict(c) for c in e.card(ctx.cfg)]
    declared = sum(line["reads"] for line in lines)
    twice = sorted({r for r in reads if reads.count(r) > 1})
    if twice:
        raise BenchError(
            f"evaluator {e.name} read the test split twice for {twice[0]!r}: a test number is read "
            "once, after the validation slice chose; nothing was stored"
        )
    if len(reads) > declared:
        raise BenchError(
            f"evaluator {e.name} read the test split {len(reads)} times where its protocol card "
            f"declares {declared}: choices are made on the validation slice and test is read once per "
            "number reported; nothing was stored"
        )
    for line in lines:  # what it read, in the card's order (an evaluator that measured less reads less)
        line["reads"], reads = min(line["reads"], len(reads)), reads[line["reads"] :]
        line["evaluator"] = e.name
    return lines


def on_latents(z: dict, y: dict, num_classes: int, cfg, seed: int, steer_only: bool = False) -> dict:
    """The latent evaluators on standardised latents `z[split]` with labels `y[split]` (no model:
    reconstruction is left out). RankMe, which reads raw latents, sees these."""
    return run(Context(z, z, y, num_classes, cfg, seed, steer_only))


def measure(model, data, eval_cfg, seed: int, device, cache: Path, what: str) -> tuple[dict, dict]:
    """Evaluate the frozen `model` on `data`: (the metrics record's fields, artifacts). `what`
    names the run in the error raised if evaluation changed the encoder's weights (then nothing
    is stored)."""
    before = weights_hash(model)
    z = latents(model, data, device, cache)
    y = {s: getattr(data, f"y_{s}") for s in SPLITS}
    ctx = Context(
        standardize(z), z, y, len(data.classes), eval_cfg, seed, eval_cfg.steer_only, model, data, device
    )
    ctx.keep = lambda name, make, check: kept(store.cache_dir() / "evaluators" / f"{name}.pt", make, check)
    measures = run(ctx)
    versions = measures.pop("evaluators")
    after = weights_hash(model)
    if after != before:  # the latents would describe another encoder than the stored one
        raise BenchError(f"{what}: evaluation changed the encoder's weights; nothing was stored")
    return {
        "latent_dim": model.latent_dim,
        "params": sum(p.numel() for p in model.parameters()),
        "measures": measures,
        "evaluators": versions,
        "steer_only": eval_cfg.steer_only,
        "encoder_unchanged": after == before,
        "weights_sha256": after,
        "n": {s: len(getattr(data, f"x_{s}")) for s in SPLITS},
    }, ctx.artifacts


def quick_val_probe(model, data, device: torch.device, n_train: int = 5000) -> float:
    """Cheap per-epoch signal for pruning: a linear probe (fixed weight decay, few L-BFGS steps)
    fitted on at most `n_train` training latents, scored on the validation slice. Never test."""
    z = {"train": extract(model, data.x_train[:n_train], device), "val": extract(model, data.x_val, device)}
    z = standardize(z)
    w = fit_logreg(z["train"], data.y_train[:n_train], len(data.classes), wd=1e-4, max_iter=30)
    return hits(logits(z["val"], w).argmax(1), data.y_val)
