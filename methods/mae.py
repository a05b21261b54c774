"""Masked autoencoder (He et al. 2022): a ViT encoder sees a random 25% of the image patches; a
light transformer decoder, given the encoded visible tokens and mask tokens, predicts the pixels
of the masked patches, and the loss is their mean squared error (pixel targets, not the paper's
per-patch normalised ones, so that `reconstruct` returns an image). The latent is the mean of
the encoder's patch tokens on the whole, unmasked image (the paper's linear probe reads the
average-pooled tokens too). timm's ViT and lightly's masked ViT, decoder and masking utilities.

Sized for 8-32 px on a CPU: `latent_dim` is the encoder width, 4 blocks of 4 heads, a 2-block
decoder of width 64, and a patch size that gives at most 64 tokens (2 px on 8x8 digits, 4 px on
28x28 MNIST and 32x32 CIFAR); mask ratio 0.75, the paper's.

Reconstruction follows the paper's figures: a fixed 75% of the patches (the same mask for every
image at every call, so evaluation is deterministic) are predicted and the visible 25% are the
input's own pixels; read its PSNR with that in mind. Like the U-Net's skips, the decoder reads
every token rather than the pooled latent, which carries no reconstruction pressure of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.checks import at_least, within
from bench.method import InputShape, Method, Unsupported, suggest_lr
from bench.registry import register


@register("mae")
class MAE(Method):
    reconstructs = True
    family = "autoencoders"

    @dataclass
    class Config:
        latent_dim: int = at_least(1, 64)  # the encoder's token width
        patch_size: int = at_least(0, 0)  # 0: the smallest of 2, 4, 8 that gives at most 64 tokens
        depth: int = at_least(1, 4)
        heads: int = at_least(1, 4)
        decoder_dim: int = at_least(1, 64)
        decoder_depth: int = at_least(1, 2)
        mask_ratio: float = within(0, 1, 0.75, open_lo=True, open_hi=True)

    def __init__(self, cfg: Config, shape: InputShape):
        super().__init__(cfg, shape)
        from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
        from timm.models.vision_transformer import VisionTransformer

        side, self.patch = shape.height, cfg.patch_size or _patch_size(shape.height)
        if shape.height != shape.width or side % self.patch:
            raise Unsupported(
                f"mae: needs square images divisible by patch_size {self.patch}, got {side}x{shape.width}"
            )
        if cfg.latent_dim % cfg.heads or cfg.decoder_dim % cfg.heads:
            raise Unsupported(
                f"mae: latent_dim {cfg.latent_dim} and decoder_dim must be multiples of heads={cfg.heads}"
            )
        vit = VisionTransformer(
            img_size=side,
            patch_size=self.patch,
            in_chans=shape.channels,
            num_classes=0,
            embed_dim=cfg.latent_dim,
            depth=cfg.depth,
            num_heads=cfg.heads,
            global_pool="avg",
            fc_norm=False,
        )  # fmt: skip  (fc_norm=False: the final LayerNorm acts on the tokens, which lightly then pools)
        self.encoder = MaskedVisionTransformerTIMM(vit=vit)
        self.encoder.mask_token.requires_grad_(False)  # MAE drops masked tokens, it never fills them
        self.tokens = (side // self.patch) ** 2
        self.decoder_embed = nn.Linear(cfg.latent_dim, cfg.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.tokens, embed_dim=cfg.decoder_dim, depth=cfg.decoder_depth, num_heads=cfg.heads
        )
        self.predict = nn.Linear(cfg.decoder_dim, self.patch**2 * shape.channels)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "train.lr": suggest_lr(trial),
            "mask_ratio": trial.suggest_float("mask_ratio", 0.4, 0.9),  # the paper's Fig. 5 range
        }

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))  # (B, latent_dim): mean of the patch tokens

    def _predict(
        self, x: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask by `noise` (B, tokens); returns (predicted patches, target patches, masked index),
        the patches of the masked positions only."""
        from lightly.models import utils

        keep = max(1, int(self.tokens * (1 - self.cfg.mask_ratio)))
        order = noise.argsort(dim=1) + 1  # +1: position 0 is the class token, always kept
        cls = order.new_zeros(len(x), 1)
        idx_keep, idx_mask = torch.cat([cls, order[:, :keep]], 1), order[:, keep:]
        encoded = self.encoder.encode(self.normalize(x), idx_keep=idx_keep)  # (B, 1 + keep, D)
        seq = utils.repeat_token(self.decoder.mask_token, (len(x), self.tokens + 1))
        seq = utils.set_at_index(seq, idx_keep, self.decoder_embed(encoded).type_as(seq))
        decoded = self.decoder.decode(self.decoder.add_pos_embed(seq))  # (B, 1 + tokens, d)
        pred = self.predict(utils.get_at_index(decoded, idx_mask))  # (B, masked, P)
        target = utils.get_at_index(utils.patchify(x, self.patch), idx_mask - 1)
        return pred, target, idx_mask - 1

    def training_step(self, x: torch.Tensor) -> torch.Tensor:
        pred, target, _ = self._predict(x, torch.rand(len(x), self.tokens, device=x.device))
        return F.mse_loss(pred.float(), target.float())

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        from lightly.models import utils

        gen = torch.Generator().manual_seed(0)  # one fixed mask, the same for every image
        noise = torch.rand(1, self.tokens, generator=gen).to(x.device).expand(len(x), -1)
        pred, _, idx_mask = self._predict(x, noise)
        patches = utils.set_at_index(utils.patchify(x, self.patch), idx_mask, pred.type_as(x))
        return utils.unpatchify(patches, self.patch, x.shape[1]).clamp(0, 1)


def _patch_size(side: int) -> int:
    return next((p for p in (2, 4, 8) if side % p == 0 and (side // p) ** 2 <= 64), side)
