"""Out-of-distribution detection from frozen latents: can a score computed on the latent tell the
test images from images of something else?

Two scores, higher = more in-distribution, each compared on the run's test images (positives)
against every OOD source (negatives):
- kNN: minus the distance from the L2-normalised latent to its k-th nearest L2-normalised
  training latent (Sun et al. 2022, "Out-of-Distribution Detection with Deep Nearest
  Neighbors"; label-free).
- Mahalanobis: minus the smallest Mahalanobis distance to a class mean of the training latents
  under their shared (tied) covariance (Lee et al. 2018, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks"; class-conditional, without their input
  preprocessing and layer ensemble).
Reported: AUROC, and FPR at 95% TPR (the share of OOD images scored above the threshold that keeps
95% of the test images), per source and averaged over sources.

The sources are made from what every run has, so the embedded default measures OOD offline:
- `noise`: uniform noise images, every pixel U[0, 1];
- `gaussian`: Gaussian noise images, N(0.5, 1) clipped to [0, 1] (both from Hendrycks & Gimpel
  2017, "A Baseline for Detecting Misclassified and Out-of-Distribution Examples");
- `inverted`: the validation images with their intensities inverted (255 - x), a shift of
  appearance that keeps the shape (validation, so no test image is read to make them).
Two more come from data, loaded before the run starts (bench/data/oodsets.py) and read from
`Context.data.ood`: a dataset's name (its test images adapted to the run's geometry by transfer's
rule: far-OOD, e.g. `cifar10-jpeg` for MNIST) and `held-out` (the test images of the classes a run
with `data.classes` leaves out: near-OOD). At most `eval.ood_images` of each are used, a fixed
random sample. The sources are seeded (noise), deterministic (the rest) and part of the run key
through `eval.ood_sources`; a dataset's content is recorded with the result (`about`).

Every image's two scores are kept in `ood_scores.npz` (`source` -1: a test image, else the index of
its source in the order measured), so the pages' intervals on AUROC count the test and OOD images
as well as the seeds (bench/report/items.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.checks import at_least, names
from bench.evaluators import Card, Column, Context, Evaluator, Plan, listed, register

SOURCES = ("noise", "gaussian", "inverted")  # made from the run's own images, offline
HELD_OUT = "held-out"  # the test images of the classes a class-split run leaves out


def _mean(score: str, measure: str):
    def get(m):
        entry = m.get("ood")
        return entry.get(f"{score}_{measure}") if isinstance(entry, dict) else None

    return get


@register("ood")
class OOD(Evaluator):
    order = 70
    version = 2  # 2: also keeps every image's scores (ood_scores.npz)
    needs_model = True
    columns = (
        Column("ood_knn_auroc", _mean("knn", "auroc"), scale=100, spread=False),
        Column("ood_maha_auroc", _mean("maha", "auroc"), scale=100, spread=False),
        Column("ood_knn_fpr95", _mean("knn", "fpr95"), scale=100, spread=False),
        Column("ood_maha_fpr95", _mean("maha", "fpr95"), scale=100, spread=False),
    )

    @dataclass
    class Config:
        ood_sources: list[str] = names(list(SOURCES))  # SOURCES, held-out or a dataset: see the docstring
        ood_images: int = at_least(
            1, 2000, hi=1_000_000
        )  # images per source (inverted: at most validation's)
        ood_k: int = at_least(
            1, 50, hi=100_000
        )  # the kNN score's neighbour (Sun et al. 2022: 50 on CIFAR-10)

    def card(self, cfg) -> list[Card]:
        return [
            Card(
                f"OOD AUROC, FPR@95% (kNN, Mahalanobis) against {listed(cfg.ood_sources)}",
                "nothing",
                "-",
                "training latents (neighbours, class means, covariance)",
                "test vs OOD images",
                len(cfg.ood_sources),
            )
        ]

    def refuse(self, cfg, plan: Plan) -> str | None:
        if not cfg.ood_sources:
            return f"eval.ood_sources is empty: choose from {', '.join(SOURCES)}, {HELD_OUT} or a dataset"
        if cfg.ood_k > plan.n["train"]:
            return f"eval.ood_k={cfg.ood_k}: more neighbours than the {plan.n['train']} training images"
        return None

    def __call__(self, ctx: Context) -> dict:
        train = ctx.z_raw["train"]
        mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
        scorers = fit(ctx.z["train"], ctx.y["train"], ctx.num_classes, ctx.cfg.ood_k)
        out = {"sources": {}}
        inside, kept = None, []
        for i, source in enumerate(dict.fromkeys(ctx.cfg.ood_sources)):
            images, about = from_data(ctx, source) if source not in SOURCES else (None, None)
            if images is None:
                images = make(source, ctx.data.x_val, ctx.cfg.ood_images)
            z_ood = (encode(ctx.model, images, ctx.device) - mean) / std
            held = ctx.test(f"ood {source}")  # each source's numbers read the test images' scores
            if inside is None:  # scored once
                inside = {name: score(held.z) for name, score in scorers.items()}
                kept.insert(0, (-1, torch.stack(list(inside.values()), 1)))
            outside = {name: score(z_ood) for name, score in scorers.items()}
            kept.append((i, torch.stack(list(outside.values()), 1)))
            found = {name: detect(inside[name], outside[name]) for name in scorers}
            out["sources"][source] = {"images": len(images), **({"about": about} if about else {}), **found}
        for name in scorers:
            for measure in ("auroc", "fpr95"):
                values = [s[name][measure] for s in out["sources"].values()]
                out[f"{name}_{measure}"] = sum(values) / len(values)
        ctx.artifacts["ood_scores"] = {
            "score": torch.cat([s for _, s in kept]).numpy().astype(np.float32),
            "source": np.concatenate([np.full(len(s), i, dtype=np.int16) for i, s in kept]),
        }
        return {"ood": out}


def from_data(ctx: Context, source: str) -> tuple[torch.Tensor, str]:
    """A source loaded from data with the run's dataset: a fixed random sample of at most
    `eval.ood_images` of its images, and what they are."""
    loaded = getattr(ctx.data, "ood", None) or {}
    if source not in loaded:  # oodsets.attach loads every source a run's config names
        raise RuntimeError(f"OOD source {source!r} was not loaded with the run's data (data/oodsets.py)")
    images, about = loaded[source]
    n = ctx.cfg.ood_images
    if n < len(images):
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(10_007))[:n]
        images = images[torch.sort(pick).values]
    return images, about


def make(source: str, x_val: torch.Tensor, n: int) -> torch.Tensor:
    """uint8 images of `source` shaped like the run's: `n` noise images (the same for every run),
    or the validation images inverted (at most `n`; the test split is never read for them)."""
    shape = (n, *x_val.shape[1:])
    g = torch.Generator().manual_seed(10_007 + SOURCES.index(source))
    if source == "noise":
        return (torch.rand(shape, generator=g) * 256).clamp(max=255).to(torch.uint8)
    if source == "gaussian":
        return ((torch.randn(shape, generator=g) + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    if source == "inverted":
        return 255 - x_val[:n]
    raise ValueError(f"unknown OOD source {source!r}")


@torch.no_grad()
def encode(model, x: torch.Tensor, device, batch: int = 1024) -> torch.Tensor:
    """Raw latents of uint8 images, as the run's latents were extracted (bench/run/evaluate.py)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        out.append(model.encode(xb).float().cpu())
    return torch.cat(out)


