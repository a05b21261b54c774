"""Label-free measures of a latent's eigenspectrum beside RankMe: alpha-ReQ, NESum and stable
rank, from the raw training latents. None of them sees a label; the report checks each against
the linear probe (Spearman correlation over the stored runs, bench/report/tables.py `label_free`)."""

from __future__ import annotations

import math

import torch

from bench.evaluators import Card, Column, Context, Evaluator, Plan, register


def _entry(name: str):
    return lambda m: (m.get("spectrum") or {}).get(name)


@register("spectrum")
class Spectrum(Evaluator):
    order = 51
    columns = (
        Column("alpha_req", _entry("alpha_req")),
        Column("nesum", _entry("nesum")),
        Column("stable_rank", _entry("stable_rank")),
    )

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        side = min(plan.n["train"], plan.dim)  # the smaller Gram matrix, float64, and eigh's work
        return 8 * (
            plan.n["train"] * plan.dim + 3 * side * side
        ), f"the {side}x{side} Gram matrix of {self.name}"

    def card(self, cfg) -> list[Card]:
        return [Card("alpha-ReQ, NESum, stable rank", "nothing", "-", "-", "training latents, no labels", 0)]

    def __call__(self, ctx: Context) -> dict:
        z = ctx.z_raw["train"].double()
        cov = covariance_eigenvalues(z)
        gram = torch.linalg.eigvalsh(z.T @ z if z.shape[0] >= z.shape[1] else z @ z.T).clamp_min(0)
        values = {"alpha_req": alpha_req(cov), "nesum": nesum(cov), "stable_rank": stable_rank(gram)}
        return {"spectrum": {k: None if math.isnan(v) else v for k, v in values.items()}}


def covariance_eigenvalues(z: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the (N, D) latents' covariance, descending, in float64."""
    z = z.double()
    z = z - z.mean(0)
    if z.shape[0] < z.shape[1]:  # the nonzero eigenvalues are those of the smaller Gram matrix
        return torch.linalg.eigvalsh(z @ z.T / max(1, len(z) - 1)).clamp_min(0).flip(0)
    return torch.linalg.eigvalsh(z.T @ z / max(1, len(z) - 1)).clamp_min(0).flip(0)


def _positive(lam: torch.Tensor, rtol: float = 1e-10) -> torch.Tensor:
    """The eigenvalues that are not round-off: above `rtol` times the largest."""
    return lam[lam > rtol * lam.max()] if lam.numel() and lam.max() > 0 else lam[:0]


def alpha_req(lam: torch.Tensor) -> float:
    """alpha-ReQ (Agrawal et al., "alpha-ReQ: Assessing Representation Quality in Self-Supervised
    Learning by measuring eigenspectrum decay", NeurIPS 2022): the decay exponent alpha of the
    covariance eigenspectrum, lambda_i ~ i^-alpha, fitted by least squares on log lambda_i
    against log i over the nonzero eigenvalues. 0: a white spectrum; large: a few directions
    dominate. NaN for fewer than two nonzero eigenvalues (no slope to fit)."""
    lam = _positive(lam.double())
    if len(lam) < 2:
        return float("nan")
    x = torch.arange(1, len(lam) + 1, dtype=torch.float64).log()
    y = lam.log()
    x, y = x - x.mean(), y - y.mean()
    return float(-(x * y).sum() / (x * x).sum())


def nesum(lam: torch.Tensor) -> float:
    """NESum (He and Ozay, "Exploring the Gap between Collapsed and Whitened Features in
    Self-Supervised Learning", ICML 2022; one of the measures compared by Tsitsulin et al.,
    "Unsupervised Embedding Quality Evaluation", 2023): the covariance eigenvalues summed, each
    over the largest. From 1 (one direction) to the latent size (white)."""
    lam = lam.double()
    return float(lam.sum() / lam.max()) if lam.numel() and lam.max() > 0 else float("nan")


def stable_rank(gram: torch.Tensor) -> float:
    """Stable rank (Rudelson and Vershynin, "Sampling from large matrices", J. ACM 2007; as used by
    Tsitsulin et al. 2023) of the raw latent matrix Z: ||Z||_F^2 / ||Z||_2^2, the squared singular
    values (here the eigenvalues `gram` of Z^T Z) summed over the largest. At most the rank of Z;
    1 for a rank-1 matrix, D for D orthonormal columns."""
    gram = gram.double()
    return float(gram.sum() / gram.max()) if gram.numel() and gram.max() > 0 else float("nan")
