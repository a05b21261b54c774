"""Stored runs, read by today's code: every rule that keeps an old run's key, name and numbers
valid lives here, and nowhere else.

- **Keys.** A run key hashes the run spec (bench/store/spec.py); of an outside learner's `source`, only
  the sha256 of its code or weights (moving the file keeps the key, editing it makes a new one).
  Each section hashes in full the fields it had when keys were defined (`KEYED`); a field added
  since is hashed only when it is off its default, so adding an option (a training flag, an
  evaluator's setting) leaves every stored run's key as it was, and a run that asks for the new
  option gets a new key. `CODE_VERSION` moves every key, for a change that alters what every run
  computes.
- **Versions.** Each evaluator has a version, recorded with every run under `evaluators`; runs
  stored before the record existed are read by what their metrics hold (`measured`).
- **Stale.** A finished run measured by an evaluator version below that evaluator's
  `stale_below` (0: never measured), or by its own rule (`Evaluator.stale`: the MLP head's version
  1 only where it was starved), is stale: marked ‡ in the tables, chosen by `verify --stale`.
- **Outdated.** A finished run measured by any evaluator below its current version (e.g. before
  the linear probe kept its test predictions, or before the latent map existed) lacks something
  today's evaluators would add, without its numbers being wrong: chosen by `verify --outdated`.
"""

from __future__ import annotations

from bench import CODE_VERSION, evaluators
from bench.store.hashing import digest

# The fields every key has hashed since the first run was stored (CODE_VERSION 1).
KEYED = {
    "data": ("val_fraction", "val_seed", "train_limit", "fingerprint", "name"),  # name: never keyed
    "train": ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "grad_clip"),
    "eval": (
        "probe_weight_decays",
        "probe_max_iter",
        "mlp_hidden",
        "mlp_max_epochs",
        "mlp_patience",
        "mlp_lr",
        "knn_ks",
    ),
}


# The fields added since, each with the default it had when it was added, frozen here: a run at
# that value hashes as if the field did not exist (so the runs stored before it keep their keys),
# and any other value is hashed, a later default included (so changing a default makes new keys
# rather than handing new runs the stored results of the old one). A field added from now on
# joins here with its default; tests/test_evaluator.py holds every field to KEYED or here.
LATER = {
    "data": {"classes": []},
    "train": {"compile": False, "bf16": False},
    "eval": {
        "label_fractions": [0.01, 0.1],
        "label_draws": 5,
        "map_points": 2000,
        "steer_only": False,
        "mlp_min_steps": 1500,
        "mlp_lr_factors": [1.0, 3.0],
        "mlp_weight_decays": [1e-4, 1e-2],
        "fewshot_ks": [1, 5, 10, 20],
        "fewshot_episodes": 10,
        "ood_sources": ["noise", "gaussian", "inverted"],
        "ood_images": 2000,
        "ood_k": 50,
        "corruption_names": [
            "gaussian_noise",
            "shot_noise",
            "impulse_noise",
            "gaussian_blur",
            "defocus_blur",
            "zoom_blur",
            "fog",
            "brightness",
            "contrast",
            "pixelate",
            "jpeg",
        ],
        "corruption_mnist_c": [
            "glass_blur",
            "motion_blur",
            "shear",
            "scale",
            "rotate",
            "translate",
            "spatter",
            "stripe",
            "dotted_line",
            "zigzag",
            "canny_edges",
        ],
        "corruption_severities": [1, 2, 3, 4, 5],
        "corruption_images": 2000,
    },
}


def later_defaults(section: str) -> dict:
    """The fields of `section` ("data", "train", "eval") added after keys were defined, at the
    defaults they had when they were added (LATER, not today's). A field of an evaluator file
    dropped in from outside, which LATER cannot know, is taken at today's default."""
    from bench import config

    cls = {"eval": config.EvalConfig, "train": config.TrainConfig, "data": config.DataConfig}.get(section)
    if cls is None:
        return {}
    frozen = {k: LATER.get(section, {}).get(k, v) for k, v in config.to_dict(cls()).items()}
    return {k: list(v) if isinstance(v, list) else v for k, v in frozen.items() if k not in KEYED[section]}


def _keyed(values: dict | None, section: str) -> dict | None:
    if values is None:
        return None
    later = later_defaults(section)
    return {k: v for k, v in values.items() if k not in later or v != later[k]}


def keys(spec: dict) -> tuple[str, str]:
    """(run key, train key) of a run spec's JSON form: the train key hashes what changes the
    trained weights (learner, its config, data, budget, seed), the run key adds evaluation."""
    train_part = {k: spec[k] for k in ("method", "method_config", "seed")}
    train_part["data"] = _keyed(spec["data"], "data")
    train_part["train"] = _keyed(spec["train"], "train")
    if spec.get("source"):  # a learner from outside the repository: its code's content, not its path
        train_part["source"] = spec["source"]["sha256"]
    train_key = digest({"code_version": CODE_VERSION, **train_part})
    run_part = {"train_key": train_key, "eval": _keyed(spec["eval"], "eval")}
    if spec.get("probe"):  # transfer: the probe dataset's content and split, and how it was adapted
        run_part["probe"] = {k: spec["probe"][k] for k in ("data", "adapt")}
    return digest(run_part), train_key


def settings(section: str, values: dict | None) -> dict:
    """A stored section with the fields added later filled in at the defaults they were added
    with: what the run ran with, comparable across runs stored before and after a field existed."""
    return {**later_defaults(section), **(values or {})}


def measured(metrics: dict) -> dict[str, int]:
    """{evaluator: version} that measured a finished run: the one recorded with the run (an
    evaluator with nothing to measure, say reconstruction for a learner that does not
    reconstruct, is recorded all the same, its entry None), 0 for one whose entry the run lacks.
    Runs stored before versions were recorded: 0 where the entry is missing or None, linear 2 if
    its solver is the preconditioned one (else 1), every other evaluator 1."""
    from bench.evaluators.linear import SOLVER

    recorded = metrics.get("evaluators") if isinstance(metrics.get("evaluators"), dict) else None
    out = {}
    for e in evaluators.all():
        entry = metrics.get(e.name)
        if e.name not in metrics:
            out[e.name] = 0
        elif recorded is not None:  # it ran, if only to find nothing to measure (entry None)
            out[e.name] = int(recorded.get(e.name, 0))
        elif entry is None:
            out[e.name] = 0
        elif e.name == "linear":
            out[e.name] = 2 if isinstance(entry, dict) and entry.get("solver") == SOLVER else 1
        else:
            out[e.name] = 1
    return out


def stale(metrics: dict) -> bool:
    """A finished run measured by an evaluator older than that evaluator accepts (`stale_below`,
    or the evaluator's own `stale` rule). A study's trial is measured only by what steers its
    study (`steer_only`): never stale."""
    return bool(stale_by(metrics))


def stale_by(metrics: dict) -> list[str]:
    """The evaluators whose numbers for this finished run are stale (see `stale`), in order."""
    if metrics.get("status") != "ok" or metrics.get("steer_only"):
        return []
    versions = measured(metrics)
    return [e.name for e in evaluators.all() if e.stale(versions[e.name], metrics)]


def outdated(metrics: dict) -> bool:
    """A finished run that today's evaluators would measure more of (any evaluator's version above
    the one that measured it). A study's trial is measured only by what steers it: never."""
    if metrics.get("status") != "ok" or metrics.get("steer_only"):
        return False
    versions = measured(metrics)
    return any(versions[e.name] < e.version for e in evaluators.all())
