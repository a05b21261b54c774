"""kNN: cosine majority vote of the nearest training latents; k chosen on the validation slice.
Asks the latent space itself, with no fitted read-out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.checks import at_least
from bench.evaluators import Card, Column, Context, Evaluator, Plan, accuracy, listed, register
from bench.evaluators.linear import hits


@register("knn")
class KNN(Evaluator):
    order = 30
    columns = (
        Column(
            "knn",
            accuracy("knn"),
            "kNN %",
            100,
            ablation=True,
            compare="kNN % default / tuned",
            unit="points",
            progress=True,
        ),
    )

    @dataclass
    class Config:
        knn_ks: list[int] = at_least(1, [1, 3, 5, 10, 20, 50], each=True)

    def refuse(self, cfg, plan: Plan) -> str | None:
        if min(cfg.knn_ks) > plan.n["train"]:
            return (
                f"eval.knn_ks={cfg.knn_ks}: every k is more than the {plan.n['train']} training "
                "images: add a smaller k"
            )
        return None

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        bank, chunk = plan.n["train"] * plan.dim, 1024 * plan.n["train"]
        return 4 * (bank + 2 * chunk), f"the kNN bank of {plan.n['train']} training latents"

    def card(self, cfg) -> list[Card]:
        return [Card("kNN", "k", listed(cfg.knn_ks), "validation", "test", 1)]

    def __call__(self, ctx: Context) -> dict:
        test = ctx.test("knn")
        return {
            "knn": knn_probe(
                dict(ctx.z, test=test.z), dict(ctx.y, test=test.y), ctx.num_classes, ctx.cfg.knn_ks
            )
        }


def votes(query, bank, bank_y, k_max, num_classes, chunk=1024):
    """(Q, k_max) neighbour labels and cosine similarities, nearest first."""
    bank = F.normalize(bank, dim=1)
    labels, sims = [], []
    for q in F.normalize(query, dim=1).split(chunk):
        s, i = (q @ bank.T).topk(k_max, dim=1)
        labels.append(bank_y[i])
        sims.append(s)
    return torch.cat(labels), torch.cat(sims)


def predict(labels, sims, k, num_classes):
    one_hot = F.one_hot(labels[:, :k], num_classes).float()  # (Q, k, K)
    # majority vote; a tiny similarity term breaks ties in favour of the closer neighbours
    score = one_hot.sum(1) + 1e-4 * (one_hot * sims[:, :k, None]).sum(1)
    return score.argmax(1)


def knn_probe(z, y, num_classes, ks) -> dict:
    """Cosine kNN against the training latents; k chosen on validation."""
    ks = sorted(k for k in ks if k <= len(z["train"]))
    labels, sims = votes(z["val"], z["train"], y["train"], ks[-1], num_classes)
    vals = {k: hits(predict(labels, sims, k, num_classes), y["val"]) for k in ks}
    k = max(ks, key=lambda k_: (vals[k_], -k_))
    labels, sims = votes(z["test"], z["train"], y["train"], k, num_classes)
    return {
        "test_acc": hits(predict(labels, sims, k, num_classes), y["test"]),
        "val_acc": vals[k],
        "k": k,
    }
