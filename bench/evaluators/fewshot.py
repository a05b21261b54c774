"""k-shot episodes: the linear probe and kNN fitted on k labelled training images of every class,
over seeded episodes; mean and a 95% interval over episodes. Few-shot as the field evaluates it
(DINOv2's kNN `--n-per-class-list` x `--n-tries`, CLIP_benchmark's `--fewshot_k`), where label
efficiency (label_efficiency.py) takes a fraction of the labels, one or two images a class on
digits at 1%.

Episode e draws, from a generator seeded by e alone, one order of every class's training images;
its k-shot set is the first k of each, so every learner (and seed) sees the same labelled images,
and an episode's 1-shot set is inside its 5-shot set. The validation slice (all its labels) picks
the probe's weight decay and kNN's k per episode, as in label efficiency; each episode's test
score is read once. The probes of all episodes and weight decays of one k are fitted together
(`fit_logreg_many`): one batched L-BFGS instead of E x W small ones.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from bench.checks import at_least
from bench.evaluators import Card, Context, Evaluator, Plan, listed, register
from bench.evaluators.knn import knn_probe
from bench.evaluators.linear import fit_logreg_many, hits, shared


@register("fewshot")
class FewShot(Evaluator):
    order = 45
    probes = (("linear", "linear"), ("knn", "kNN"))  # (metrics entry, its table name)

    @dataclass
    class Config:
        # labelled images a class (a k above the smallest class is left out), seeded episodes per k
        fewshot_ks: list[int] = at_least(1, [1, 5, 10, 20], hi=100_000, each=True)
        fewshot_episodes: int = at_least(1, 10, hi=1000)  # episode e draws with seed e

    def card(self, cfg) -> list[Card]:
        return [
            Card(
                f"linear, kNN on {listed(sorted(cfg.fewshot_ks))}-shot episodes x {cfg.fewshot_episodes}",
                "weight decay; k",
                f"{listed(cfg.probe_weight_decays)}; {listed(cfg.knn_ks)}",
                "validation (all its labels)",
                "test",
                len(set(cfg.fewshot_ks)) * cfg.fewshot_episodes,
            )
        ]

    def refuse(self, cfg, plan: Plan) -> str | None:
        present = [c for c in plan.per_class if c]
        smallest, least = min(present, default=0), min(cfg.fewshot_ks)
        if least > smallest:  # a k above the smallest class alone is left out (`measured`)
            return (
                f"eval.fewshot_ks={cfg.fewshot_ks}: {least}-shot needs {least} training images of "
                f"every class, the smallest class has {smallest}: choose a k <= {smallest}"
            )
        if min(cfg.knn_ks) > min(cfg.fewshot_ks) * len(present):
            return (
                f"eval.knn_ks={cfg.knn_ks}: every k is more than the {min(cfg.fewshot_ks) * len(present)} "
                f"labelled images of a {min(cfg.fewshot_ks)}-shot episode: add a smaller k"
            )
        return None

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        p = cfg.fewshot_episodes * len(cfg.probe_weight_decays)
        n = max(cfg.fewshot_ks) * plan.num_classes
        fit = 4 * p * (2 * n * plan.dim + 50 * (plan.dim + 1) * plan.num_classes)  # copies, L-BFGS history
        return fit + 4 * p * plan.n["val"] * plan.num_classes, f"{p} few-shot probes fitted at once"

    def __call__(self, ctx: Context) -> dict:
        return {"fewshot": episodes(ctx, shared(ctx))}

    def cells(self, metrics: dict) -> dict:
        """`linear-5shot`: the mean over a run's episodes; `linear-5shot/draws`: every episode, kept
        so that a table pools seeds and episodes; `shots-5`: the labelled images of an episode."""
        out = {}
        for k, e in (metrics.get("fewshot") or {}).items():
            for probe, _ in self.probes:
                out[f"{probe}-{k}shot"] = sum(e[probe]) / len(e[probe])
                out[f"{probe}-{k}shot/draws"] = list(e[probe])
            out[f"shots-{k}"] = e["labels"]
        return out

    def extra_csv(self, columns) -> list[str]:
        mine = (c for c in columns if re.fullmatch(r"[a-z]+-\d+shot|shots-\d+", c))
        return sorted(mine, key=lambda c: (_k(c), c))


def episodes(ctx: Context, precond) -> dict:
    """{"5": {"labels": 5 x classes, "linear": [test accuracy per episode], "knn": [...]}, ...}."""
    z, y, cfg = ctx.z, ctx.y, ctx.cfg
    classes, counts = torch.unique(y["train"], return_counts=True)
    ks = measured(cfg.fewshot_ks, int(counts.min()))
    orders = [class_order(y["train"], classes, max(ks), e) for e in range(cfg.fewshot_episodes)]
    decays = sorted(cfg.probe_weight_decays, reverse=True)  # ties on validation: the strongest
    n_wd, out = len(decays), {}
    for k in ks:
        idx = torch.stack([order[:, :k].reshape(-1) for order in orders])  # (E, k * classes)
        x, labels = z["train"][idx], y["train"][idx]
        w = fit_logreg_many(
            x.repeat_interleave(n_wd, 0),
            labels.repeat_interleave(n_wd, 0),
            ctx.num_classes,
            torch.tensor(decays, dtype=x.dtype).repeat(len(orders)),
            cfg.probe_max_iter,
            precond,
        ).view(len(orders), n_wd, -1, ctx.num_classes)
        val = (torch.matmul(z["val"], w[:, :, :-1]) + w[:, :, -1:]).argmax(3)  # (E, W, N_val)
        chosen = (val == y["val"]).float().mean(2).argmax(1)  # per episode: the first best
        linear, knn = [], []
        for e in range(len(orders)):
            test = ctx.test(f"{k}-shot episode {e}")  # one read: both probes score it
            best = w[e, chosen[e]]
            linear.append(hits((test.z @ best[:-1] + best[-1]).argmax(1), test.y))
            zs = {"train": x[e], "val": z["val"], "test": test.z}
            ys = {"train": labels[e], "val": y["val"], "test": test.y}
            knn.append(knn_probe(zs, ys, ctx.num_classes, cfg.knn_ks)["test_acc"])
        out[str(k)] = {"labels": idx.shape[1], "linear": linear, "knn": knn}
    return out


def measured(ks: list[int], smallest: int) -> list[int]:
    """The k measured: each asked for, up to the smallest class's training images (a k above it
    is left out; `refuse` stops a run where none is left)."""
    return sorted({k for k in ks if k <= smallest})


def class_order(y: torch.Tensor, classes: torch.Tensor, k: int, episode: int) -> torch.Tensor:
    """(classes, k) training indices: the first k of a seeded order of each class's images."""
    g = torch.Generator().manual_seed(2_000_003 + episode)
    rows = []
    for c in classes.tolist():
        members = (y == c).nonzero().view(-1)
        rows.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.stack(rows)


def shots(columns) -> list[int]:
    """The k measured in a table's columns (`linear-5shot...`), smallest first."""
    return sorted({_k(c) for c in columns if re.fullmatch(r"linear-\d+shot", c)})


def _k(column: str) -> int:
    return int(re.search(r"\d+", column).group())


def interval(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t-interval, n) of episode accuracies; half-width NaN for one."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, n
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n
