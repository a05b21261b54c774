"""Label efficiency: the linear probe and kNN refitted on class-balanced fractions of the training
labels. How much of a latent's class information a few labels can read out (the semi-supervised
protocol of SimCLR and BYOL)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.checks import at_least, within
from bench.evaluators import Card, Context, Evaluator, Plan, listed, register
from bench.evaluators.knn import knn_probe
from bench.evaluators.linear import linear_probe, shared


@register("label_efficiency")
class LabelEfficiency(Evaluator):
    order = 40
    stale_below = 1  # runs stored before it existed are marked stale: `verify --stale` adds it
    probes = (("linear", "linear"), ("knn", "kNN"))  # (metrics entry refitted, its table name)

    @dataclass
    class Config:
        # the linear probe and kNN refitted on these fractions of the training labels
        # (class-balanced), `label_draws` seeded subsets each; 100% is the main result
        label_fractions: list[float] = within(0, 1, [0.01, 0.1], open_lo=True, open_hi=True, each=True)
        label_draws: int = at_least(1, 5, hi=1000)  # probes per fraction: each one is trained

    def refuse(self, cfg, plan: Plan) -> str | None:
        for fraction in cfg.label_fractions:
            labelled = sum(max(1, round(fraction * c)) for c in plan.per_class if c)
            if min(cfg.knn_ks) > labelled:
                return (
                    f"eval.knn_ks={cfg.knn_ks}: every k is more than the {labelled} labelled images at "
                    f"label fraction {fraction:g}: add a smaller k or a larger fraction"
                )
        return None

    def card(self, cfg) -> list[Card]:
        subsets = f"on {listed(cfg.label_fractions)} of the training labels x {cfg.label_draws} draws"
        return [
            Card(
                f"linear, kNN {subsets}",
                "weight decay; k",
                f"{listed(cfg.probe_weight_decays)}; {listed(cfg.knn_ks)}",
                "validation (all its labels)",
                "test",
                len(cfg.label_fractions) * cfg.label_draws,
            )
        ]

    def __call__(self, ctx: Context) -> dict:
        return {"label_efficiency": label_efficiency(ctx, shared(ctx))}

    def cells(self, metrics: dict) -> dict:
        """`linear@0.01`: the mean over a run's labelled subsets; `linear@0.01/draws`: every draw,
        kept so that a table's spread pools seeds and draws; `labels@0.01`: the subset's size."""
        out = {}
        for fraction, e in (metrics.get("label_efficiency") or {}).items():
            for probe, _ in self.probes:
                out[f"{probe}@{fraction}"] = sum(e[probe]) / len(e[probe])
                out[f"{probe}@{fraction}/draws"] = list(e[probe])
            out[f"labels@{fraction}"] = e["labels"]
        return out

    def extra_csv(self, columns) -> list[str]:
        return sorted(c for c in columns if "@" in c and "/draws" not in c)


def label_efficiency(ctx: Context, precond=None) -> dict:
    """Test accuracy of the linear probe and kNN when only a fraction of the training images keep
    their labels: {"0.01": {"labels": n, "linear": [acc per draw], "knn": [...]}, ...}.

    Each draw is a class-balanced subset (the same fraction of every class, at least one image
    each) seeded by the draw number alone, so every learner is probed on the same labelled images.
    Hyperparameters are still chosen on the (fully labelled) validation slice, as in the
    semi-supervised protocol of SimCLR and BYOL; the latents stay standardised (and the probe
    preconditioned) with statistics of all training images, which need no labels.
    """
    z, y, cfg, num_classes, out = ctx.z, ctx.y, ctx.cfg, ctx.num_classes, {}
    for fraction in cfg.label_fractions:
        draws = {"linear": [], "knn": []}
        for draw in range(cfg.label_draws):
            idx = balanced_subset(y["train"], fraction, draw)
            test = ctx.test(f"{fraction:g} draw {draw}")  # one read: both probes score it
            zs = {"train": z["train"][idx], "val": z["val"], "test": test.z}
            ys = {"train": y["train"][idx], "val": y["val"], "test": test.y}
            lin = linear_probe(zs, ys, num_classes, cfg.probe_weight_decays, cfg.probe_max_iter, precond)
            draws["linear"].append(lin["test_acc"])
            draws["knn"].append(knn_probe(zs, ys, num_classes, cfg.knn_ks)["test_acc"])
        out[f"{fraction:g}"] = {"labels": len(idx), **draws}
    return out


def balanced_subset(y: torch.Tensor, fraction: float, draw: int) -> torch.Tensor:
    """Sorted indices of round(fraction * n_c) images of every class c (at least one), drawn with
    a generator seeded by `draw`."""
    g = torch.Generator().manual_seed(1_000_003 + draw)
    picks = []
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().view(-1)
        keep = max(1, round(fraction * len(members)))
        picks.append(members[torch.randperm(len(members), generator=g)[:keep]])
    return torch.cat(picks).sort().values


def fractions(summary) -> list[str]:
    """The label fractions measured in a summary table, smallest first ("0.01", "0.1")."""
    found = {c.split("@")[1].rsplit("_", 1)[0] for c in summary.columns if c.startswith("linear@")}
    return sorted(found, key=float)
