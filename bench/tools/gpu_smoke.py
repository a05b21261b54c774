"""`make bench-gpu-smoke`: a few epochs of ResNet-18 SimCLR and one autoencoder on CIFAR-10 on a
CUDA machine, timed and evaluated, written to results/speed.md under "## GPU"; then, with
--grid-minutes M, the full-size 200-epoch grid of configs/cifar10-gpu.toml for M minutes.

    python -m bench.tools.gpu_smoke [--data-dir DIR] [--epochs 3] [--compile] [--out results/speed.md]
        [--grid-minutes M] [--grid-methods simclr,ae] [--no-smoke]
    python -m bench.tools.gpu_smoke --device cpu --epochs 1 --limit 64 --batch-size 16 --dataset npz:F

The second form runs the same path on a CPU (tiny data and batches; bf16 autocast where the CPU has
bf16 kernels, fp32 where it would be emulated, `env.native_bf16`): the
only thing it leaves untested is the GPU itself. It writes nothing unless --out is given.

The models and settings are configs/cifar10-gpu.toml's (the full-size GPU grid), trained through
the harness's own loop (`train.fit`: bf16 autocast, channels-last, on-device views); only the
epoch count is cut. Per model: seconds per epoch (the first epoch apart, it holds cuDNN's
autotuning and any compilation), images per second over the later epochs, and peak GPU memory.
It stores no run: a timing, with the linear probe's validation accuracy and the evaluation's time
as a check that the frozen encoder is read out. Asked for CUDA on a machine without it, it says so
in one line and exits 2.

The grid is `bench run --config configs/cifar10-gpu.toml`, stopped after M minutes the way Ctrl-C
stops it: finished runs are in the store, the run in training keeps its resume state
(bench/run/train.py, saved every min(60 s, M/5)), and the same command on the same machine continues
it. Its paragraph says what finished and how far the stopped run got, at what seconds per epoch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from bench import BenchError, config, data, registry, store
from bench import __main__ as cli
from bench.run import env, evaluate, runner, train
from bench.tools import speed

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cifar10-gpu.toml"
MODELS = ("simclr", "ae")
HEADING = "## GPU"


def measure(name: str, cfg: config.Config, ds: data.Dataset, device, epochs: int, compile_: bool) -> dict:
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    grid_spec = next(s for s in runner.specs(cfg, ds) if s.method == name)  # the grid's own run
    method_cfg = config.method_config(name, grid_spec.method_config)
    model = registry.create(name, method_cfg, ds.shape).to(device, memory_format=torch.channels_last)
    budget = {
        **config.to_dict(cfg.train_for(name)),
        "epochs": epochs,
        "compile": compile_,
        "bf16": env.native_bf16(device),
    }
    train_cfg = config.TrainConfig(**budget)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    stamps = [time.perf_counter()]

    def on_epoch(_epoch, _model):
        if cuda:
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    info = train.fit(model, ds.x_train, train_cfg, 0, device, on_epoch=on_epoch, desc=f"gpu smoke {name}")
    epoch_s = [b - a for a, b in zip(stamps, stamps[1:])]
    steps = len(ds.x_train) // min(train_cfg.batch_size, len(ds.x_train))
    later = epoch_s[1:] or epoch_s
    start = time.perf_counter()
    eval_cfg = config.EvalConfig(**{**config.to_dict(cfg.eval), "steer_only": True})  # the linear probe
    latents = Path(tempfile.mkdtemp()) / "latents.pt"  # nothing kept: a timing, not a run
    measured, _ = evaluate.measure(model, ds, eval_cfg, 0, device, latents, f"gpu smoke {name}")
    shutil.rmtree(latents.parent, ignore_errors=True)
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**30
        if cuda
        else env.record(device, start)["env"]["peak_memory_mb"] / 1024
    )
    return {
        "learner": name,
        "network": getattr(method_cfg, "backbone", None) or f"conv {list(method_cfg.channels)}",
        "latent": method_cfg.latent_dim,
        "batch": train_cfg.batch_size,
        "epochs": epochs,
        "first epoch (s)": f"{epoch_s[0]:.1f}",
        "later epochs (s)": f"{sum(later) / len(later):.1f}",
        "images/s": f"{steps * min(train_cfg.batch_size, len(ds.x_train)) / (sum(later) / len(later)):,.0f}",
        "peak memory (GiB)": f"{memory:.2f}",
        "final loss": f"{info['loss_per_epoch'][-1]:.4g}",
        "val linear %": f"{measured['measures']['linear']['val_acc'] * 100:.2f}",
        "eval (s)": f"{time.perf_counter() - start:.1f}",
    }


def grid(minutes: float, args, device) -> list[str]:
    """The full-size grid for `minutes`, then stopped like Ctrl-C; what it did, as lines."""
    argv = ["run", "--config", str(CONFIG), "--dataset", args.dataset, "--offline", "--device", device.type]
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["--methods", args.grid_methods] if args.grid_methods else []
    argv += ["--compile"] if args.compile else []
    argv += [f"--set=data.train_limit={args.limit}"] if args.limit else []
    argv += [f"--set=train.batch_size={args.batch_size}"] if args.batch_size else []
    before = {p: p.stat().st_mtime for p in store.cache_dir().glob("resume/*.pt")}
    done_before = {r["key"] for r in store.load_runs()}
    seconds = minutes * 60
    train.RESUME_EVERY_S = min(train.RESUME_EVERY_S, seconds / 5)

    def stop(signum, frame):
        raise KeyboardInterrupt  # bench run's own tidy exit: finished runs kept, resume state kept

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        code = cli.main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    wall = time.perf_counter() - start
    if code not in (0, 130):
        raise BenchError(f"the grid stopped with exit code {code} (its error line is above)")
    finished = [r for r in store.load_runs() if r["key"] not in done_before]
    lines = [
        f"- **Full-size grid** (`python -m bench run --config configs/cifar10-gpu.toml`, "
        f"{'the whole grid, ' if code == 0 else ''}{wall / 60:.1f} min): {len(finished)} run(s) "
        f"finished{': ' if finished else '.'}{', '.join(_finished(r) for r in finished)}"
    ]
    for path in sorted(store.cache_dir().glob("resume/*.pt")):
        if before.get(path) == path.stat().st_mtime:
            continue  # a state this session did not move
        state = torch.load(path, map_location="cpu", weights_only=True)
        per_epoch = state["time_s"] / max(1, state["epoch"])
        lines.append(
            f"- Stopped in training: run {path.stem} (train key) after epoch {state['epoch']} "
            f"({state['time_s']:.0f} s trained, {per_epoch:.1f} s an epoch); the same command on this "
            "machine resumes it there."
        )
    return lines


def _finished(run: dict) -> str:
    m, what = run["metrics"], f"{run['config']['method']} seed {run['config']['seed']}"
    if m["status"] != "ok":
        return f"{what} ({m['status']})"
    return f"{what} (linear {m['linear']['test_acc'] * 100:.2f}%, {m['train']['time_s'] / 60:.1f} min)"


def section(rows: list[dict], ds: data.Dataset, device, compile_: bool, grid_lines=()) -> str:
    return "\n".join(
        [
            HEADING,
            "",
            f"- **Hardware:** {env.device_name(device)}; torch {torch.__version__}; "
            f"{'torch.compile' if compile_ else 'eager'}, "
            f"{'bf16 autocast' if env.native_bf16(device) else 'fp32 (no native bf16 here)'}, channels-last.",
            f"- **Data:** {ds.title}, {len(ds.x_train):,} training images; models and settings of "
            "configs/cifar10-gpu.toml, epochs cut to the count shown.",
            "- **Reproduce:** `make bench-gpu-smoke` (`python -m bench.tools.gpu_smoke`).",
            *grid_lines,
            "",
            *([pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""] if rows else []),
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tools.gpu_smoke")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the same path, tiny")
    p.add_argument("--limit", type=int, default=0, help="keep only this many training images (0: all)")
    p.add_argument("--batch-size", type=int, help="default: the GPU config's (512)")
    p.add_argument("--out", help="default: results/speed.md on CUDA; on a CPU nothing is written")
    p.add_argument("--grid-minutes", type=float, default=0, help="then the full-size grid for this long")
    p.add_argument("--grid-methods", help="the grid's learners (default: the config's, every learner)")
    p.add_argument("--no-smoke", action="store_true", help="the grid alone (continuing an earlier one)")
    args = p.parse_args(argv)
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise BenchError(
                "bench-gpu-smoke needs a CUDA device and none is visible here (--device cpu: the CPU path)"
            )
        if args.epochs < 1 or args.limit < 0 or (args.batch_size is not None and args.batch_size < 2):
            raise BenchError("--epochs must be at least 1, --limit at least 0 and --batch-size at least 2")
        if not 0 <= args.grid_minutes < 10**6 or (args.no_smoke and not args.grid_minutes):
            raise BenchError("--grid-minutes must be a number of minutes >= 0, and > 0 with --no-smoke")
        device = torch.device(args.device)
        torch.backends.cudnn.benchmark = True
        sets = [] if args.batch_size is None else [f"train.batch_size={args.batch_size}"]
        cfg = config.load(CONFIG, sets)
        ds = data.load(config.DataConfig(args.dataset, train_limit=args.limit), args.data_dir, offline=True)
        rows = []
        for name in () if args.no_smoke else MODELS:
            rows.append(measure(name, cfg, ds, device, args.epochs, args.compile))
            print(rows[-1], flush=True)
        grid_lines = grid(args.grid_minutes, args, device) if args.grid_minutes else []
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = section(rows, ds, device, args.compile, grid_lines)
    out = args.out or ("results/speed.md" if device.type == "cuda" else None)
    if out:
        speed.replace_section(Path(out), text, HEADING)
    print(text)
    return 0


if __name__ == "__main__":
    with store.using(store.Store.from_env()):  # a make target is an edge: the environment's store
        sys.exit(main())
