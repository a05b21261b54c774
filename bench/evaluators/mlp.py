"""MLP head: one hidden layer on frozen, standardised latents; its epoch count chosen by early
stopping on the validation slice. What a non-linear read-out adds over the linear probe."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.checks import above, at_least
from bench.evaluators import Column, Context, Evaluator, Plan, accuracy, register
from bench.evaluators.linear import hits


@register("mlp")
class MLP(Evaluator):
    order = 20
    columns = (Column("mlp", accuracy("mlp"), "MLP %", 100, compare="MLP % default / tuned", unit="points",
                      progress=True),)  # fmt: skip

    @dataclass
    class Config:
        mlp_hidden: int = at_least(1, 512)
        mlp_max_epochs: int = at_least(1, 40)
        mlp_patience: int = at_least(1, 5)  # epochs without validation improvement before stopping
        mlp_lr: float = above(0, 1e-3)

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        h = cfg.mlp_hidden
        weights = 4 * 5 * (plan.dim * h + h * plan.num_classes)  # weights, grads, AdamW, best copy
        activations = 4 * h * (max(plan.n["val"], plan.n["test"]) + 3 * 512)
        return weights + activations, f"the MLP head's {h} hidden units (eval.mlp_hidden)"

    def __call__(self, ctx: Context) -> dict:
        return {"mlp": mlp_probe(ctx.z, ctx.y, ctx.num_classes, ctx.cfg, ctx.seed)}


def mlp_probe(z, y, k, cfg, seed: int) -> dict:
    """One hidden layer; the epoch count is chosen by early stopping on validation accuracy."""
    torch.manual_seed(seed)
    d = z["train"].shape[1]
    head = torch.nn.Sequential(
        torch.nn.Linear(d, cfg.mlp_hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.mlp_hidden, k)
    )
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.mlp_lr, weight_decay=1e-4)
    n, batch = len(z["train"]), 512
    best = (-1.0, 0, None)
    for epoch in range(cfg.mlp_max_epochs):
        head.train()
        for idx in torch.randperm(n).split(batch):
            loss = F.cross_entropy(head(z["train"][idx]), y["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            val = hits(head(z["val"]).argmax(1), y["val"])
        if val > best[0]:
            best = (val, epoch + 1, {k_: v.clone() for k_, v in head.state_dict().items()})
        elif epoch + 1 - best[1] >= cfg.mlp_patience:
            break
    val, epochs, state = best
    head.load_state_dict(state)
    with torch.no_grad():
        test = hits(head(z["test"]).argmax(1), y["test"])
    return {"test_acc": test, "val_acc": val, "epochs": epochs}
