"""Linear probe: multinomial logistic regression on frozen, standardised latents, by full-batch
L-BFGS on a whitened problem; its weight decay chosen on the validation slice. The headline
number of every table, the objective of every study, and the confusion matrix of the test split.
Its test predictions are kept beside the run (`predictions.npz`: one small integer per test image,
and the labels), so bench/report/significance.py can pair two learners image by image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.checks import at_least
from bench.evaluators import Card, Column, Context, Evaluator, Plan, accuracy, listed, register

# Recorded with every linear probe (and version 2 below): runs stored before it (plain L-BFGS
# stopped at 150 steps, short of the optimum) are marked in the tables and chosen by
# `bench verify --stale`.
SOLVER = "preconditioned-lbfgs"


@register("linear")
class Linear(Evaluator):
    order = 10
    version = 3  # 1: plain L-BFGS, stopped short of the optimum (results/speed.md); 2: no predictions kept
    stale_below = 2
    stale_note = (
        "a linear probe stopped at 150 plain L-BFGS steps, short of its optimum (results/README.md measures "
        "by how much), and no label efficiency or RankMe"
    )
    steers = True
    columns = (
        Column("linear", accuracy("linear"), "linear %", 100, ablation=True, unit="points", progress=True),
        Column("linear_val", accuracy("linear", "val_acc"), csv=False),
    )

    @dataclass
    class Config:
        # L2 strengths tried (coefficient on 0.5*||W||^2, loss is a mean)
        probe_weight_decays: list[float] = at_least(0, [1e-6, 1e-4, 1e-3, 1e-2], each=True)
        probe_max_iter: int = at_least(1, 150)  # L-BFGS iterations per fit

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        d, k = plan.dim, plan.num_classes
        gram = 28 * d * d  # X^T X in fp32, its float64 copy, eigh's vectors and workspace
        lbfgs = 4 * (2 * 20 + 4) * (d + 1) * k + 3 * 4 * plan.n["train"] * k  # history, logits
        return gram + lbfgs + 8 * k * k, f"the probe's {d}x{d} preconditioner"

    def card(self, cfg) -> list[Card]:
        return [Card("linear", "weight decay", listed(cfg.probe_weight_decays), "validation", "test", 1)]

    def __call__(self, ctx: Context) -> dict:
        test = ctx.test("linear")
        result = linear_probe(
            dict(ctx.z, test=test.z),
            dict(ctx.y, test=test.y),
            ctx.num_classes,
            ctx.cfg.probe_weight_decays,
            ctx.cfg.probe_max_iter,
            shared(ctx),
        )
        pred = result.pop("test_pred")
        ctx.shared["linear_w"] = result.pop("w")
        if ctx.steer_only:  # a study's trial: its objective only
            return {"linear": result, "confusion": None}
        ctx.artifacts["predictions"] = predictions(pred, test.y, ctx.num_classes)
        return {"linear": result, "confusion": confusion(pred, test.y, ctx.num_classes)}


def shared(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's preconditioner, computed once and reused by every fit that needs it."""
    if "precond" not in ctx.shared:
        ctx.shared["precond"] = preconditioner(ctx.z["train"])
    return ctx.shared["precond"]


