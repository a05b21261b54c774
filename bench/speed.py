"""The harness's speed against what a user would run instead: `make bench-speed` -> results/speed.md.

Every line is a ratio measured in one process: the two sides alternate for `REPS` repetitions
and the medians are compared, so a slow moment hits both. Each fast path is also set against
its arithmetic limit: the FLOPs it must do over this machine's measured GEMM rate.

    python -m bench.speed [--data-dir DIR] [--out results/speed.md]

Data: CIFAR-10 (JPEG q75 copy) and MNIST from the data folder when they are there (the issue's
measurements were on them); digits otherwise, said so in the output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from bench import config, data, env, evaluate, registry, store, train

REPS = 3
VIEW_LEARNERS = ("simclr", "byol", "vicreg", "barlowtwins")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(ours, theirs, reps: int = REPS) -> tuple[float, float]:
    """Median seconds of `ours` and `theirs`, run alternately `reps` times each."""
    a, b = [], []
    for _ in range(reps):
        a.append(timed(ours))
        b.append(timed(theirs))
    return statistics.median(a), statistics.median(b)


def gemm_gflops(n: int = 1024, reps: int = 10) -> float:
    """This machine's fp32 matrix-multiply rate with torch's current thread count."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    return 2 * n**3 * reps / timed(lambda: [x @ y for _ in range(reps)]) / 1e9


def load(name: str, data_dir: str | None) -> data.Dataset | None:
    try:
        return data.load(config.DataConfig(name), data_dir, offline=True)
    except Exception:
        return None


