"""Configuration flows one way: dataclass defaults <- one TOML file <- repeated `--set a.b=c`.

Each section owns its defaults. Unknown keys are errors that list the valid ones, and values are
coerced to the type of the field they land in, so `--set train.epochs=5` gives an int.

Learner settings come in three layers, so a new learner gets its neighbours' sizes with no edit:
`[methods.all]` (e.g. the network widths: each key applies to every learner whose Config has
it), then `[methods.<family>]` (e.g. `views`: the augmentations of every view-based learner),
then `[methods.<name>]`. Budgets layer the same way: `[train]`, `[train.<family>]`,
`[train.<name>]`. The file's shared tables are the *protocol* of a page; a run records what it
was asked beyond that protocol (its learner's own tables, `--set` values, tuned parameters) as
its `overrides`, and that is what names its row.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from bench import BenchError, evaluators
from bench.checks import (
    MAX_CLASS,
    above,
    any_value,
    at_least,
    coerce,
    flag,
    names,
    replace,
    values_within,
    within,
)


@dataclass
class DataConfig:
    name: str = any_value("digits", "a dataset name (`python -m bench list`)")
    # seeded slice of train that picks every evaluator hyperparameter
    val_fraction: float = within(0, 1, 0.1, open_lo=True, open_hi=True)
    val_seed: int = at_least(0, 0)  # fixed across runs, so every learner is judged on the same slice
    train_limit: int = at_least(0, 0)  # keep only this many training images (0 = all): quick runs and tests
    # keep only these classes (indices into the dataset's classes; empty = all), in train and test,
    # relabelled 0..k-1 in this order: e.g. train on CIFAR-10's 0-4, probe on its 5-9 (--classes)
    classes: list[int] = values_within(0, MAX_CLASS, [], "class indices, each once; empty: every class")


@dataclass
class TrainConfig:
    epochs: int = at_least(1, 30)
    batch_size: int = at_least(2, 128)  # batch statistics (BatchNorm, contrastive losses) need two
    lr: float = above(0, 2e-3)  # AdamW peak learning rate, reached after warmup, then cosine decay to 0
    weight_decay: float = at_least(0, 1e-4)
    warmup_epochs: float = at_least(0, 1.0)
    grad_clip: float = at_least(0, 5.0)  # max global grad norm; 0 disables it
    compile: bool = flag(False)  # torch.compile the training step (--compile); may change the last bits
    bf16: bool = flag(False)  # bf16 autocast on a CPU too (on CUDA it is always on)


# The `[eval]` section: every registered evaluator's own fields (bench/evaluators/, each with its
# range), and `steer_only`: only what a study's trials are scored by (the evaluators that steer:
# the linear probe and, for a learner that reconstructs, the validation reconstruction). `tune`
# sets it on its trials, and the tables leave such runs out.
EvalConfig = dataclasses.make_dataclass(
    "EvalConfig",
    [*evaluators.config_fields(), ("steer_only", bool, flag(False))],
    namespace={"__module__": __name__},
)


@dataclass
class GridConfig:
    methods: list[str] | None = names(None)  # None: every registered learner
    latent_dims: list[int] = within(1, 2**31 - 1, [16, 64], each=True)  # a torch size; memory: per run
    seeds: list[int] = within(0, 2**31 - 1, [0, 1, 2], each=True)  # what every RNG here takes


@dataclass
class ProbeConfig:
    """Transfer (`--probe-dataset`): the learner trains on `[data]`, the evaluator probes its frozen
    latents of this dataset's images (adapted to the training geometry) with this dataset's labels."""

    dataset: str = any_value("", "a dataset name, empty: probe on the training dataset")
    classes: list[int] = values_within(0, MAX_CLASS, [], "of the probe dataset; empty: every class")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    # "all", a family or a learner -> overrides of learners' Configs (see `method_overrides`)
    methods: dict[str, dict] = field(default_factory=dict)
    # a family or a learner -> its own training budget, from [train.<name>] tables
    train_overrides: dict[str, dict] = field(default_factory=dict)
    # the same file without its learner-named tables and without --set: what a run's recorded
    # overrides are measured against
    protocol: Config | None = field(default=None, repr=False, compare=False)

    def grid_methods(self) -> list[str]:
        from bench import registry

        return registry.names() if self.grid.methods is None else self.grid.methods

    def method_overrides(self, method: str) -> dict:
        """[methods.all] < [methods.<family>] < [methods.<method>], shared keys kept only where
        the learner's Config has them with a type the value fits (`channels = [32, 64]` is every
        network's stages, not an encoder's input channels)."""
        from bench import registry

        cls = registry.get(method)
        out = {k: v for k, v in self.methods.get("all", {}).items() if _takes(method, k, v)}
        if cls.family:
            out.update({k: v for k, v in self.methods.get(cls.family, {}).items() if _takes(method, k, v)})
        out.update(self.methods.get(method, {}))
        return out

    def train_for(self, method: str) -> TrainConfig:
        from bench import registry

        family = registry.get(method).family
        values = {**self.train_overrides.get(family, {}), **self.train_overrides.get(method, {})}
        return replace(self.train, values, f"train.{method}")


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Build the resolved config: defaults, then the TOML file at `path`, then `key=value` overrides."""
    raw = _read(path)
    grid = raw.get("grid")
    if isinstance(grid, dict) and isinstance(grid.get("methods"), list):  # outside learners load first
        from bench import registry

        grid["methods"] = registry.resolve_all(str(m) for m in grid["methods"])
    cfg = _build(copy.deepcopy(raw), overrides)
    cfg.protocol = _build(_shared_only(raw), ())
    return cfg