def fit(z: torch.Tensor, y: torch.Tensor, k: int, neighbour: int) -> dict:
    """The two scores, fitted on the (standardised) training latents `z` with labels `y`."""
    bank = torch.nn.functional.normalize(z, dim=1)
    means = torch.stack([z[y == c].mean(0) if (y == c).any() else torch.zeros(z.shape[1]) for c in range(k)])
    centred = z - means[y]
    cov = centred.T.double() @ centred.double() / len(z)
    precision = torch.linalg.pinv(cov, hermitian=True)  # a collapsed latent's covariance is singular

    def knn(q: torch.Tensor) -> torch.Tensor:
        q = torch.nn.functional.normalize(q, dim=1)
        out = []
        for i in range(0, len(q), 2048):
            d = torch.cdist(q[i : i + 2048], bank)
            out.append(-d.kthvalue(min(neighbour, len(bank)), dim=1).values)
        return torch.cat(out)

    def maha(q: torch.Tensor) -> torch.Tensor:
        diff = q.double()[:, None, :] - means.double()[None]  # N x K x D
        return -torch.einsum("nkd,de,nke->nk", diff, precision, diff).min(1).values.float()

    return {"knn": knn, "maha": maha}


def detect(inside: torch.Tensor, outside: torch.Tensor) -> dict:
    """AUROC of telling `inside` scores (positives) from `outside` ones, and the FPR at 95% TPR."""
    scores = torch.cat([inside, outside]).double()
    ranks = scores.argsort().argsort().double() + 1  # ties: see below
    # Mann-Whitney with tied scores given their mean rank
    uniq, inverse = torch.unique(scores, return_inverse=True)
    mean_rank = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    mean_rank /= torch.bincount(inverse, minlength=len(uniq)).double()
    r = mean_rank[inverse][: len(inside)].sum()
    n1, n0 = len(inside), len(outside)
    auroc = float((r - n1 * (n1 + 1) / 2) / (n1 * n0))
    threshold = torch.quantile(inside.double(), 0.05)
    return {"auroc": auroc, "fpr95": float((outside.double() >= threshold).float().mean())}
