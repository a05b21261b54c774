"""A run, typed: what it is (`RunSpec`, frozen, its keys computed once), why it ran (`Purpose`)
and what it measured (`Metrics`, its metrics.json).

The grid (bench/run/runner.py `specs`), a study's trial (bench/studies/tune.py) and `verify`/`export` build a
spec once; nothing downstream changes it. Its JSON form is the run's config.json, which is what
the keys hash (rules in bench/store/compat.py) and what the report reads back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bench import BenchError
from bench.store import compat

KINDS = ("grid", "trial", "default", "tuned", "verify", "export")


@dataclass(frozen=True)
class Purpose:
    """Why a run ran: `grid`, a `trial` of study S, the `default` row or `tuned` re-run of study
    S, a `verify` or `export` re-make. Stored in config.json as "kind" or "kind:S"."""

    kind: str = "grid"
    study: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise BenchError(f"purpose {self.kind!r}: one of {', '.join(KINDS)}")
        if (self.kind in ("trial", "default", "tuned")) != bool(self.study):
            raise BenchError(f"purpose {self.kind!r}: a study's purposes, and only they, name the study")

    @classmethod
    def parse(cls, text: str) -> Purpose:
        kind, _, study = str(text).partition(":")
        return cls(kind, study)

    def __str__(self) -> str:
        return f"{self.kind}:{self.study}" if self.study else self.kind


def trial(study: str) -> Purpose:
    return Purpose("trial", study)


def default(study: str) -> Purpose:
    return Purpose("default", study)


def tuned(study: str) -> Purpose:
    return Purpose("tuned", study)


GRID = Purpose("grid")
VERIFY = Purpose("verify")
EXPORT = Purpose("export")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result. The keys hash all of it but `dataset` (named,
    described), `overrides` (what its row is named by) and `command` (what made it), and of
    `source` (a learner from outside the repository, bench/plugins/outside.py) only its content hash:
    see compat.keys."""

    dataset: dict
    data: dict
    method_config: dict
    train: dict | None
    eval: dict
    method: str
    seed: int
    overrides: dict
    command: str | None = None
    source: dict | None = None  # a learner from outside the repository: where, and its sha256
    probe: dict | None = None  # transfer: the dataset probed instead of the training one
    key: str = field(init=False, compare=False)
    train_key: str = field(init=False, compare=False)

    def __post_init__(self):
        key, train_key = compat.keys(self.json())
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "train_key", train_key)

    def json(self) -> dict:
        """The spec as config.json holds it (without `purposes`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for optional in ("command", "source", "probe"):  # absent from the runs that have none
            if out[optional] is None:
                del out[optional]
        return out

    def record(self, purposes: list[Purpose]) -> dict:
        """config.json: the spec and why it ran."""
        return {**self.json(), "purposes": [str(p) for p in purposes]}

    @classmethod
    def of(cls, stored: dict) -> RunSpec:
        """The spec of a stored run's config.json."""
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        return cls(**{k: stored.get(k) for k in names})

    def with_command(self, command: str) -> RunSpec:
        return dataclasses.replace(self, command=command)


