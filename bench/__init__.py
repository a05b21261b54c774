"""LatentBench: how much class information does each representation learner put into its latent?"""

# Bump when a change alters what a run computes (training, evaluation or data semantics): it is part
# of every run key, so old results are never mixed with new ones.
CODE_VERSION = 1


class BenchError(Exception):
    """Bad input or a failed precondition: the CLI prints the message on one line and exits 2."""
