"""One run = train one learner, freeze it, evaluate it, store it. `bench run` loops over a grid of
runs and `bench tune` calls `run_one` per trial: one code path, one store.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import torch

from bench import BenchError, config, registry, store
from bench.config import Config
from bench.data import Dataset
from bench.report import labels
from bench.run import env, evaluate, train
from bench.store import claims
from bench.store.hashing import digest
from bench.store.spec import GRID, Metrics, Purpose, RunSpec


def specs(cfg: Config, data: Dataset, probe: Dataset | None = None) -> list[RunSpec]:
    """Expand the grid (methods x latent dims x seeds) into run specs, seed-major so that a partial
    grid already covers every learner. Learners without a latent_dim (pixels), or whose config
    fixes one, run once per seed."""
    out = []
    for seed in cfg.grid.seeds:
        for method in cfg.grid_methods():
            fixed = not registry.get(method).takes_latent_dim or "latent_dim" in cfg.method_overrides(method)
            for dim in [None] if fixed else cfg.grid.latent_dims:
                out.append(
                    spec(cfg, data, method, {} if dim is None else {"latent_dim": dim}, seed, probe=probe)
                )
    return out


def spec(
    cfg: Config,
    data: Dataset,
    method: str,
    extra: dict,
    seed: int,
    steer_only: bool = False,
    probe: Dataset | None = None,
) -> RunSpec:
    """Everything that determines a run's result (see RunSpec). `extra`: this run's own method
    settings (latent_dim, tuned values) on top of the config's layered tables; `steer_only`: a
    study's trial, measured by what steers the study (not an override: it names no row); `probe`:
    a transfer's probe dataset (bench/data/probes.py)."""
    sections = _sections(cfg, data, method, extra)
    protocol = _sections(
        cfg.protocol or cfg, data, method, {k: v for k, v in extra.items() if k == "latent_dim"}
    )
    overrides = _asked(sections, protocol)
    if steer_only:
        sections["eval"] = {**sections["eval"], "steer_only": True}
    dataset = {k: getattr(data, k) for k in ("name", "slug", "title", "provenance", "classes")}
    return RunSpec(
        dataset=dataset,
        **sections,
        method=method,
        seed=seed,
        overrides=overrides,
        source=registry.source(method),
        probe=probe.probe if probe else None,
    )


def _sections(cfg: Config, data: Dataset, method: str, extra: dict) -> dict:
    data_cfg = config.to_dict(cfg.data)
    data_cfg.pop("name")  # identified by content, not by name or path
    trainable = registry.get(method).trainable
    return {
        "data": {**data_cfg, "fingerprint": data.fingerprint},
        "method_config": config.to_dict(
            config.method_config(method, {**cfg.method_overrides(method), **extra})
        ),
        "train": config.to_dict(cfg.train_for(method)) if trainable else None,  # baselines: no budget
        "eval": config.to_dict(cfg.eval),
    }


def _asked(sections: dict, protocol: dict) -> dict:
    """The settings in which a run differs from its page's protocol: the learner's own keys bare
    (`loss`), the rest by section (`train.epochs`). The latent size is a column, not a name."""
    out = {}
    for section, values in sections.items():
        for k, v in (values or {}).items():
            if k != "latent_dim" and v != (protocol[section] or {}).get(k):
                out[k if section == "method_config" else f"{section}.{k}"] = v
    return out


def run_one(
    spec: RunSpec,
    data: Dataset,
    device: torch.device,
    purpose: Purpose = GRID,
    force: bool = False,
    on_epoch=None,
    tensorboard=None,
    probe: Dataset | None = None,
) -> dict:
    """Train (or load from cache), evaluate and store one run; returns its metrics. A transfer
    run (`spec.probe`) is evaluated on `probe`, the adapted probe dataset.

    A diverged run is stored with status 'diverged'; it does not stop the caller. A run that
    another live process has claimed returns status 'claimed' and is left to it. A run already
    stored gains `purpose` (why it was asked for again). With `tensorboard` (a folder), each
    epoch's loss terms are also written there as scalars.
    """
    if not force and store.is_done(spec.key):
        return _stored(spec.key, purpose)
    with claims.claim(spec.key) as mine:
        if not mine:
            return {"status": "claimed", "error": "another process is training this run"}
        if not force and store.is_done(spec.key):  # finished by another process since we looked
            return _stored(spec.key, purpose)
        metrics, artifacts = compute(spec, data, device, force, on_epoch, tensorboard, probe)
        record(spec, purpose, metrics, artifacts)
        return metrics.json()


def _stored(key: str, purpose: Purpose) -> dict:
    store.add_purpose(key, str(purpose))  # e.g. a tuned re-run that a trial already made
    return store.load_json(store.run_dir(key) / "metrics.json")


