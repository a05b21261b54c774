"""`make bench-gpu-smoke`: a few epochs of ResNet-18 SimCLR and one autoencoder on CIFAR-10 on a
CUDA machine, timed, written to results/speed.md under "## GPU".

    python -m bench.tools.gpu_smoke [--data-dir DIR] [--epochs 3] [--compile] [--out results/speed.md]

The models and settings are configs/cifar10-gpu.toml's (the full-size GPU grid), trained through
the harness's own loop (`train.fit`: bf16 autocast, channels-last, on-device views); only the
epoch count is cut. Per model: seconds per epoch (the first epoch apart, it holds cuDNN's
autotuning and any compilation), images per second over the later epochs, and peak GPU memory.
It stores no run and needs no labels: a timing, not a result. On a machine without CUDA it says
so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from bench import BenchError, config, data, env, registry, train
from bench.tools import speed

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cifar10-gpu.toml"
MODELS = ("simclr", "ae")
HEADING = "## GPU"


def measure(name: str, cfg: config.Config, ds: data.Dataset, device, epochs: int, compile_: bool) -> dict:
    torch.manual_seed(0)
    method_cfg = config.method_config(name, cfg.method_overrides(name))
    model = registry.create(name, method_cfg, ds.shape).to(device, memory_format=torch.channels_last)
    train_cfg = config.TrainConfig(
        **{**config.to_dict(cfg.train_for(name)), "epochs": epochs, "compile": compile_}
    )
    torch.cuda.reset_peak_memory_stats(device)
    stamps = [time.perf_counter()]

    def on_epoch(_epoch, _model):
        torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    info = train.fit(model, ds.x_train, train_cfg, 0, device, on_epoch, f"gpu smoke {name}")
    epoch_s = [b - a for a, b in zip(stamps, stamps[1:])]
    steps = len(ds.x_train) // train_cfg.batch_size
    later = epoch_s[1:] or epoch_s
    return {
        "learner": name,
        "network": getattr(method_cfg, "backbone", None) or f"conv {list(method_cfg.channels)}",
        "latent": method_cfg.latent_dim,
        "batch": train_cfg.batch_size,
        "epochs": epochs,
        "first epoch (s)": f"{epoch_s[0]:.1f}",
        "later epochs (s)": f"{sum(later) / len(later):.1f}",
        "images/s": f"{steps * train_cfg.batch_size / (sum(later) / len(later)):,.0f}",
        "peak memory (GiB)": f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}",
        "final loss": f"{info['loss_per_epoch'][-1]:.4g}",
    }


def section(rows: list[dict], ds: data.Dataset, device, compile_: bool) -> str:
    return "\n".join(
        [
            HEADING,
            "",
            f"- **Hardware:** {env.device_name(device)}; torch {torch.__version__}; "
            f"{'torch.compile' if compile_ else 'eager'}, bf16 autocast, channels-last.",
            f"- **Data:** {ds.title}, {len(ds.x_train):,} training images; models and settings of "
            "configs/cifar10-gpu.toml, epochs cut to the count shown.",
            "- **Reproduce:** `make bench-gpu-smoke` (`python -m bench.tools.gpu_smoke`).",
            "",
            pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tools.gpu_smoke")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--dataset", default="cifar10-jpeg")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--out", default="results/speed.md")
    args = p.parse_args(argv)
    try:
        if not torch.cuda.is_available():
            raise BenchError("bench-gpu-smoke needs a CUDA device and none is visible here")
        if args.epochs < 1:
            raise BenchError(f"--epochs must be at least 1, got {args.epochs}")
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        cfg = config.load(CONFIG, [])
        ds = data.load(config.DataConfig(args.dataset), args.data_dir, offline=True)
        rows = []
        for name in MODELS:
            rows.append(measure(name, cfg, ds, device, args.epochs, args.compile))
            print(rows[-1], flush=True)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = section(rows, ds, device, args.compile)
    speed.replace_section(Path(args.out), text, HEADING)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
