"""PCA of the training pixels to latent_dim components: the best linear code of that size for
reconstruction (Eckart-Young), fitted in closed form, no gradient training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least, flag
from bench.method import InputShape, Method, Unsupported
from bench.registry import register


@register("pca")
class PCA(Method):
    trainable = False
    reconstructs = True

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)
        whiten: bool = flag(False)

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        if cfg.latent_dim > shape.numel:
            raise Unsupported(f"pca: latent_dim {cfg.latent_dim} exceeds the {shape.numel} input values")
        self.register_buffer("center", torch.zeros(shape.numel))
        self.register_buffer("components", torch.zeros(cfg.latent_dim, shape.numel))  # (D, P)
        self.register_buffer("scale", torch.ones(cfg.latent_dim))

    @staticmethod
    def search_space(trial) -> dict:
        return {"whiten": trial.suggest_categorical("whiten", [False, True])}

    def prepare(self, x_train: torch.Tensor) -> None:
        from sklearn.decomposition import PCA as SkPCA

        flat = x_train.flatten(1).float().div_(255).numpy()  # (N, P)
        pca = SkPCA(self.cfg.latent_dim, whiten=self.cfg.whiten, random_state=0).fit(flat)
        self.center.copy_(torch.from_numpy(pca.mean_))
        self.components.copy_(torch.from_numpy(pca.components_))
        if self.cfg.whiten:
            self.scale.copy_(torch.from_numpy(pca.explained_variance_).sqrt().clamp_min(1e-8))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.center) @ self.components.T / self.scale  # (B, D)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        flat = (self.encode(x) * self.scale) @ self.components + self.center
        return flat.clamp(0, 1).view_as(x)