# --- training throughput ------------------------------------------------------------------


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
    lightly's SimCLRTransform per image through a DataLoader (best of 0 and all workers), and for
    an autoencoder against a TensorDataset DataLoader loop."""
    from lightly.transforms import SimCLRTransform

    cfg = config.load(cfg_name, [])
    rows = []
    x = ds.x_train[: steps * batch]
    workers = [0, os.cpu_count() or 1]
    for name in (*VIEW_LEARNERS, "ae"):
        method_cfg = config.method_config(name, {**cfg.method_overrides(name), "latent_dim": 256})
        views = name in VIEW_LEARNERS
        if views:
            aug = method_cfg
            transform = SimCLRTransform(
                input_size=ds.shape.height, cj_prob=aug.jitter_prob, cj_strength=aug.jitter_strength,
                min_scale=aug.crop_scale[0], random_gray_scale=aug.gray_prob, gaussian_blur=0.0,
                hf_prob=0.5 if aug.hflip else 0.0, normalize=None,
            )  # fmt: skip
        best = None
        for w in workers:
            torch.manual_seed(0)
            ours_model = registry.create(name, method_cfg, ds.shape)
            theirs_model = registry.create(name, method_cfg, ds.shape)
            if views:
                dataset = _Images(x, transform)
            else:
                dataset = torch.utils.data.TensorDataset(x.float().div(255))
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=batch,
                shuffle=True,
                num_workers=w,
                drop_last=True,
                persistent_workers=w > 0,
            )
            t_ours, t_theirs = alternate(
                lambda m=ours_model: _fit_steps(m, x, steps, batch),
                lambda m=theirs_model, dl=loader, v=views: _loader_steps(m, dl, steps, v),
            )
            if best is None or t_theirs < best[1]:
                best = (t_ours, t_theirs, w)
        t_ours, t_theirs, w = best
        flops = _train_flops(registry.create(name, method_cfg, ds.shape), ds, batch, views)
        rows.append(
            {
                "what": f"train {name} (batch {batch}, {steps} steps)",
                "ours": f"{steps * batch / t_ours:,.0f} img/s",
                "alternative": f"{steps * batch / t_theirs:,.0f} img/s "
                + ("(lightly SimCLRTransform, DataLoader" if views else "(TensorDataset DataLoader")
                + f", {w} workers)",
                "ratio": t_theirs / t_ours,
                "flops": flops * steps,
                "seconds": t_ours,
            }
        )
    return rows


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


# --- evaluation ---------------------------------------------------------------------------


def _latents(ds: data.Dataset, dim: int) -> dict:
    """Latents of the `random` baseline (a real conv encoder at init) at `dim`, standardised."""
    torch.manual_seed(0)
    model = registry.create("random", config.method_config("random", {"latent_dim": dim}), ds.shape)
    z = {
        s: evaluate.extract(model, getattr(ds, f"x_{s}"), torch.device("cpu"))
        for s in ("train", "val", "test")
    }
    return evaluate.standardize(z)


def _pixels(ds: data.Dataset) -> dict:
    z = {s: getattr(ds, f"x_{s}").flatten(1).float().div(255) for s in ("train", "val", "test")}
    return evaluate.standardize(z)


def _mixture(n: int, dim: int, k: int) -> tuple[dict, dict]:
    """A synthetic k-class Gaussian mixture (for 100 classes when no CIFAR-100 copy is here)."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(k, dim, generator=g) * 0.35
    out_z, out_y = {}, {}
    for split, m in (("train", n), ("val", n // 9), ("test", n // 4)):
        y = torch.randint(0, k, (m,), generator=g)
        out_z[split], out_y[split] = means[y] + torch.randn(m, dim, generator=g), y
    return evaluate.standardize(out_z), out_y


def probe(z: dict, y: dict, k: int, label: str, wd: float = 1e-4) -> dict:
    """The project's L-BFGS probe at one L2 strength against scikit-learn's lbfgs at the same
    objective (C = 1 / (wd * N)), both to convergence; accuracies reported beside the times."""
    from sklearn.linear_model import LogisticRegression

    n = len(z["train"])
    result = {}

    def ours():
        w = evaluate._fit_logreg(z["train"], y["train"], k, wd, 500)  # noqa: SLF001
        result["ours"] = evaluate._accuracy(evaluate._logits(z["test"], w), y["test"])  # noqa: SLF001

    def theirs():
        clf = LogisticRegression(C=1 / (wd * n), max_iter=1000, tol=1e-6)
        clf.fit(z["train"].numpy(), y["train"].numpy())
        result["theirs"] = float((clf.predict(z["test"].numpy()) == y["test"].numpy()).mean())

    t_ours, t_theirs = alternate(ours, theirs, reps=1)
    d = z["train"].shape[1]
    flops = 2 * 2 * n * (d + 1) * k  # one full-batch gradient: logits and the G^T X product
    return {
        "what": f"linear probe, {label}: {n:,} x {d}, {k} classes, wd {wd:g}",
        "ours": f"{t_ours:.1f} s ({result['ours']:.2%})",
        "alternative": f"{t_theirs:.1f} s ({result['theirs']:.2%}), sklearn LogisticRegression(lbfgs)",
        "ratio": t_theirs / t_ours,
        "flops": flops,
        "seconds": None,
        "accuracy_gap": abs(result["ours"] - result["theirs"]) * 100,
    }


def knn(z: dict, y: dict, k: int, label: str, neighbours: int = 20) -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    result = {}
    bank = torch.nn.functional.normalize(z["train"], dim=1)

    def ours():
        labels, sims = evaluate._knn_votes(z["test"], z["train"], y["train"], neighbours, k)  # noqa: SLF001
        pred = evaluate._knn_predict(labels, sims, neighbours, k)  # noqa: SLF001
        result["ours"] = float((pred == y["test"]).float().mean())

    def theirs():
        clf = KNeighborsClassifier(neighbours, metric="cosine", algorithm="brute", n_jobs=-1)
        clf.fit(z["train"].numpy(), y["train"].numpy())
        result["theirs"] = float((clf.predict(z["test"].numpy()) == y["test"].numpy()).mean())

    t_ours, t_theirs = alternate(ours, theirs)
    n, d = bank.shape
    return {
        "what": f"kNN (k={neighbours}, cosine), {label}: {len(z['test']):,} queries x {n:,} bank x {d}",
        "ours": f"{t_ours:.2f} s ({result['ours']:.2%})",
        "alternative": f"{t_theirs:.2f} s ({result['theirs']:.2%}), sklearn KNeighborsClassifier(brute)",
        "ratio": t_theirs / t_ours,
        "flops": 2 * len(z["test"]) * n * d,
        "seconds": t_ours,
    }


def evaluator(z: dict, y: dict, k: int, label: str) -> dict:
    """The whole evaluator (weight-decay sweep, MLP, kNN, label efficiency) vs one sklearn fit."""
    from sklearn.linear_model import LogisticRegression

    cfg = config.EvalConfig()
    t_ours = timed(lambda: evaluate.probes(z, y, k, cfg, 0))
    n = len(z["train"])
    t_theirs = timed(
        lambda: LogisticRegression(C=1 / (1e-4 * n), max_iter=1000).fit(
            z["train"].numpy(), y["train"].numpy()
        )
    )
    return {
        "what": f"whole evaluator, {label}: {n:,} x {z['train'].shape[1]}, {k} classes",
        "ours": f"{t_ours:.1f} s (4-point sweep, MLP, kNN, 1%/10% x 5 draws)",
        "alternative": f"{t_theirs:.1f} s (one sklearn LogisticRegression fit)",
        "ratio": t_theirs / t_ours,
        "flops": None,
        "seconds": t_ours,
    }


# Sections of results/speed.md written by other commands, kept when this one rewrites the file.
KEPT_SECTIONS = {
    "## make bench from an empty store": "Not measured yet: `make bench-fresh`.",
    "## GPU": "Not run yet: `make bench-gpu-smoke` needs a CUDA machine, and none has been available.",
}


def _section(text: str, heading: str) -> str | None:
    start = text.find(f"\n{heading}\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + 1)
    return text[start + 1 : end + 1 if end >= 0 else len(text)]


def render(rows: list[dict], gflops: float, notes: list[str]) -> str:
    table = []
    for r in rows:
        limit = "-"
        if r.get("flops") and r.get("seconds"):
            limit = f"{r['flops'] / 1e9 / r['seconds'] / gflops:.0%} of GEMM rate"
        table.append(
            {
                "measured": r["what"],
                "LatentBench": r["ours"],
                "alternative": r["alternative"],
                "speed-up": f"{r['ratio']:.1f}x",
                "arithmetic use": limit,
            }
        )
    return "\n".join(
        [
            "# Speed: LatentBench against what a user would run instead",
            "",
            f"- **Hardware:** {env.device_name(torch.device('cpu'))}, "
            f"{torch.get_num_threads()} torch threads, "
            f"measured fp32 GEMM rate {gflops:.0f} GFLOP/s; torch {torch.__version__}.",
            "- **Reproduce:** `make bench-speed` (`python -m bench.speed`); each ratio is a median of "
            f"{REPS} alternating repetitions in one process (probes: one each, they take tens of seconds).",
            *notes,
            "",
            pd.DataFrame(table).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.speed")
    p.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    p.add_argument("--out", default="results/speed.md")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    gflops = gemm_gflops()
    notes, rows = [], []
    cifar = load("cifar10-jpeg", args.data_dir)
    mnist = load("mnist", args.data_dir)
    if cifar is None:
        notes.append("- CIFAR-10 (JPEG q75 copy) not found: training rows use digits.")
    train_ds = cifar or data.load(config.DataConfig())
    cfg_name = "configs/cifar10.toml" if cifar else "configs/default.toml"
    rows += training(train_ds, cfg_name)
    probe_ds = cifar or train_ds
    z, y = _latents(probe_ds, 1024), {s: getattr(probe_ds, f"y_{s}") for s in ("train", "val", "test")}
    label = f"{probe_ds.title} random-conv latents"
    rows.append(probe(z, y, 10, label))
    rows.append(knn(z, y, 10, label))
    rows.append(evaluator(z, y, 10, label))
    zp = _pixels(probe_ds)
    rows.append(probe(zp, y, 10, f"{probe_ds.title} pixels"))
    zm, ym = _mixture(len(z["train"]), 1024, 100)
    rows.append(probe(zm, ym, 100, "synthetic 100-class Gaussian mixture"))
    if mnist is not None:
        zp, yp = _pixels(mnist), {s: getattr(mnist, f"y_{s}") for s in ("train", "val", "test")}
        rows.append(evaluator(zp, yp, 10, "MNIST pixels (the raw-pixel run's evaluation)"))
    text = render(rows, gflops, notes)
    out = Path(args.out)
    kept = out.read_text() if out.exists() else ""
    for heading, missing in KEPT_SECTIONS.items():  # measured by other commands: carried over
        found = _section(kept, heading)
        text += "\n" + (found or f"{heading}\n\n{missing}\n")
    store.write_text(out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