def compute(
    spec: RunSpec, data, device, force=False, on_epoch=None, tensorboard=None, probe=None
) -> tuple[Metrics, dict]:
    """Train (or load the cached checkpoint) and evaluate one run, touching only the local cache:
    returns (metrics, artifacts) for `record` to store. The worker side of a grid on Ray."""
    if (probe.probe if probe is not None else None) != spec.probe:
        wanted = spec.probe["dataset"]["name"] if spec.probe else "the training data"
        given = probe.probe["dataset"]["name"] if probe is not None else "the training data"
        raise BenchError(f"{labels.run(spec.json())}: it is measured on {wanted}, not on {given}")
    start = time.perf_counter()
    env.reset_peak(device)
    method = spec.method
    registry.ensure(method, spec.source)  # an outside learner, in a worker: loaded from its source
    torch.manual_seed(spec.seed)
    model = registry.create(method, config.method_config(method, spec.method_config), data.shape)
    model = model.to(device, memory_format=torch.channels_last)
    ckpt_path = store.cache_dir() / "ckpt" / f"{spec.train_key}.pt"
    train_info = None if force else load_checkpoint(model, ckpt_path)
    from_checkpoint = train_info is not None
    if not from_checkpoint:
        cfg = config.TrainConfig(**spec.train) if spec.train else config.TrainConfig()
        try:
            with _tensorboard(tensorboard, spec) as log:
                train_info = train.fit(
                    model,
                    data.x_train,
                    cfg,
                    spec.seed,
                    device,
                    on_epoch=on_epoch,
                    desc=f"{method} {labels.describe(spec.json())}",
                    y_train=data.y_train if model.needs_labels else None,  # only a declared reference's
                    log=log,
                    resume=store.cache_dir() / "resume" / f"{spec.train_key}.pt",  # a stopped run goes on
                )
        except train.Diverged as e:
            return Metrics("diverged", error=str(e), **env.record(device, start)), {}
        # a full disk must not cost the trained model's results: evaluate and store them anyway
        store.try_save_tensor(ckpt_path, {"state": model.state_dict(), "train": train_info}, "checkpoint")
    eval_start = time.perf_counter()
    latents = latents_path(spec)
    eval_cfg = config.EvalConfig(**spec.eval)
    what = labels.title(spec.json())
    try:
        measured, artifacts = evaluate.measure(
            model, probe or data, eval_cfg, spec.seed, device, latents, what
        )
    except train.Diverged as e:  # trained, but its latents are NaN: stored as diverged, the grid goes on
        if not model.trainable:  # nothing trained, nothing diverged: its code or weights give NaN
            raise BenchError(
                f"{labels.run(spec.json())}: {e} with nothing trained: check its weights and its input "
                f"normalisation (methods.{method}.mean/std, if it is an encoder); nothing is stored"
            ) from None
        return Metrics("diverged", error=str(e), **env.record(device, start)), {}
    metrics = Metrics(
        "ok",
        method=method,
        train=train_info,
        from_checkpoint=from_checkpoint,
        **measured,
        eval_time_s=time.perf_counter() - eval_start,
        **env.record(device, start),
    )
    return metrics, artifacts


def latents_path(spec: RunSpec) -> Path:
    """The cached latents of a run: of its training data, or of its probe dataset (a transfer)."""
    on_probe = f"-{digest(spec.probe)}" if spec.probe else ""
    return store.cache_dir() / "latents" / f"{spec.train_key}{on_probe}.pt"


def record(spec: RunSpec, purpose: Purpose, metrics: Metrics, artifacts: dict) -> None:
    """Store a computed run: config.json, its artifacts (`<name>.npz` each: the reconstruction
    grid, the test predictions, the latent map), and last metrics.json, whose presence marks the
    run finished. Every write is atomic."""
    run_dir = store.run_dir(spec.key)
    store.write_json(run_dir / "config.json", spec.record([purpose]))
    for name, arrays in sorted(artifacts.items()):
        store.atomic_save_npz(run_dir / f"{name}.npz", arrays)
    store.write_json(run_dir / "metrics.json", metrics.json())


def load_checkpoint(model, path: Path) -> dict | None:
    """Load cached weights into `model`; returns their train info, or None to train afresh (no
    cache, or one that does not fit this model or holds weights that are not finite: deleted with
    a warning)."""
    cached = store.load_tensor(path, _checkpoint_problem)
    if cached is None:
        return None
    try:
        model.load_state_dict(cached["state"])
        return cached["train"]
    except (KeyError, TypeError, RuntimeError) as e:
        store.warn(f"checkpoint {path} does not fit this model ({type(e).__name__}); retraining")
        path.unlink(missing_ok=True)
        return None


def _checkpoint_problem(ckpt) -> str | None:
    if not isinstance(ckpt, dict) or not all(isinstance(ckpt.get(k), dict) for k in ("state", "train")):
        return "is not a checkpoint (weights and a training record)"
    if not all(torch.is_tensor(t) for t in ckpt["state"].values()):
        return "holds weights that are not tensors"
    if not all(torch.isfinite(t).all() for t in ckpt["state"].values() if t.is_floating_point()):
        return "holds weights that are not finite (NaN or inf)"
    return None


@contextlib.contextmanager
def _tensorboard(folder, spec: RunSpec):
    """A `log(epoch, terms)` that writes TensorBoard scalars under folder/<dataset>/<run>, or None."""
    if not folder:
        yield None
        return
    from torch.utils.tensorboard import SummaryWriter

    dim = spec.method_config.get("latent_dim", "-")
    name = f"{labels.name(spec.json())} d={dim} seed={spec.seed} {spec.key[:8]}"
    safe = re.sub(r"[^A-Za-z0-9._=,()+-]+", "_", name).replace("..", "_").strip("._")  # one folder in DIR
    writer = SummaryWriter(str(Path(folder) / spec.dataset["slug"] / safe))
    try:
        yield lambda epoch, terms: [writer.add_scalar(f"train/{k}", v, epoch + 1) for k, v in terms.items()]
    finally:
        writer.close()
