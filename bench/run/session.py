"""What a training verb (`run`, `tune`, `compare`) is pointed at, typed: the config and its
overrides, the grid's axes, the data and the device. The one place where `--config`, `--set`,
`--dataset`, `--methods`, `--latent-dims` and `--seeds` become a resolved Config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import CHECKOUT, CONFIG_DIR, BenchError, config, data, registry, store
from bench.data import oodsets
from bench.run import env

# Each dataset's protocol: the config its committed page was made with, used when no --config is
# given (`--config none` asks for the dataclass defaults), so the first command a reader tries
# reproduces the rows they just read.
DATASET_CONFIGS = {
    "digits": "default.toml",
    "mnist": "mnist.toml",
    "cifar10": "cifar10.toml",
    "cifar10-jpeg": "cifar10.toml",
}
CONFIGS = ("digits", "mnist", "cifar10")  # the datasets a config was made for, as a line names them


@dataclass(frozen=True)
class Setup:
    config: str | None = None  # a TOML file; None: the dataset's own (DATASET_CONFIGS); "none": none
    sets: tuple[str, ...] = ()  # `section.key=value` overrides, in the order given
    dataset: str | None = None  # None: the config's data.name
    methods: tuple[str, ...] | None = None  # the grid's axes; None: the config's
    latent_dims: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    data_dir: str | None = None
    offline: bool = False
    device: str = "auto"
    compile: bool = False  # = --set train.compile=true
    tensorboard: str | None = None  # also write each run's per-epoch loss terms there
    classes: tuple[int, ...] | None = None  # = data.classes: train on these classes only
    probe_dataset: str | None = None  # = probe.dataset: transfer, probed on this dataset
    probe_classes: tuple[int, ...] | None = None  # = probe.classes

    def config_file(self) -> Path | None:
        """The TOML file this setup reads: the one given, else its dataset's protocol, if any."""
        if self.config == "none":
            return None
        if self.config:
            return Path(self.config)
        name = DATASET_CONFIGS.get(self.dataset or config.DataConfig().name)
        return CONFIG_DIR / name if name else None

    def config_name(self) -> str:
        """How a page names the config: `configs/default.toml`, a path as given, or the defaults."""
        path = self.config_file()
        if path is None:
            return "the built-in defaults"
        return str(path) if self.config else f"configs/{path.name}"

    def resolve(self) -> config.Config:
        """The config: defaults <- file <- --set, then the grid's axes and the dataset, all
        checked (unknown learners included) before anything is loaded or trained. Says which
        file it read, and when the runs go into the committed store."""
        if CHECKOUT and store.results_dir().resolve() == (CHECKOUT / "results").resolve():
            print("store: results/ (the committed store; BENCH_RESULTS_DIR=DIR writes elsewhere)")
        path = self.config_file()
        if path is None:
            print("config: the built-in defaults (no file)")
        elif self.config:
            print(f"config: {path}")
        else:
            print(
                f"config: configs/{path.name} (the dataset's protocol; --config none: the built-in defaults)"
            )
        methods = None if self.methods is None else registry.resolve_all(self.methods)  # files, modules
        cfg = config.load(path, [*self.sets, *["train.compile=true"] * self.compile])
        axes = {"methods": methods, "latent_dims": self.latent_dims, "seeds": self.seeds}
        cfg.grid = config.replace(cfg.grid, {k: list(v) for k, v in axes.items() if v is not None}, "grid")
        if self.dataset:
            cfg.data.name = self.dataset
        if self.classes:
            cfg.data = config.replace(cfg.data, {"classes": list(self.classes)}, "data")
        probe = {"dataset": self.probe_dataset, "classes": list(self.probe_classes or [])}
        if self.probe_dataset or self.probe_classes:
            cfg.probe = config.replace(cfg.probe, {k: v for k, v in probe.items() if v}, "probe")
        if cfg.probe.classes and not cfg.probe.dataset:
            cfg.probe.dataset = cfg.data.name  # one dataset split by class: probed on its other classes
        for name in cfg.grid_methods():
            registry.get(name)
        if (slug := data.slug(cfg.data.name)) not in DATASET_CONFIGS:
            made = "their defaults" + (f" and {self.config_name()}" if path is not None else "")
            print(
                f"settings: {slug} has no config of its own (configs/ holds {', '.join(CONFIGS)}): the "
                f"learners run with {made}, chosen for another dataset; `python -m bench compare "
                f"--dataset {cfg.data.name} --latent-dim {cfg.grid.latent_dims[0]}` tunes every learner "
                "at equal budget on it"
            )
        return cfg

    def load(self, cfg: config.Config) -> data.Dataset:
        """The run's dataset, with the OOD images its `[eval]` asks for from data (oodsets.py)."""
        ds = data.load(cfg.data, self.data_dir, self.offline)
        if cfg.eval.steer_only or not oodsets.wanted(cfg.eval.ood_sources):
            return ds
        if cfg.probe.dataset:
            raise BenchError(
                "eval.ood_sources: sources from data (another dataset, held-out) are measured on in-domain "
                "runs; a transfer run takes the sources made from its probe images"
            )
        return oodsets.attach(cfg.eval.ood_sources, cfg.data, ds, self.data_dir, self.offline)

    def pick_device(self):
        return env.pick_device(self.device)

    def argv(self, dims: str = "--latent-dims") -> list[str]:
        """The flags that give this setup, for a child process of the same command (`dims`: the
        verb's latent-size flag, `--latent-dim` for one size)."""
        out = [*(["--config", self.config] if self.config else [])]
        if self.latent_dims:
            out += [
                dims,
                ",".join(map(str, self.latent_dims[:1] if dims == "--latent-dim" else self.latent_dims)),
            ]
        out += [a for s in self.sets for a in ("--set", s)]
        out += ["--dataset", self.dataset] if self.dataset else []
        out += ["--seeds", ",".join(map(str, self.seeds))] if self.seeds else []
        out += ["--classes", ",".join(map(str, self.classes))] if self.classes else []
        out += ["--probe-dataset", self.probe_dataset] if self.probe_dataset else []
        out += ["--probe-classes", ",".join(map(str, self.probe_classes))] if self.probe_classes else []
        out += ["--data-dir", self.data_dir] if self.data_dir else []
        out += ["--offline"] * self.offline + ["--compile"] * self.compile + ["--device", self.device]
        return out + (["--tensorboard", self.tensorboard] if self.tensorboard else [])
