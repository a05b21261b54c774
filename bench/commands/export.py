"""`bench export RUN`: a run's latents handed to other tools, or its encoder.

It writes one .npz: z_<split> (N, D) float32 raw latents and y_<split> labels for train, val and
test, the class names, the dataset's provenance, the run key and the run's config as JSON. numpy
reads it anywhere (`np.load(path)`), pandas through `pd.DataFrame(f["z_train"])`. With
`--encoder PATH` it writes the run's encoder as TorchScript instead.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from bench import BenchError, cli, config, data, registry, store
from bench.data import probes
from bench.report import card
from bench.run import evaluate, runner, verify
from bench.store import output
from bench.store.spec import EXPORT, RunSpec

SPLITS = ("train", "val", "test")


def latents(run: dict, ds, device, retrain: bool, probe=None) -> dict[str, torch.Tensor]:
    """The run's raw latents per split (a transfer's: of its probe dataset `probe`): from the
    latent cache, else encoded by its cached checkpoint, else (a baseline, or with `retrain`) by
    re-making the run: the cache is local to the machine that trained it and is not part of the
    repository."""
    spec = RunSpec.of(run["config"])
    cached = store.load_tensor(runner.latents_path(spec), evaluate.fits(probe or ds))
    if cached is not None:
        return cached
    method = spec.method
    model = registry.create(method, config.method_config(method, spec.method_config), ds.shape)
    if runner.load_checkpoint(model, store.cache_dir() / "ckpt" / f"{spec.train_key}.pt") is not None:
        model = model.to(device, memory_format=torch.channels_last)
        return {s: evaluate.extract(model, getattr(probe or ds, f"x_{s}"), device) for s in SPLITS}
    if registry.get(method).trainable and not retrain:
        seconds = run["metrics"].get("wall_time_s") or 0
        raise BenchError(
            f"run {run['key']}: no cached latents or checkpoint on this machine (the cache is not part "
            f"of the repository): add --retrain to retrain it (~{seconds:.0f} s when it was stored)"
        )
    # re-make the run in a scratch store, keeping this machine's cache: the latents land there
    with verify.scratch_store(store.cache_dir() / "export-runs", own_cache=False):
        runner.run_one(spec, ds, device, EXPORT, force=True, probe=probe)
    z = store.load_tensor(runner.latents_path(spec), evaluate.fits(probe or ds))
    if z is None:
        raise BenchError(f"run {run['key']}: the latents could not be cached (see the warning above)")
    return z


class _Encode(torch.nn.Module):
    """A learner's `encode` as a module's forward: what a TorchScript trace records."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode(x)


def frozen_model(run: dict, ds, device, retrain: bool):
    """The run's encoder as it was evaluated: its cached checkpoint's weights, a baseline rebuilt
    from its seed (and fitted, PCA), or (with `retrain`) a re-made run's checkpoint."""
    spec = RunSpec.of(run["config"])
    method = spec.method
    registry.ensure(method, spec.source)
    ckpt_path = store.cache_dir() / "ckpt" / f"{spec.train_key}.pt"
    torch.manual_seed(spec.seed)  # as the run built it: a baseline's random weights come from here
    model = registry.create(method, config.method_config(method, spec.method_config), ds.shape)
    if runner.load_checkpoint(model, ckpt_path) is not None:
        return model.eval()
    if not registry.get(method).trainable:
        model.prepare(ds.x_train)
        return model.eval()
    if not retrain:
        raise BenchError(
            f"run {run['key']}: no cached checkpoint on this machine (the cache is not part of the "
            "repository): add --retrain to retrain it"
        )
    with verify.scratch_store(store.cache_dir() / "export-runs", own_cache=False):
        in_domain = dataclasses.replace(spec, probe=None)  # a transfer trains as its in-domain run
        runner.run_one(in_domain, ds, device, EXPORT, force=True)  # its checkpoint lands in this cache
    if runner.load_checkpoint(model, ckpt_path) is None:
        raise BenchError(f"run {run['key']}: the checkpoint could not be cached (see the warning above)")
    return model.eval()


