"""Evaluation speed for results/speed.md: the linear probe, kNN and the whole evaluator against
scikit-learn, at equal accuracy, on latents of the data at hand."""

from __future__ import annotations

import time
import warnings

import torch

from bench import config, data, registry
from bench.evaluators import Context, label_efficiency, linear, mlp
from bench.evaluators import knn as knn_eval
from bench.run import evaluate
from bench.tools.timing import alternate, timed


def random_latents(ds: data.Dataset, dim: int) -> dict:
    """Latents of the `random` baseline (a real conv encoder at init) at `dim`, standardised."""
    torch.manual_seed(0)
    model = registry.create("random", config.method_config("random", {"latent_dim": dim}), ds.shape)
    z = {
        s: evaluate.extract(model, getattr(ds, f"x_{s}"), torch.device("cpu"))
        for s in ("train", "val", "test")
    }
    return evaluate.standardize(z)


def pixel_latents(ds: data.Dataset) -> dict:
    z = {s: getattr(ds, f"x_{s}").flatten(1).float().div(255) for s in ("train", "val", "test")}
    return evaluate.standardize(z)


def mixture(n: int, dim: int, k: int) -> tuple[dict, dict]:
    """A synthetic k-class Gaussian mixture (for 100 classes when no CIFAR-100 copy is here)."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(k, dim, generator=g) * 0.06  # overlapping classes: not 100% for anyone
    out_z, out_y = {}, {}
    for split, m in (("train", n), ("val", n // 9), ("test", n // 4)):
        y = torch.randint(0, k, (m,), generator=g)
        out_z[split], out_y[split] = means[y] + torch.randn(m, dim, generator=g), y
    return evaluate.standardize(out_z), out_y


def probe(z: dict, y: dict, k: int, label: str, wd: float = 1e-4) -> dict:
    """The project's probe at one L2 strength (preconditioner included in its time) against
    scikit-learn's lbfgs at the same objective (C = 1 / (wd * N)) as a user would run it (default
    tolerance, max_iter raised to 1000); accuracies beside the times, as the ratio counts only at
    equal accuracy."""
    from sklearn.linear_model import LogisticRegression

    n = len(z["train"])
    result, stats = {}, {}

    def ours():
        precond = linear.preconditioner(z["train"])
        w = linear.fit_logreg(z["train"], y["train"], k, wd, 150, precond=precond, stats=stats)
        result["ours"] = linear.hits(linear.logits(z["test"], w).argmax(1), y["test"])

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a ConvergenceWarning is reported below, as n_iter
            clf = LogisticRegression(C=1 / (wd * n), max_iter=1000)
            clf.fit(z["train"].numpy(), y["train"].numpy())
        result["theirs"] = float((clf.predict(z["test"].numpy()) == y["test"].numpy()).mean())
        result["iters"] = int(clf.n_iter_.max())

    t_ours, t_theirs = alternate(ours, theirs, reps=1)
    d = z["train"].shape[1]
    grad_flops = 2 * 2 * n * (d + 1) * k  # one evaluation: the logits and the G^T X product
    gap = abs(result["ours"] - result["theirs"]) * 100
    return {
        "what": f"linear probe, {label}: {n:,} x {d}, {k} classes, wd {wd:g}",
        "ours": f"{t_ours:.1f} s ({result['ours']:.2%}, {stats['evals']} evaluations)",
        "alternative": f"{t_theirs:.1f} s ({result['theirs']:.2%}, {result['iters']} iterations), "
        "sklearn LogisticRegression(lbfgs)",
        "ratio": t_theirs / t_ours,
        "flops": grad_flops * stats["evals"],
        "seconds": t_ours,
        "kind": "probe",
        "equal": gap <= 0.3,
        "theirs_iters": result["iters"],
    }


def knn(z: dict, y: dict, k: int, label: str, neighbours: int = 20) -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    result = {}
    bank = torch.nn.functional.normalize(z["train"], dim=1)

    def ours():
        labels, sims = knn_eval.votes(z["test"], z["train"], y["train"], neighbours, k)
        pred = knn_eval.predict(labels, sims, neighbours, k)
        result["ours"] = float((pred == y["test"]).float().mean())

    def theirs():
        clf = KNeighborsClassifier(neighbours, metric="cosine", algorithm="brute", n_jobs=-1)
        clf.fit(z["train"].numpy(), y["train"].numpy())
        result["theirs"] = float((clf.predict(z["test"].numpy()) == y["test"].numpy()).mean())

    t_ours, t_theirs = alternate(ours, theirs)
    n, d = bank.shape
    return {
        "what": f"kNN (k={neighbours}, cosine), {label}: {len(z['test']):,} queries x {n:,} bank x {d}",
        "ours": f"{t_ours:.2f} s ({result['ours']:.2%})",
        "alternative": f"{t_theirs:.2f} s ({result['theirs']:.2%}), sklearn KNeighborsClassifier(brute)",
        "ratio": t_theirs / t_ours,
        "flops": 2 * len(z["test"]) * n * d,
        "seconds": t_ours,
        "kind": "knn",
    }


def evaluator(z: dict, y: dict, k: int, label: str) -> dict:
    """The whole evaluator (each registered evaluator's call, timed one by one) vs one sklearn fit."""
    from sklearn.linear_model import LogisticRegression

    cfg, parts = config.EvalConfig(), {}
    start = time.perf_counter()
    precond = linear.preconditioner(z["train"])
    parts["preconditioner"] = time.perf_counter() - start
    calls = {
        "linear sweep": lambda: linear.linear_probe(
            z, y, k, cfg.probe_weight_decays, cfg.probe_max_iter, precond
        ),
        "MLP": lambda: mlp.mlp_probe(z, y, k, cfg, 0),
        "kNN": lambda: knn_eval.knn_probe(z, y, k, cfg.knn_ks),
        "label efficiency": lambda: label_efficiency.label_efficiency(Context(z, z, y, k, cfg, 0), precond),
    }
    for name, call in calls.items():
        parts[name] = timed(call)
    t_ours = sum(parts.values())
    n = len(z["train"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_theirs = timed(
            lambda: LogisticRegression(C=1 / (1e-4 * n), max_iter=1000).fit(
                z["train"].numpy(), y["train"].numpy()
            )
        )
    return {
        "what": f"whole evaluator, {label}: {n:,} x {z['train'].shape[1]}, {k} classes",
        "ours": f"{t_ours:.1f} s (" + ", ".join(f"{p} {s_:.1f}" for p, s_ in parts.items()) + ")",
        "alternative": f"{t_theirs:.1f} s (one sklearn LogisticRegression fit, wd 1e-4)",
        "ratio": t_theirs / t_ours,
        "flops": None,
        "seconds": t_ours,
        "kind": "evaluator",
    }
