"""One training loop for every learner: same optimiser, schedule and budget rules for all.

Batches are index slices of the in-memory uint8 tensor, converted to [0, 1] floats on the
training device; augmentation happens inside the method, on the batch. Labels come here only for
a learner that declares `needs_labels`, and only the training split's.

A long training resumes where it was stopped: given a `resume` path, the loop saves there, at the
end of an epoch at most every RESUME_EVERY_S, everything the next epoch depends on (weights,
optimiser and schedule, the shuffling generator, torch's global RNG that augmentations and noise
draw from, the learner's numeric attributes such as a VAE's KL weight), and a later call with
the same path starts after that epoch. A resumed training is the uninterrupted one, bit for bit
on the same machine; the file is removed when the training ends, however it ends, unless it was
stopped (Ctrl-C, `kill PID`, or a killed process that never gets to remove it).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from bench import BenchError, store
from bench.config import TrainConfig
from bench.store.hashing import digest

LOG_EVERY_S = 60.0
RESUME_EVERY_S = 60.0
PROGRESS = ("owner", "seed", "epoch", "total", "losses", "terms", "time_s")  # what the digest covers
RESUME_FIELDS = {*PROGRESS, "model", "opt", "sched", "gen", "rng", "digest"}


class Diverged(BenchError):
    """The loss became NaN or infinite: the run is recorded as diverged and the grid goes on."""


def fit(
    model,
    x_train: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    *,
    on_epoch=None,
    desc: str = "",
    y_train: torch.Tensor | None = None,
    log=None,
    resume: Path | None = None,
    resume_every_s: float | None = None,
) -> dict:
    """Train `model` on uint8 images (N, C, H, W) for cfg.epochs with AdamW and a warmup+cosine
    schedule. `on_epoch(epoch, model)` is called after each epoch (tuning hooks in here),
    `log(epoch, {term: value})` with the epoch's mean loss terms, `model.on_step(step, total)`
    after every optimiser step. `y_train` is given to a learner that declares `needs_labels`, and
    to no other. `resume`: where this training keeps its state between epochs (module docstring).

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
    first, before = 0, 0.0  # the epoch to start from, and the seconds trained before a resume
    saved = _resumed(resume, model, opt, sched, gen, device, (seed, cfg.epochs, total)) if resume else None
    if saved is not None:
        first, losses, terms, before = saved["epoch"], saved["losses"], saved["terms"], saved["time_s"]
        print(
            f"  {desc}: resumed after epoch {first}/{cfg.epochs} from {resume}", file=sys.stderr, flush=True
        )
    bar = tqdm(
        total=total, initial=first * steps_per_epoch, desc=desc, unit="step", leave=False, disable=None
    )
    every = RESUME_EVERY_S if resume_every_s is None else resume_every_s
    last_line = last_save = start  # without a terminal the bar is off: a line every LOG_EVERY_S instead
    try:
        for epoch in range(first, cfg.epochs):
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
                raise Diverged(
                    f"{desc}: loss became {losses[-1]} in epoch {epoch + 1}; "
                    "lower train.lr or set train.grad_clip"
                )
            now = time.perf_counter()
            if bar.disable and now - last_line >= LOG_EVERY_S:
                last_line = now
                print(
                    f"  {desc}: epoch {epoch + 1}/{cfg.epochs}  loss {losses[-1]:.4g}  ({now - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            if resume is not None and epoch + 1 < cfg.epochs and now - last_save >= every:
                state = {
                    "owner": resume.stem,
                    "seed": seed,
                    "epoch": epoch + 1,
                    "total": total,
                    "losses": losses,
                    "terms": terms,
                    "time_s": before + now - start,
                }
                store.try_save_tensor(resume, _state(state, model, opt, sched, gen, device), "resume state")
                last_save = time.perf_counter()
            if on_epoch is not None:
                on_epoch(epoch, model)
                model.train()
    except (KeyboardInterrupt, SystemExit):
        raise  # stopped: the resume state stays for the next call
    except BaseException:
        if resume is not None:
            resume.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if resume is not None:
        resume.unlink(missing_ok=True)
    elapsed = time.perf_counter() - start
    model.eval()
    info = {
        "epochs": cfg.epochs,
        "loss_per_epoch": losses,
        "terms_per_epoch": terms,  # the learner's named loss terms (e.g. a VAE's recon and kl)
        "time_s": before + elapsed,
        "images_per_s": (cfg.epochs - first) * steps_per_epoch * batch / elapsed,
    }
    return info if not first else {**info, "resumed_after_epoch": first}


def _numbers(model) -> dict:
    """The learner's plain numeric attributes, module by module (a VAE's KL weight, BYOL's
    momentum): state that on_step sets and no state_dict holds."""
    return {
        name: {k: v for k, v in vars(module).items() if type(v) in (int, float) and not k.startswith("_")}
        for name, module in model.named_modules()
    }


def _state(progress: dict, model, opt, sched, gen, device) -> dict:
    return {
        **progress,
        "digest": digest({k: progress[k] for k in PROGRESS}),
        "model": model.state_dict(),
        "numbers": _numbers(model),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "gen": gen.get_state(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _resumed(path: Path, model, opt, sched, gen, device, run: tuple[int, int, int]) -> dict | None:
    """Load a resume state into the training's objects, or None (nothing there, or a file that
    is not this training's: saved for another run key or seed, an epoch outside the run, a digest
    that does not match, another network, or entries that do not load; warned, deleted, and the
    training starts from its first epoch, as an uninterrupted one would)."""
    seed, epochs, total = run
    own = model.state_dict()
    modules = dict(model.named_modules())

    def problem(state):
        if not isinstance(state, dict) or not RESUME_FIELDS <= set(state):
            return "is not a training's resume state"
        if state["owner"] != path.stem or state["seed"] != seed:
            return f"was saved by another run ({state['owner']}, seed {state['seed']})"
        if state["total"] != total or not (isinstance(state["epoch"], int) and 0 < state["epoch"] < epochs):
            return (
                f"was saved after epoch {state['epoch']} of {state['total']} steps: not within this training"
            )
        if state["digest"] != digest({k: state[k] for k in PROGRESS}):
            return "does not match its digest"
        weights = state["model"]
        if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
            return "holds another network's weights"
        groups = [len(g["params"]) for g in state["opt"]["param_groups"]]
        if groups != [len(g["params"]) for g in opt.param_groups]:
            return "holds another network's optimiser"
        if not set(state.get("numbers", {})) <= set(modules):
            return "holds another network's modules"
        return None

    state = store.load_tensor(path, problem)
    if state is None:
        return None
    weights, optimiser, schedule = copy.deepcopy(own), opt.state_dict(), sched.state_dict()
    shuffle, rng = gen.get_state(), torch.get_rng_state()
    try:
        _apply(state, model, opt, sched, gen, device, modules)
    except Exception as e:  # a generator or schedule entry that parses but does not load
        model.load_state_dict(weights)
        opt.load_state_dict(optimiser)
        sched.load_state_dict(schedule)
        gen.set_state(shuffle)
        torch.set_rng_state(rng)
        store.warn(f"{path} does not load ({type(e).__name__}: {e}): deleted; training from the first epoch")
        path.unlink(missing_ok=True)
        return None
    return state


def _apply(state: dict, model, opt, sched, gen, device, modules: dict) -> None:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    for name, values in state.get("numbers", {}).items():
        for key, value in values.items():
            setattr(modules[name], key, value)


def _batch(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    xb = x[idx].float().div_(255)  # (B, C, H, W) in [0, 1]
    return xb.contiguous(memory_format=torch.channels_last)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