def write_encoder(path: Path, run: dict, ds, model) -> None:
    """The run's encoder as a TorchScript file: [0, 1] images of the run's geometry in, latents
    out, its input normalisation inside; `--methods torchscript:PATH` evaluates it again."""
    example = ds.x_test[:8].float().div(255).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), warnings.catch_warnings():  # TorchScript is deprecated, not gone
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(_Encode(model.cpu()).eval(), example, check_trace=False)
    if not torch.equal(traced(example), model.encode(example)):
        raise BenchError(
            f"run {run['key']}: the traced encoder does not reproduce its latents; nothing written"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        output.write(path, lambda tmp: torch.jit.save(traced, tmp))


def arrays(run: dict, ds, z: dict) -> dict[str, np.ndarray]:
    """What `bench export` writes: raw latents and labels per split, classes, provenance, key, config."""
    c = run["config"]
    out = {f"z_{s}": z[s].numpy().astype(np.float32) for s in SPLITS}
    out.update({f"y_{s}": getattr(ds, f"y_{s}").numpy() for s in SPLITS})
    out.update(
        classes=np.array(ds.classes),
        provenance=np.array(c["dataset"]["provenance"]),
        run_key=np.array(run["key"]),
        config=np.array(json.dumps(c, sort_keys=True)),
        protocol=np.array(json.dumps(card.of_run(run))),
    )
    for s in SPLITS:
        if len(out[f"z_{s}"]) != len(out[f"y_{s}"]):
            raise BenchError(f"run {run['key']}: {s} latents and labels differ in length; nothing written")
    return out


def finished(prefix: str) -> dict:
    """The stored run a key or unique prefix names, which must have finished with status ok."""
    key = store.find(prefix)
    runs = [r for r in store.load_runs() if r["key"] == key]
    if not runs or runs[0]["metrics"].get("status") != "ok":
        raise BenchError(f"run {key} is not a finished run with status ok: nothing to export")
    return runs[0]


def add(p) -> None:
    p.add_argument("key", help="run key or a unique prefix of it")
    p.add_argument("--out", metavar="PATH", help="default: <run key>.npz in the current folder")
    p.add_argument(
        "--encoder",
        metavar="PATH",
        help="write the run's encoder as TorchScript instead (evaluate it with --methods torchscript:PATH)",
    )
    p.add_argument(
        "--retrain", action="store_true", help="retrain the run if this machine has no cache of it"
    )
    cli.data_args(p)


def main(args, argv) -> None:
    export(args.key, args.out, args.retrain, args.data_dir, args.offline, args.device, args.encoder)


def export(
    prefix: str,
    out: str | None,
    retrain: bool,
    data_dir,
    offline: bool,
    device: str,
    encoder: str | None = None,
) -> None:
    """The run's latents and labels as one .npz (default <key>.npz), or with
    `encoder` its encoder as a TorchScript file."""
    from bench.run import env

    run = finished(prefix)
    key = run["key"]
    ds = data.for_run(run["config"], data_dir, offline)
    if encoder:
        write_encoder(Path(encoder), run, ds, frozen_model(run, ds, env.pick_device(device), retrain))
        print(
            f"wrote {encoder}: the encoder of run {key} as TorchScript; benchmark it with "
            f"--methods torchscript:{encoder}"
        )
        return
    probe = probes.load_for(run["config"], data_dir, offline, ds)  # a transfer: its probe data
    z = latents(run, ds, env.pick_device(device), retrain, probe)
    path = Path(out or f"{key}.npz")
    # a file the user named: through a link, never over a device (bench/store/output.py)
    store.atomic_save_npz(output.target(path), arrays(run, probe or ds, z), compress=False)
    sizes = ", ".join(f"{s} {tuple(z[s].shape)}" for s in SPLITS)
    print(f"wrote {path}: latents {sizes}, labels, classes, provenance, run key, config")
