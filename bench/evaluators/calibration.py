"""Calibration of the linear probe: does its confidence match how often it is right?

The probe the linear evaluator fitted (weight decay chosen on validation) is scored on the test
split as it is and after temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks"): one temperature T > 0 divides the logits, fitted by L-BFGS on log T to the validation
slice's negative log-likelihood; the predictions, and so the accuracy, do not change.

- ECE: expected calibration error over `BINS` = 15 equal-width confidence bins (Naeini et al.
  2015; the binning of Guo et al. 2017), sum over bins of |accuracy - mean confidence| x share
  of images, in %.
- NLL: mean negative log-likelihood of the true class (nats).
- Brier: mean over images of the squared distance between the predicted distribution and the
  one-hot label, summed over classes (Brier 1950, the multi-class form).

Each bin's images, accuracy and confidence are kept, so `bench evaluate RUN` draws the
reliability diagram. The test split is read once for all six numbers. NLL and Brier are means over
the test images, so each image's own (raw and T-scaled) is kept in `calibrated.npz`: the pages'
intervals on them count the test images as well as the seeds (bench/report/items.py). ECE is not
a mean over images (its bins pool them), so its intervals count the seeds only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench.evaluators import Card, Column, Context, Evaluator, register
from bench.evaluators.linear import logits

BINS = 15


def _get(which: str):
    return lambda m: (
        (m.get("calibration") or {}).get(which) if isinstance(m.get("calibration"), dict) else None
    )


@register("calibration")
class Calibration(Evaluator):
    order = 12  # after the linear probe, whose fitted weights it scores
    version = 2  # 2: also keeps each test image's NLL and Brier (calibrated.npz)
    columns = (
        Column("ece", _get("ece"), scale=100, spread=False),
        Column("ece_ts", _get("ece_ts"), scale=100, spread=False),
        Column("nll", _get("nll"), digits=3, spread=False),
        Column("nll_ts", _get("nll_ts"), digits=3, spread=False),
        Column("brier", _get("brier"), digits=4, spread=False),
        Column("brier_ts", _get("brier_ts"), digits=4, spread=False),
    )

    def card(self, cfg) -> list[Card]:
        return [
            Card(
                "calibration of the linear probe (ECE, NLL, Brier; raw and temperature-scaled)",
                "temperature",
                "T > 0 (L-BFGS on log T)",
                "validation",
                "test",
                1,
            )
        ]

    def __call__(self, ctx: Context) -> dict:
        w = ctx.shared.get("linear_w")
        if w is None:  # the linear probe did not run (or kept nothing): nothing to calibrate
            return {}
        t = temperature(logits(ctx.z["val"], w), ctx.y["val"])
        test = ctx.test("calibration")
        raw = logits(test.z, w)
        out = {"temperature": t, "bins": BINS, "binning": "equal-width"}
        kept = {"nll": [], "brier": []}
        for suffix, scaled in (("", raw), ("_ts", raw / t)):
            measured = scores(scaled, test.y)
            for k, v in per_image(scaled, test.y).items():
                kept[k].append(v)
            out.update({f"{k}{suffix}": v for k, v in measured.items()})
        ctx.artifacts["calibrated"] = {k: np.stack(v, 1).astype(np.float32) for k, v in kept.items()}
        return {"calibration": out}


def temperature(z: torch.Tensor, y: torch.Tensor, steps: int = 50) -> float:
    """The T > 0 that minimises the NLL of softmax(z / T) on (z, y)."""
    z, y = z.double(), y
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def scores(z: torch.Tensor, y: torch.Tensor, bins: int = BINS) -> dict:
    """ECE (a fraction), NLL, Brier and the reliability bins of logits `z` against labels `y`."""
    z = z.double()
    p = z.softmax(1)
    conf, pred = p.max(1)
    right = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # bin b holds (edges[b], edges[b+1]]
    count = torch.bincount(which, minlength=bins).double()
    acc = torch.bincount(which, right, minlength=bins) / count.clamp(min=1)
    mean_conf = torch.bincount(which, conf, minlength=bins) / count.clamp(min=1)
    ece = float((count / len(y) * (acc - mean_conf).abs()).sum())
    image = per_image(z, y)
    return {
        "ece": ece,
        "nll": float(image["nll"].mean()),
        "brier": float(image["brier"].mean()),
        "reliability": {
            "count": count.long().tolist(),
            "accuracy": [round(v, 6) for v in acc.tolist()],
            "confidence": [round(v, 6) for v in mean_conf.tolist()],
        },
    }


def per_image(z: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Each image's NLL of its true class and its Brier score, from logits `z` (float64)."""
    z = z.double()
    p = z.softmax(1)
    onehot = F.one_hot(y, p.shape[1]).double()
    return {
        "nll": F.cross_entropy(z, y, reduction="none").numpy(),
        "brier": ((p - onehot) ** 2).sum(1).numpy(),
    }
