"""RankMe (Garrido et al. 2023): the effective rank of the raw training latents. Label-free: a
measure of how many directions a learner uses, from 1 (collapsed) to the latent size."""

from __future__ import annotations

import torch

from bench.evaluators import Card, Column, Context, Evaluator, Plan, register


@register("rankme")
class RankMe(Evaluator):
    order = 50
    stale_below = 1  # runs stored before it existed are marked stale: `verify --stale` adds it
    columns = (Column("rankme", lambda m: m.get("rankme"), "RankMe", digits=1, spread=False),)
    note = (
        "RankMe (Garrido et al. 2023): effective rank of the raw training latents, exp of the entropy "
        "of their normalised singular values; label-free, at most the latent size."
    )

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        side = min(plan.n["train"], plan.dim)  # the smaller Gram matrix, float64, and eigh's work
        return 8 * (
            plan.n["train"] * plan.dim + 3 * side * side
        ), f"the {side}x{side} Gram matrix of {self.name}"

    def card(self, cfg) -> list[Card]:
        return [Card("RankMe", "nothing", "-", "-", "training latents, no labels", 0)]

    def __call__(self, ctx: Context) -> dict:
        return {"rankme": rankme(ctx.z_raw["train"])}


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalised singular values of the
    raw latent matrix (N, D); from 1 (collapsed to a line) to min(N, D) (every direction used).
    The singular values come from the eigenvalues of the D x D Gram matrix in float64."""
    z = z.double()
    if z.shape[0] < z.shape[1]:
        z = z.T
    s = torch.linalg.eigvalsh(z.T @ z).clamp_min(0).sqrt()
    p = s / s.sum().clamp_min(1e-300) + eps
    return float(torch.exp(-(p * p.log()).sum()))
