"""Learners, one file each; importing this package registers them (file name = registry key)."""

from methods import ae, dae, pca, pixels, random, simclr, unet  # noqa: F401