def preconditioner(x: torch.Tensor, delta: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, r) with X^T X / N = U diag(lam) U^T for the (standardised) training latents X and
    r = (lam + delta)^(-1/2): the change of variables W = U diag(r) V whitens the probe's problem.

    Label-free (all training latents, like the standardisation), computed once per run and shared
    by every fit of the weight-decay sweep and of the label-efficiency subsets. `delta` (the
    latents' mean eigenvalue is 1) keeps the directions the data never spans finite.
    """
    lam, u = torch.linalg.eigh((x.T @ x / len(x)).double())  # only a preconditioner: fp32 GEMM
    return u.to(x.dtype), (lam.clamp_min(0) + delta).rsqrt().to(x.dtype)


def lbfgs(v: torch.Tensor, max_iter: int) -> torch.optim.LBFGS:
    """The probes' optimiser: full-batch L-BFGS with a strong-Wolfe line search on `v`."""
    return torch.optim.LBFGS(
        [v],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )


def fit_logreg(x, y, k, wd, max_iter, init=None, precond=None, stats=None) -> torch.Tensor:
    """Multinomial logistic regression (mean cross-entropy + wd/2 ||W||^2, bias unpenalised) by
    full-batch L-BFGS; returns W (D+1, K), bias last.

    L-BFGS runs on V with W = U diag(r) V (`preconditioner`): the same objective and optimum, but
    a Hessian near the identity, so it converges in ~30 evaluations where the plain problem took
    hundreds and stopped short at 150 (results/speed.md). The gradient is written out by hand:
    autograd's X^T G runs on a transposed view and cost 5x the forward matmul, while G^T X is one
    contiguous GEMM.
    """
    n = len(x)
    u, r = precond if precond is not None else preconditioner(x)
    penalty = wd * r.pow(2)[:, None]  # ||W||^2 = sum_i r_i^2 ||V_i||^2, U orthogonal
    onehot = F.one_hot(y, k).to(x.dtype)  # (N, K)
    v = x.new_zeros(x.shape[1] + 1, k)
    if init is not None:
        v[:-1] = (u.T @ init[:-1]) / r[:, None]
        v[-1] = init[-1]

    def weights(v):
        return torch.cat([u @ (r[:, None] * v[:-1]), v[-1:]])

    opt = lbfgs(v, max_iter)

    def closure():
        w = weights(v)
        logp = torch.addmm(w[-1], x, w[:-1]).log_softmax(1)  # (N, K)
        loss = -(logp * onehot).sum() / n + 0.5 * (penalty * v[:-1].pow(2)).sum()
        g = (logp.exp() - onehot) / n  # d loss / d logits
        g_w = (g.T @ x).T  # (D, K)
        v.grad = torch.cat([r[:, None] * (u.T @ g_w) + penalty * v[:-1], g.sum(0, keepdim=True)])
        return loss

    opt.step(closure)
    if stats is not None:  # for results/speed.md: evaluations of the objective and its gradient
        stats["evals"] = opt.state[v]["func_evals"]
    return weights(v.detach())


def fit_logreg_many(x, y, k, wd, max_iter, precond) -> torch.Tensor:
    """P independent problems of `fit_logreg` at once: latents x (P, N, D), labels y (P, N),
    weight decays wd (P,), one preconditioner; returns W (P, D+1, K). Their objectives are summed
    and nothing couples them, so the joint optimum is each problem's own; one L-BFGS over the sum
    runs P small fits as batched matmuls (few-shot episodes: tens of problems of tens of images)."""
    n = x.shape[1]
    u, r = precond
    penalty = wd[:, None, None] * r.pow(2)[None, :, None]  # (P, D, 1)
    onehot = F.one_hot(y, k).to(x.dtype)  # (P, N, K)
    v = x.new_zeros(x.shape[0], x.shape[2] + 1, k)

    def weights(v):
        return torch.cat([u @ (r[:, None] * v[:, :-1]), v[:, -1:]], 1)

    opt = lbfgs(v, max_iter)

    def closure():
        w = weights(v)
        logp = torch.baddbmm(w[:, -1:], x, w[:, :-1]).log_softmax(2)  # (P, N, K)
        loss = -(logp * onehot).sum() / n + 0.5 * (penalty * v[:, :-1].pow(2)).sum()
        g = (logp.exp() - onehot) / n
        g_w = torch.bmm(x.transpose(1, 2), g)  # (P, D, K)
        v.grad = torch.cat([r[:, None] * (u.T @ g_w) + penalty * v[:, :-1], g.sum(1, keepdim=True)], 1)
        return loss

    opt.step(closure)
    return weights(v.detach())


def logits(x, w):
    return x @ w[:-1] + w[-1]


def linear_probe(z, y, k, weight_decays, max_iter, precond=None) -> dict:
    """Weight decay chosen on validation, strongest first so each fit warm-starts the next."""
    best, w = None, None
    precond = precond if precond is not None else preconditioner(z["train"])
    for wd in sorted(weight_decays, reverse=True):
        w = fit_logreg(z["train"], y["train"], k, wd, max_iter, init=w, precond=precond)
        val = hits(logits(z["val"], w).argmax(1), y["val"])
        if best is None or val > best[0]:
            best = (val, wd, w)
    val, wd, w = best
    pred = logits(z["test"], w).argmax(1)
    return {
        "test_acc": hits(pred, y["test"]),
        "val_acc": val,
        "weight_decay": wd,
        "solver": SOLVER,
        "test_pred": pred,
        "w": w,  # the chosen probe (not stored: Linear hands it to calibration and the stress tests)
    }


def predictions(pred: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    """The probe's test predictions and the test labels, in the smallest integer type that holds
    `k` classes (10,000 test images: 10 KB before compression)."""
    dtype = torch.uint8 if k <= 256 else torch.int16 if k <= 32767 else torch.int32
    return {"linear": pred.to(dtype).numpy(), "y": y.to(dtype).numpy()}


def confusion(pred: torch.Tensor, y: torch.Tensor, k: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    return torch.bincount(y * k + pred, minlength=k * k).view(k, k).tolist()


def hits(pred, y) -> float:
    """Accuracy of predictions `pred` against labels `y`."""
    return (pred == y).float().mean().item()
