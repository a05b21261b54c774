"""What the stress tests cost a run: `make bench-stress-speed` -> results/speed.md, section
"Under stress: what the evaluators cost a run".

On digits (embedded) and MNIST (BENCH_DATA_DIR with MNIST/raw/; left out without it), the three
evaluators (corruptions, calibration, OOD) run on an untrained `random` network at d = 64 (the
learners' shared encoder, so no training is timed) after the linear probe they score. The first
corruption pass makes the corrupted images (once per dataset) and keeps them in a cache folder; it
is timed apart from a later run's pass in the same process (images in memory) and in another
process (images read from the cache folder).

    python -m bench.tools.speed_stress [--out results/speed.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from bench import config, data, evaluators, registry
from bench.evaluators import Context, corruptions
from bench.run import env, evaluate
from bench.tools.speed import replace_section

HEADING = "## Under stress: what the evaluators cost a run"


def timed(ds, cfg) -> dict[str, float]:
    torch.manual_seed(0)
    model = registry.create("random", config.method_config("random", {"latent_dim": 64}), ds.shape)
    device = torch.device("cpu")
    z = {s: evaluate.extract(model, getattr(ds, f"x_{s}"), device) for s in evaluate.SPLITS}
    y = {s: getattr(ds, f"y_{s}") for s in evaluate.SPLITS}
    ctx = Context(evaluate.standardize(z), z, y, len(ds.classes), cfg, 0, model=model, data=ds, device=device)
    out = {}
    steps = [("linear", "linear"), ("calibration", "calibration"), ("ood", "ood")]
    steps += [("corruptions", "made"), ("corruptions", "in memory"), ("corruptions", "from the cache")]
    with tempfile.TemporaryDirectory() as folder:
        ctx.keep = lambda name, make, check: evaluate.kept(Path(folder) / f"{name}.pt", make, check)
        corruptions._MADE.clear()
        for name, label in steps:
            if label == "from the cache":
                corruptions._MADE.clear()  # as another process finds them
            ctx.reader, ctx.reads = name, {}
            start = time.perf_counter()
            evaluators.get(name)(ctx)
            out[label] = time.perf_counter() - start
            out[f"{label} reads"] = len(ctx.reads.get(name, []))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tools.speed_stress")
    p.add_argument("--out", default="results/speed.md")
    args = p.parse_args(argv)
    cfg = config.EvalConfig()
    sets = {"digits": data.load(config.DataConfig())}
    root = os.environ.get("BENCH_DATA_DIR")
    if root and Path(root, "MNIST", "raw").is_dir():
        sets["MNIST"] = data.load(config.DataConfig(name="mnist"), root)
    rows = []
    for name, ds in sets.items():
        t = timed(ds, cfg)
        n = min(cfg.corruption_images, len(ds.x_test))
        suite = "MNIST-C" if ds.shape.channels == 1 else "CIFAR-10-C"
        rows.append(
            f"| {name} | {suite}: {n:,} x {t['made reads']} | {t['made']:.1f} s | {t['in memory']:.1f} s | "
            f"{t['from the cache']:.1f} s | {t['calibration']:.2f} s | {t['ood']:.1f} s |"
        )
    machine = env.device_name(torch.device("cpu"))
    text = "\n".join(
        [
            HEADING,
            "",
            f"The stress evaluators on an untrained `random` encoder at d = 64, on {machine}, "
            f"{env.cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} "
            "threads: corruption accuracy when the corrupted images are made (the first run of a "
            "dataset), when a later run of the process finds them in memory and when another process "
            "reads them from the project's cache, calibration, and OOD "
            f"detection against {len(cfg.ood_sources)} sources. Made by `make bench-stress-speed`.",
            "",
            "| dataset | suite: images x conditions | corruptions, made | in memory | from the cache "
            "| calibration | OOD |",
            "|:--|--:|--:|--:|--:|--:|--:|",
            *rows,
            "",
        ]
    )
    replace_section(Path(args.out), text, HEADING)
    print(text)


if __name__ == "__main__":
    main()
