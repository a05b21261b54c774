"""LatentBench: how much class information does each representation learner put into its latent?"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# The repository this package runs from, or None when it is installed from a wheel: then its
# configs are package data (bench/configs/) and no git history names its code.
CHECKOUT = _PACKAGE.parent if (_PACKAGE.parent / "pyproject.toml").is_file() else None
CONFIG_DIR = CHECKOUT / "configs" if CHECKOUT else _PACKAGE / "configs"

# Bump when a change alters what a run computes (training, evaluation or data semantics): it is part
# of every run key, so old results are never mixed with new ones.
CODE_VERSION = 1


class BenchError(Exception):
    """Bad input or a failed precondition: the CLI prints the message on one line and exits 2."""
