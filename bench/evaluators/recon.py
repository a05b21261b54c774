"""Reconstruction, for learners that reconstruct: test-split MSE, PSNR and SSIM of [0, 1] images,
the validation split's for studies that trade accuracy against PSNR, and a small grid of fixed
test images kept with the run for the report's figure."""

from __future__ import annotations

import torch

from bench.evaluators import Card, Column, Context, Evaluator, Plan, register
from bench.nets import ssim


def _recon(metric: str):
    return lambda m: (m.get("recon") or {}).get(metric)


@register("recon")
class Reconstruction(Evaluator):
    order = 60
    steers = True  # a two-objective study optimises the validation PSNR
    needs_model = True
    columns = (
        Column("mse", _recon("mse"), "MSE", digits=4),
        Column("psnr", _recon("psnr"), "PSNR dB", ablation=True, compare="PSNR default / tuned", unit="dB"),
        Column("ssim", _recon("ssim"), "SSIM", digits=3, ablation=True),
    )

    def refuse(self, cfg, plan: Plan) -> str | None:
        if plan.reconstructs and min(plan.image[1:]) < 2:
            height, width = plan.image[1:]
            return f"images of {height}x{width} px: SSIM needs at least 2x2 px; use larger images"
        return None

    def card(self, cfg) -> list[Card]:
        return [Card("MSE, PSNR, SSIM", "nothing", "-", "-", "test (learners that reconstruct)", 1)]

    def __call__(self, ctx: Context) -> dict:
        if not ctx.model.reconstructs:
            return {"recon": None, "recon_val": None}
        out = {"recon_val": reconstruction(ctx.model, ctx.data.x_val, ctx.device), "recon": None}
        if not ctx.steer_only:
            x_test, y_test = ctx.test_images("recon")
            out["recon"] = reconstruction(ctx.model, x_test, ctx.device)
            # the grid is kept small in the store, so the report can compare learners later
            ctx.artifacts["recon"] = grid_reconstructions(ctx.model, x_test, y_test, ctx.device)
        return out


@torch.inference_mode()
def reconstruction(model, x: torch.Tensor, device: torch.device, batch: int = 512) -> dict:
    """MSE, PSNR (dB, mean over images) and SSIM of [0, 1] images."""
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