@dataclass(frozen=True)
class Metrics:
    """What a run measured: its metrics.json, typed. `measures` holds every evaluator's entries
    (`linear`, `mlp`, ..., `confusion`, `recon_val`), which the file keeps at its top level; the
    rest is the run's own record. A diverged run has a status, its error and its environment."""

    status: str  # "ok" or "diverged"
    env: dict
    wall_time_s: float  # this process's work: training too, unless the checkpoint was cached
    error: str | None = None
    method: str | None = None
    latent_dim: int | None = None
    params: int | None = None
    measures: dict = field(default_factory=dict)
    evaluators: dict = field(default_factory=dict)  # {evaluator: version} that measured it
    steer_only: bool = False  # a study's trial: measured only by what steers the study
    train: dict | None = None  # time, epochs, loss per epoch, terms per epoch
    eval_time_s: float | None = None
    from_checkpoint: bool | None = None  # evaluated from a cached checkpoint, not trained here
    n: dict | None = None  # images per split
    weights_sha256: str | None = None
    encoder_unchanged: bool | None = None

    def json(self) -> dict:
        """metrics.json: the record's fields, the measures at the top level (a diverged run: its
        status, error, environment and time only)."""
        if self.status != "ok":
            return {
                "status": self.status,
                "error": self.error,
                "env": self.env,
                "wall_time_s": self.wall_time_s,
            }
        skip = {"measures", "error"} | ({"steer_only"} if not self.steer_only else set())
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip},
            **self.measures,
        }

    @classmethod
    def of(cls, stored: dict) -> Metrics:
        """A metrics.json read back: the known fields typed, every other entry a measure."""
        names = {f.name for f in dataclasses.fields(cls)} - {"measures"}
        known = {k: v for k, v in stored.items() if k in names}
        return cls(**known, measures={k: v for k, v in stored.items() if k not in names})


STATUSES = ("ok", "diverged")
_CONFIG = {"method": str, "seed": int, "dataset": dict, "data": dict, "method_config": dict, "eval": dict}


def problem(cfg, metrics) -> str | None:
    """What makes a stored run's files unusable although they parse, or None: the schema of
    config.json and metrics.json (the fields every reader relies on, with their types). The
    store treats such a run like a corrupt one (bench/store/__init__.py `read_run`)."""
    if not isinstance(cfg, dict):
        return "config.json is not a JSON object"
    for name, kind in _CONFIG.items():
        if not isinstance(cfg.get(name), kind) or isinstance(cfg.get(name), bool):
            return f"config.json's {name!r} is missing or not a {kind.__name__}"
    if not isinstance(cfg["dataset"].get("slug"), str):
        return "config.json's dataset has no slug"
    if not isinstance(metrics, dict):
        return "metrics.json is not a JSON object"
    if metrics.get("status") not in STATUSES:
        return f"metrics.json's status {metrics.get('status')!r} is not one of {', '.join(STATUSES)}"
    if metrics["status"] == "ok":
        linear = metrics.get("linear")
        if not isinstance(linear, dict) or not _number(linear.get("test_acc")):
            return "metrics.json has no linear probe accuracy"
        for name, value in metrics.items():  # every accuracy a reader may pick up is a number
            if isinstance(value, dict) and "test_acc" in value and not _number(value["test_acc"]):
                return f"metrics.json's {name}.test_acc is not a number"
    return None


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# What a run's kept array file must hold to be used: {array: number of dimensions}, all numeric;
# its arrays share their first dimension, and those of one rank share their shape.
ARTIFACTS = {
    "recon": {"input": 4, "recon": 4},  # the grid's test images and their reconstructions
    "predictions": {"linear": 1, "y": 1},  # the linear probe's test predictions, the labels
    "latent_map": {"index": 1, "xy": 2, "y": 1},  # the map's test images, 2-D points, labels
    # per (corruption, severity): which images the clean probe got right (bits), and which condition
    "corrupted": {"right": 2, "which": 1},
    "calibrated": {"nll": 2, "brier": 2},  # each test image's NLL and Brier: raw, T-scaled
    "ood_scores": {"score": 2, "source": 1},  # each image's kNN and Mahalanobis score, its source
}


def artifact_problem(name: str, arrays: dict) -> str | None:
    """What is wrong with the arrays of a run's `<name>.npz` under ARTIFACTS, or None."""
    wanted = ARTIFACTS.get(name, {})
    got = {k: arrays.get(k) for k in wanted}
    if any(a is None or a.ndim != wanted[k] or a.dtype.kind not in "iuf" for k, a in got.items()):
        return f"cannot be read as {', '.join(wanted)} arrays"
    shapes = {a.shape for a in got.values()}
    if len({s[0] for s in shapes}) > 1 or len(shapes) > len({len(s) for s in shapes}):
        return f"holds arrays of mismatched shapes {sorted(shapes)}"
    return None
