"""What a training verb (`run`, `tune`, `compare`) is pointed at, typed: the config and its
overrides, the grid's axes, the data and the device. The one place where `--config`, `--set`,
`--dataset`, `--methods`, `--latent-dims` and `--seeds` become a resolved Config.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import config, data, env, registry


@dataclass(frozen=True)
class Setup:
    config: str | None = None  # a TOML file (configs/); None: the dataclass defaults
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

    def resolve(self) -> config.Config:
        """The config: defaults <- file <- --set, then the grid's axes and the dataset, all
        checked (unknown learners included) before anything is loaded or trained."""
        cfg = config.load(self.config, [*self.sets, *["train.compile=true"] * self.compile])
        axes = {"methods": self.methods, "latent_dims": self.latent_dims, "seeds": self.seeds}
        cfg.grid = config.replace(cfg.grid, {k: list(v) for k, v in axes.items() if v is not None}, "grid")
        if self.dataset:
            cfg.data.name = self.dataset
        for name in cfg.grid_methods():
            registry.get(name)
        return cfg

    def load(self, cfg: config.Config) -> data.Dataset:
        return data.load(cfg.data, self.data_dir, self.offline)

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
        out += ["--data-dir", self.data_dir] if self.data_dir else []
        out += ["--offline"] * self.offline + ["--compile"] * self.compile + ["--device", self.device]
        return out + (["--tensorboard", self.tensorboard] if self.tensorboard else [])
