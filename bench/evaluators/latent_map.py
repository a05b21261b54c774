"""Latent map: a 2-D t-SNE embedding of a fixed, class-balanced sample of test latents, kept beside
the run (`latent_map.npz`) so the report draws every learner's map side by side without touching
a model. Same sample, same seed and same orientation rule for every run, so the panels compare.

scikit-learn's t-SNE: no dependency beyond scikit-learn, a few seconds for 2,000 points on 2
cores; `make bench-maps` measures it against openTSNE and UMAP (time, trustworthiness, class
separation on the map) into results/speed.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from bench.checks import at_least
from bench.evaluators import Card, Column, Context, Evaluator, register

ALGORITHM = "t-SNE (scikit-learn, perplexity 30, PCA init, seed 0)"


@register("latent_map")
class LatentMap(Evaluator):
    order = 90
    columns = (Column("map_points", lambda m: (m.get("latent_map") or {}).get("points"), csv=False),)

    @dataclass
    class Config:
        map_points: int = at_least(0, 2000)  # test latents in the 2-D map (0: no map)

    def card(self, cfg) -> list[Card]:
        if not cfg.map_points:
            return []
        return [Card("latent map", "nothing (t-SNE, fixed settings)", "-", "-", "test (drawn)", 1)]

    def __call__(self, ctx: Context) -> dict:
        if ctx.steer_only or ctx.cfg.map_points == 0:
            return {"latent_map": None}
        test = ctx.test("latent_map")
        y = test.y.numpy()
        index = sample(y, ctx.num_classes, ctx.cfg.map_points)
        xy = embed(test.z[torch.as_tensor(index)].numpy(), y[index])
        dtype = np.uint8 if ctx.num_classes <= 256 else np.int32
        ctx.artifacts["latent_map"] = {
            "index": index.astype(np.int32),
            "xy": xy.astype(np.float16),
            "y": y[index].astype(dtype),
        }
        return {"latent_map": {"points": len(index), "algorithm": ALGORITHM}}


def sample(y: np.ndarray, k: int, points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced sample of about `points` test images: the same
    `points // k` of each class (all of a smaller class) for every run of a dataset."""
    rng = np.random.default_rng(seed)
    per = max(1, points // max(1, k))
    picked = [rng.permutation(np.flatnonzero(y == c))[:per] for c in range(k)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def embed(z: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of latents `z` (n, D) to (n, 2), oriented by `orient`."""
    from sklearn.manifold import TSNE

    n = len(z)
    z = z.astype(np.float32).reshape(n, -1)
    if n < 3 or len(np.unique(z, axis=0)) < 3:  # a constant latent (or nearly) maps to a point:
        return np.zeros((n, 2), np.float32)  # Barnes-Hut t-SNE divides by zero distances, and crashed
    perplexity = min(30.0, (n - 1) / 3)
    init = "pca" if z.shape[1] >= 2 else "random"  # a 1-wide latent has no second principal axis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's FutureWarnings about its own defaults
        xy = TSNE(
            2, perplexity=perplexity, init=init, random_state=seed, n_jobs=torch.get_num_threads()
        ).fit_transform(z)
    return orient(xy, y)


def orient(xy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One axes convention for every map: centred, rotated onto its principal axes (the widest
    spread horizontal), scaled to unit RMS radius, and reflected so that class 0's centroid lies
    in the lower left quadrant. (A t-SNE map is only defined up to rotation and reflection.)"""
    xy = xy - xy.mean(0)
    _, _, vt = np.linalg.svd(xy, full_matrices=False)
    xy = xy @ vt.T
    xy /= max(float(np.sqrt((xy**2).sum(1).mean())), 1e-12)
    centroid = xy[y == y.min()].mean(0) if len(y) else np.zeros(2)
    return xy * np.where(centroid > 0, -1.0, 1.0)