def with_values(cfg: Config, values: dict) -> Config:
    """A copy of `cfg` with typed overrides in the `--set` grammar: `train.epochs` (a shared
    section), `train.<learner>.lr` (a learner's or family's budget), `methods.<learner>.loss`;
    each checked as `--set` checks it. How a study's point and a trial budget reach a config."""
    out = copy.deepcopy(cfg)
    out.protocol = cfg.protocol or cfg  # what the run's recorded overrides are measured against
    for key, value in values.items():
        section, *table, name = key.split(".")
        if section in ("methods", "train") and len(table) == 1:
            target = out.methods if section == "methods" else out.train_overrides
            target[table[0]] = {**target.get(table[0], {}), name: value}
            if section == "methods":
                _method_overrides({table[0]: target[table[0]]})
            else:
                _train_overrides({table[0]: dict(target[table[0]])})
        elif not table and section in _fields(Config) and section != "methods":
            setattr(out, section, replace(getattr(out, section), {name: value}, section))
        else:
            raise BenchError(f"{key}: expected section.key, train.<learner>.key or methods.<learner>.key")
    return out


def _read(path) -> dict:
    if path is None:
        return {}
    if not (path := Path(path)).is_file():
        raise BenchError(f"config file {path} not found: pass an existing TOML file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise BenchError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"config file {path} is not valid TOML ({e})") from None


def _shared_only(raw: dict) -> dict:
    """`raw` without the tables named after one learner: the protocol shared by every learner."""
    from bench import registry

    out = copy.deepcopy(raw)
    for section in ("methods", "train"):
        if isinstance(out.get(section), dict):
            for name in registry.names():
                out[section].pop(name, None)
    return out


def _build(raw: dict, overrides) -> Config:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
        _set_path(raw, key.strip().split("."), value.strip())
    cfg = Config()
    for section, values in raw.items():
        if section == "methods":
            cfg.methods = _method_overrides(values)
            continue
        if section == "train" and isinstance(values, dict):
            values = dict(values)
            cfg.train_overrides = _train_overrides(values)  # takes the [train.<method>] tables out
        current = getattr(cfg, section, None) if section in _fields(Config) else None
        if current is None:
            raise BenchError(f"unknown config section {section!r}: valid are {sorted(_fields(Config))}")
        if not isinstance(values, dict):
            raise BenchError(f"[{section}] is a table, not a value: set a key: --set {section}.KEY=VALUE")
        setattr(cfg, section, replace(current, values, section))
    return cfg


def method_config(name: str, overrides: dict):
    """The resolved `Config` of method `name` with `overrides` applied (typed and checked)."""
    from bench import registry

    return replace(registry.get(name).Config(), overrides, f"methods.{name}")


def to_dict(obj) -> dict:
    """Plain JSON-ready dict of a (nested) dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def _method_overrides(values) -> dict[str, dict]:
    """Check every [methods.<selector>] table now, not mid-grid: unknown names, keys and types."""
    from bench import registry

    if not isinstance(values, dict):
        raise BenchError("[methods] must hold one table per learner, family or 'all', e.g. [methods.ae]")
    for name, overrides in values.items():
        if not isinstance(overrides, dict):
            raise BenchError(f"methods.{name} must be a table of options, got {overrides!r}")
        members = _selected(name)
        if members is None:
            method_config(name, overrides)  # one learner: every key must be its own
            continue
        for key, value in overrides.items():
            having = [m for m in members if key in _fields(registry.get(m).Config)]
            if not having:
                valid = sorted(set().union(*(_fields(registry.get(m).Config) for m in members)))
                raise BenchError(
                    f"unknown key methods.{name}.{key}: no learner there has it; valid keys are {valid}"
                )
            taking = [m for m in having if _takes(m, key, value)]
            for m in taking or having[:1]:  # checked against each learner that will take it
                try:
                    method_config(m, {key: value})
                except BenchError as e:
                    raise BenchError(str(e).replace(f"methods.{m}.", f"methods.{name}.", 1)) from None
    return values


def _takes(method: str, key: str, value) -> bool:
    """Whether a shared table's `key = value` reaches learner `method`: its Config has the field,
    and the value has the field's type (its range is checked where it is taken)."""
    from bench import registry

    hints = typing.get_type_hints(registry.get(method).Config)
    if key not in hints:
        return False
    try:
        coerce(value, hints[key], key)
    except BenchError:
        return False
    return True


def _selected(name: str) -> list[str] | None:
    """The learners a shared table name selects ('all' or a family); None for one learner's name."""
    from bench import registry

    if name == "all":
        return registry.names()
    if name in registry.families():
        return registry.families()[name]
    registry.get(name)  # unknown names fail here, listing the known learners
    return None


def _train_overrides(values: dict) -> dict[str, dict]:
    out = {}
    for name in [k for k, v in values.items() if isinstance(v, dict)]:
        _selected(name)
        out[name] = values.pop(name)
        replace(TrainConfig(), out[name], f"train.{name}")  # unknown keys and bad types fail now
    return out


def _set_path(raw: dict, keys: list[str], value: str) -> None:
    for k in keys[:-1]:
        raw = raw.setdefault(k, {})
        if not isinstance(raw, dict):
            raise BenchError(f"--set {'.'.join(keys)}: {k} is not a section")
    raw[keys[-1]] = value


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
