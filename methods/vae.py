"""Variational autoencoder (Kingma & Welling 2014) with a beta weight on the KL term (Higgins et
al. 2017): the `ae` network, with the bottleneck giving the posterior mean and a second head its
log-variance. Training decodes a reparameterised sample; the latent is the posterior mean
(deterministic in eval), and reconstruction decodes the mean.

The loss is the negative ELBO per pixel: (reconstruction summed over pixels + beta * KL) divided
by the pixel count, so its optimum is the ELBO's while its scale matches the other autoencoders'.
The decoder is Bernoulli (binary cross-entropy), as the paper's for MNIST; `likelihood = "mse"`
gives a fixed-variance Gaussian instead. The KL weight ramps linearly from 0 to beta over the
first `kl_warmup` of training (Bowman et al. 2016; Sonderby et al. 2016), through the harness's
per-step hook: without it, short schedules on small images collapse the posterior onto the
prior (measured on digits: KL 0.01 nats, the decoder drawing the mean image). Both terms are
logged per epoch: the expected finding is that the KL pressure toward an isotropic prior trades
linear separability for a smoother latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import BenchError
from bench.checks import at_least, one_of, within
from bench.method import InputShape, Method, suggest_lr
from bench.nets import CHANNELS, Bottleneck, Decoder, Encoder
from bench.registry import register


@register("vae")
class VAE(Method):
    reconstructs = True
    family = "autoencoders"

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)
        channels: tuple[int, ...] = at_least(1, CHANNELS, each=True)
        bottleneck: str = one_of(("dense", "spatial"), "dense")
        beta: float = at_least(0, 1.0)  # 1 = the ELBO; > 1 = beta-VAE
        kl_warmup: float = within(0, 1, 0.3)  # fraction of training over which the KL weight ramps to beta
        likelihood: str = one_of(("bce", "mse"), "bce")  # Bernoulli decoder | Gaussian, fixed variance 1/2

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        if cfg.likelihood not in ("bce", "mse"):
            raise BenchError(f"methods.vae.likelihood={cfg.likelihood!r}: choose 'bce' or 'mse'")
        self.encoder = Encoder(shape.channels, cfg.channels, (shape.height, shape.width))
        args = (self.encoder.out_channels, self.encoder.sizes[-1], cfg.latent_dim, cfg.bottleneck)
        self.bottleneck = Bottleneck(*args)  # down: posterior mean; up: into the decoder
        self.logvar = Bottleneck(*args).down
        self.decoder = Decoder(cfg.channels, self.encoder.sizes, shape.channels)
        self.kl_weight = 0.0 if cfg.kl_warmup > 0 else cfg.beta  # moved by on_step

    @staticmethod
    def search_space(trial) -> dict:
        """Learning rate and beta from 0.1 to 8 (Higgins et al. report 4 and more for disentangling)."""
        return {
            "train.lr": suggest_lr(trial),
            "beta": trial.suggest_float("beta", 0.1, 8.0, log=True),
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        feat, _ = self.encoder(self.normalize(x))
        return self.bottleneck.down(feat)  # (B, latent_dim): the posterior mean

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck.up(self.encode(x)))

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat, _ = self.encoder(self.normalize(x))
        mu, logvar = self.bottleneck.down(feat), self.logvar(feat).clamp(-30, 20)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        x_hat, x = self.decoder(self.bottleneck.up(z)).float(), x.float()
        if self.cfg.likelihood == "bce":  # written out: F.binary_cross_entropy refuses autocast
            nll = x * x_hat.clamp_min(1e-6).log() + (1 - x) * (1 - x_hat).clamp_min(1e-6).log()
            recon = -nll.sum() / len(x)
        else:
            recon = F.mse_loss(x_hat, x.float(), reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()  # nats per image
        pixels = x[0].numel()
        return {"loss": (recon + self.kl_weight * kl) / pixels, "recon": recon / pixels, "kl": kl}

    def on_step(self, step: int, total: int) -> None:
        warmup = self.cfg.kl_warmup * total
        self.kl_weight = self.cfg.beta * (min(1.0, step / warmup) if warmup > 0 else 1.0)
