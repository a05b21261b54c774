"""The shared evaluator on frozen latents: the only code that sees labels.

Latents are extracted once, in eval() under inference_mode, and standardised with training-split
statistics. Every probe picks its hyperparameter on the validation slice, then scores the test
split once. The encoder's weights are hashed before and after: evaluation must not change them.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from bench.config import EvalConfig
from bench.nets import ssim


def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def extract(model, x: torch.Tensor, device: torch.device, batch: int = 1024) -> torch.Tensor:
    """Latents (N, D) float32 on the CPU of uint8 images (N, C, H, W)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model.encode(xb).float().cpu())
    return torch.cat(out)


def standardize(z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale every split with the training split's per-feature mean and std."""
    mean, std = z["train"].mean(0), z["train"].std(0).clamp_min(1e-6)
    return {k: (v - mean) / std for k, v in z.items()}


def probes(z: dict, y: dict, num_classes: int, cfg: EvalConfig, seed: int) -> dict:
    """Linear probe, MLP head and kNN on standardised latents z[split] with labels y[split], then
    the linear probe and kNN again on class-balanced fractions of the training labels. With
    `cfg.steer_only` (a study's trial), the linear probe alone."""
    precond = preconditioner(z["train"])
    linear = linear_probe(z, y, num_classes, cfg.probe_weight_decays, cfg.probe_max_iter, precond)
    if cfg.steer_only:
        return {"linear": linear, "steer_only": True}
    return {
        "linear": linear,
        "mlp": mlp_probe(z, y, num_classes, cfg, seed),
        "knn": knn_probe(z, y, num_classes, cfg.knn_ks),
        "label_efficiency": label_efficiency(z, y, num_classes, cfg, precond),
    }


def label_efficiency(z: dict, y: dict, num_classes: int, cfg: EvalConfig, precond=None) -> dict:
    """Test accuracy of the linear probe and kNN when only a fraction of the training images keep
    their labels: {"0.01": {"labels": n, "linear": [acc per draw], "knn": [...]}, ...}.

    Each draw is a class-balanced subset (the same fraction of every class, at least one image
    each) seeded by the draw number alone, so every learner is probed on the same labelled images.
    Hyperparameters are still chosen on the (fully labelled) validation slice, as in the
    semi-supervised protocol of SimCLR and BYOL; the latents stay standardised (and the probe
    preconditioned) with statistics of all training images, which need no labels.
    """
    out = {}
    for fraction in cfg.label_fractions:
        draws = {"linear": [], "knn": []}
        for draw in range(cfg.label_draws):
            idx = balanced_subset(y["train"], fraction, draw)
            zs, ys = dict(z, train=z["train"][idx]), dict(y, train=y["train"][idx])
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


# Recorded with every linear probe: runs stored before it (plain L-BFGS stopped at 150 steps,
# short of the optimum) are marked in the tables and chosen by `bench verify --stale`.
SOLVER = "preconditioned-lbfgs"


def stale(metrics: dict) -> bool:
    """A finished run measured by an older evaluator: its linear probe stopped short of the
    optimum, or it lacks label efficiency or RankMe. A study's trial measures only what steers
    the study (`steer_only`): that is not stale."""
    if metrics.get("status") != "ok" or metrics.get("steer_only"):
        return False
    return (
        metrics["linear"].get("solver") != SOLVER
        or "label_efficiency" not in metrics
        or "rankme" not in metrics
    )


def preconditioner(x: torch.Tensor, delta: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, r) with X^T X / N = U diag(lam) U^T for the (standardised) training latents X and
    r = (lam + delta)^(-1/2): the change of variables W = U diag(r) V whitens the probe's problem.

    Label-free (all training latents, like the standardisation), computed once per run and shared
    by every fit of the weight-decay sweep and of the label-efficiency subsets. `delta` (the
    latents' mean eigenvalue is 1) keeps the directions the data never spans finite.
    """
    lam, u = torch.linalg.eigh((x.T @ x / len(x)).double())  # only a preconditioner: fp32 GEMM
    return u.to(x.dtype), (lam.clamp_min(0) + delta).rsqrt().to(x.dtype)


def _fit_logreg(x, y, k, wd, max_iter, init=None, precond=None, stats=None) -> torch.Tensor:
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

    opt = torch.optim.LBFGS(
        [v],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

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


def _logits(x, w):
    return x @ w[:-1] + w[-1]


def linear_probe(z, y, k, weight_decays, max_iter, precond=None) -> dict:
    """Weight decay chosen on validation, strongest first so each fit warm-starts the next."""
    best, w = None, None
    precond = precond if precond is not None else preconditioner(z["train"])
    for wd in sorted(weight_decays, reverse=True):
        w = _fit_logreg(z["train"], y["train"], k, wd, max_iter, init=w, precond=precond)
        val = _accuracy(_logits(z["val"], w), y["val"])
        if best is None or val > best[0]:
            best = (val, wd, w)
    val, wd, w = best
    pred = _logits(z["test"], w).argmax(1)
    return {
        "test_acc": _accuracy_pred(pred, y["test"]),
        "val_acc": val,
        "weight_decay": wd,
        "solver": SOLVER,
        "test_pred": pred,
    }


def mlp_probe(z, y, k, cfg: EvalConfig, seed: int) -> dict:
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
            val = _accuracy(head(z["val"]), y["val"])
        if val > best[0]:
            best = (val, epoch + 1, {k_: v.clone() for k_, v in head.state_dict().items()})
        elif epoch + 1 - best[1] >= cfg.mlp_patience:
            break
    val, epochs, state = best
    head.load_state_dict(state)
    with torch.no_grad():
        test = _accuracy(head(z["test"]), y["test"])
    return {"test_acc": test, "val_acc": val, "epochs": epochs}


def _knn_votes(query, bank, bank_y, k_max, num_classes, chunk=1024):
    """(Q, k_max) neighbour labels and cosine similarities, nearest first."""
    bank = F.normalize(bank, dim=1)
    labels, sims = [], []
    for q in F.normalize(query, dim=1).split(chunk):
        s, i = (q @ bank.T).topk(k_max, dim=1)
        labels.append(bank_y[i])
        sims.append(s)
    return torch.cat(labels), torch.cat(sims)


def _knn_predict(labels, sims, k, num_classes):
    votes = F.one_hot(labels[:, :k], num_classes).float()  # (Q, k, K)
    # majority vote; a tiny similarity term breaks ties in favour of the closer neighbours
    score = votes.sum(1) + 1e-4 * (votes * sims[:, :k, None]).sum(1)
    return score.argmax(1)


def knn_probe(z, y, num_classes, ks) -> dict:
    """Cosine kNN against the training latents; k chosen on validation."""
    ks = sorted(k for k in ks if k <= len(z["train"]))
    labels, sims = _knn_votes(z["val"], z["train"], y["train"], ks[-1], num_classes)
    vals = {k: _accuracy_pred(_knn_predict(labels, sims, k, num_classes), y["val"]) for k in ks}
    k = max(ks, key=lambda k_: (vals[k_], -k_))
    labels, sims = _knn_votes(z["test"], z["train"], y["train"], k, num_classes)
    return {
        "test_acc": _accuracy_pred(_knn_predict(labels, sims, k, num_classes), y["test"]),
        "val_acc": vals[k],
        "k": k,
    }


def quick_val_probe(model, data, device: torch.device, n_train: int = 5000) -> float:
    """Cheap per-epoch signal for pruning: a linear probe (fixed weight decay, few L-BFGS steps)
    fitted on at most `n_train` training latents, scored on the validation slice. Never test."""
    z = {"train": extract(model, data.x_train[:n_train], device), "val": extract(model, data.x_val, device)}
    z = standardize(z)
    k = len(data.classes)
    w = _fit_logreg(z["train"], data.y_train[:n_train], k, wd=1e-4, max_iter=30)
    return _accuracy(_logits(z["val"], w), data.y_val)


@torch.inference_mode()
def reconstruction(model, x: torch.Tensor, device: torch.device, batch: int = 512) -> dict:
    """Test-split MSE, PSNR (dB, mean over images) and SSIM of [0, 1] images."""
    model.eval()
    mse, psnr, sim = [], [], []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device).float().div_(255)
        x_hat = model.reconstruct(xb.contiguous(memory_format=torch.channels_last)).float()
        err = (x_hat - xb).pow(2).flatten(1).mean(1)  # (B,)
        mse.append(err.cpu())
        psnr.append((10 * torch.log10(1 / err.clamp_min(1e-10))).cpu())
        sim.append(ssim(x_hat, xb, per_image=True).cpu())
    return {
        "mse": torch.cat(mse).mean().item(),
        "psnr": torch.cat(psnr).mean().item(),
        "ssim": torch.cat(sim).mean().item(),
    }


def grid_indices(y: torch.Tensor, count: int = 10) -> list[int]:
    """The first test image of each class (up to `count` classes): the same images for every run."""
    first = {}
    for i, c in enumerate(y.tolist()):
        first.setdefault(c, i)
    return [first[c] for c in sorted(first)][:count]


@torch.inference_mode()
def grid_reconstructions(model, x_test: torch.Tensor, y_test: torch.Tensor, device) -> dict:
    """uint8 inputs and reconstructions (N, C, H, W) of the fixed grid images."""
    x = x_test[grid_indices(y_test)]
    model.eval()
    xb = x.to(device).float().div(255).contiguous(memory_format=torch.channels_last)
    recon = model.reconstruct(xb).float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return {"input": x.numpy(), "recon": recon.numpy()}


def confusion(pred: torch.Tensor, y: torch.Tensor, k: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    return torch.bincount(y * k + pred, minlength=k * k).view(k, k).tolist()


def _accuracy(logits, y) -> float:
    return _accuracy_pred(logits.argmax(1), y)


def _accuracy_pred(pred, y) -> float:
    return (pred == y).float().mean().item()
