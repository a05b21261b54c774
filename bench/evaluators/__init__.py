"""Evaluators, one file each, registered the way methods/ registers learners: every module here
is imported, and each `@register`s one `Evaluator` under its file name. Adding a probe or a
measure is adding a file: its config fields join the `[eval]` section, its columns join the
tables, `bench runs`, `bench verify` and the progress lines, and stored runs that predate it
show `-` for it (their keys do not change: see bench/store/compat.py).

An evaluator sees frozen latents (and, where it declares `needs_model`, the frozen model) through
a `Context`, never the training loop; it returns the entries it adds to the run's metrics.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Column:
    """One number an evaluator adds to a run, as the tables, `bench runs` and `verify` show it.

    `get(metrics)` reads it from a run's metrics.json (None where the run did not measure it);
    `header`: its main-table heading (None: CSV only); `scale`/`digits`: how a cell prints;
    `spread`: the cell shows ± std over seeds; `ablation`: also a column of the ablation table;
    `compare`: its heading in the tuned-at-equal-budget table; `unit`: compared by `bench verify`
    in this unit ("points" share `--tolerance`, others have their own); `progress`: printed in
    the line of a finished run.
    """

    key: str
    get: Callable[[dict], Any]
    header: str | None = None
    scale: float = 1.0
    digits: int = 2
    spread: bool = True
    ablation: bool = False
    compare: str | None = None
    unit: str | None = None
    progress: bool = False
    csv: bool = True


def accuracy(entry: str, which: str = "test_acc") -> Callable[[dict], float | None]:
    """A getter of `metrics[entry][which]`, None where the run has no such entry."""
    return lambda m: (m.get(entry) or {}).get(which) if isinstance(m.get(entry), dict) else None


@dataclass(frozen=True)
class Card:
    """One line of a protocol card: what an evaluator reports (`measure`), what it chooses
    (`chooses`, "nothing" where it fits nothing) over which declared range (`over`), on which split
    (`on`), which split scores it (`scored`), and how many times a run reads the test split for it
    (`reads`): the audit in bench/run/evaluate.py refuses a run whose evaluator read test more."""

    measure: str
    chooses: str
    over: str
    on: str
    scored: str
    reads: int


@dataclass(frozen=True)
class Held:
    """The test split, as `Context.test` hands it out: standardised latents, raw ones, labels."""

    z: torch.Tensor
    z_raw: torch.Tensor
    y: torch.Tensor


@dataclass
class Context:
    """What an evaluator gets: standardised latents `z[split]` (N, D), the raw ones `z_raw`,
    labels `y[split]` of the training and validation splits, the resolved `[eval]` config, the
    run's seed, and for evaluators that declare `needs_model` the frozen model, its data and
    device. `shared` holds what several evaluators reuse (the probe's preconditioner);
    `artifacts` what the run stores beside its metrics (the reconstruction grid).

    The test split is held back: an evaluator reads it through `test(read)` (latents) or
    `test_images(read)` (images, for the model), once per number it reports, each read named;
    `reads` records them for the audit. Dicts given with a "test" entry are taken apart here."""

    z: dict[str, torch.Tensor]
    z_raw: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    num_classes: int
    cfg: Any
    seed: int
    steer_only: bool = False
    model: Any = None
    data: Any = None
    device: Any = None
    shared: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    reads: dict[str, list[str]] = field(default_factory=dict)  # evaluator -> the test reads it made
    reader: str = ""  # the evaluator running now
    keep: Callable | None = None  # keep(name, make, check): a file of the project's cache (run/evaluate.py)
    _held: Held | None = field(default=None, repr=False)

    def __post_init__(self):
        if "test" in self.y:
            z_raw = self.z_raw.get("test", self.z.get("test"))
            self._held = Held(self.z["test"], z_raw, self.y["test"])
            self.z, self.z_raw, self.y = (
                {k: v for k, v in d.items() if k != "test"} for d in (self.z, self.z_raw, self.y)
            )

    def test(self, read: str) -> Held:
        """The test split's latents and labels, for the number named `read` (recorded)."""
        if self._held is None:
            raise RuntimeError("this context holds no test split")
        self.reads.setdefault(self.reader, []).append(read)
        return self._held

    def kept(self, name: str, make: Callable[[], Any], check: Callable[[Any], str | None]):
        """What `make()` returns, kept under `name` in the project's cache across runs and
        processes where the run gave a cache (a file that `check` finds wrong is made again)."""
        return make() if self.keep is None else self.keep(name, make, check)

    def test_images(self, read: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The test split's uint8 images and labels, for the model (recorded as a read)."""
        self.reads.setdefault(self.reader, []).append(read)
        return self.data.x_test, self.data.y_test


@dataclass(frozen=True)
class Plan:
    """What a run will hand its evaluators, known before it trains (so `bench run` refuses what
    cannot be measured before any run folder exists): images per split, the training split's
    images per class, the latent width, the image shape (C, H, W), whether the learner
    reconstructs, and whether only the steering evaluators run (a study's trial)."""

    n: dict[str, int]
    per_class: tuple[int, ...]
    dim: int
    image: tuple[int, int, int]
    reconstructs: bool = False
    steer_only: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.per_class)

    def latents_bytes(self) -> int:
        """The float32 latents of every split, raw and standardised: what every evaluator shares."""
        return 2 * 4 * sum(self.n.values()) * self.dim


class Evaluator:
    """The contract: `name` (= file name = metrics entry), `Config` (its `[eval]` fields, with
    ranges, see bench/checks.py), `columns`, and `__call__(ctx) -> dict` of metrics entries.

    `order` places it among the others (tables, computation); `steers`: it also runs on a study's
    trials (`eval.steer_only`), which are scored by what steers the study; `needs_model`: it runs
    the frozen model (reconstruction) rather than only reading latents. `version` is recorded
    with every run; runs measured by a version below `stale_below` (0 = never measured) are
    marked stale in the tables and chosen by `bench verify --stale`: raise it when a change makes
    the old numbers wrong, not merely different (or override `stale` where that depends on the
    run); `stale_note` says what was wrong, in the tables' ‡ footnote. `note`: a footnote under
    the main table.
    """

    name: str = ""
    order: int = 100
    version: int = 1
    stale_below: int = 0
    steers: bool = False
    needs_model: bool = False
    note: str | None = None
    stale_note: str = ""
    columns: tuple[Column, ...] = ()

    @dataclass
    class Config:
        pass

    def __call__(self, ctx: Context) -> dict:
        raise NotImplementedError

    def stale(self, version: int, metrics: dict) -> bool:
        """Whether the numbers this evaluator gave a finished run, measured by `version` (0: not
        measured), are wrong by today's standard."""
        return version < self.stale_below

    def page_note(self, summary, runs) -> str | None:
        """A footnote under a page's main table that depends on its rows (`summary`: one row per
        learner and latent size; `runs`: one per run, tables.frame), or None."""
        return None

    def card(self, cfg) -> list[Card]:
        """Its lines of the protocol card under `[eval]` config `cfg`: what it chooses on which
        split, and how often it reads test (an evaluator that reads no test split: none)."""
        return []

    def refuse(self, cfg, plan: Plan) -> str | None:
        """Before any training: why this `[eval]` config cannot measure a run of `plan` (one
        line naming the field), or None."""
        return None

    def memory(self, cfg, plan: Plan) -> tuple[int, str]:
        """Before any training: the bytes it holds at its peak beyond the shared latents, and
        what they are (the message when they do not fit)."""
        return 0, ""

    def cells(self, metrics: dict) -> dict:
        """Its values in a run's table row (`bench runs`, the summaries), read from its metrics."""
        return {c.key: c.get(metrics) for c in self.columns}

    def extra_csv(self, columns) -> list[str]:
        """Row columns beyond `columns` that `bench runs` prints (named by the data, e.g. one per
        label fraction), chosen from the row's `columns`."""
        return []


_EVALUATORS: dict[str, Evaluator] = {}
_LOADED = False


def register(name: str):
    """Class decorator: adds an evaluator under `name`, its file name in bench/evaluators/; a
    duplicate name, or a config field another evaluator already declares, is a programming error."""

    def wrap(cls):
        if name in _EVALUATORS:
            raise ValueError(
                f"evaluator {name!r} is already registered by {type(_EVALUATORS[name]).__module__}"
            )
        module = cls.__module__.rsplit(".", 1)[-1]
        if cls.__module__.startswith(__name__ + ".") and module != name:
            raise ValueError(f"evaluator {name!r} is registered in {module}.py: name the file {name}.py")
        mine = {f.name for f in dataclasses.fields(cls.Config)}
        for other in _EVALUATORS.values():
            if clash := mine & {f.name for f in dataclasses.fields(other.Config)}:
                raise ValueError(f"evaluator {name!r}: eval.{min(clash)} is already {other.name!r}'s")
        cls.name = name
        _EVALUATORS[name] = cls()
        return cls

    return wrap


def listed(values) -> str:
    """A declared range as a card prints it: `{1e-06, 0.0001}`."""
    return "{" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + "}"


def all() -> list[Evaluator]:  # noqa: A001  (the registry's whole content, in order)
    _load()
    return sorted(_EVALUATORS.values(), key=lambda e: (e.order, e.name))


def get(name: str) -> Evaluator | None:
    """The evaluator registered under `name`, or None (its file removed or broken)."""
    _load()
    return _EVALUATORS.get(name)


def columns(where: str | None = None) -> list[Column]:
    """Every evaluator's columns in order; `where`: only those with that attribute set
    ("header", "ablation", "compare", "unit", "progress", "csv")."""
    cols = [c for e in all() for c in e.columns]
    return [c for c in cols if where is None or getattr(c, where)]


def config_fields() -> list[tuple[str, type, dataclasses.Field]]:
    """(name, type, field) of every evaluator's config fields, for the `[eval]` section."""
    import typing

    out = []
    for e in all():
        hints = typing.get_type_hints(e.Config)
        out += [(f.name, hints[f.name], _copy(f)) for f in dataclasses.fields(e.Config)]
    return out


def _copy(f: dataclasses.Field) -> dataclasses.Field:
    return dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)


def progress(metrics: dict) -> str:
    """`linear 97.50%  mlp 97.90%  knn 96.10%`: a finished run's measures that its line shows
    (a study's trial has the linear probe alone)."""
    cells = [(c, c.get(metrics)) for c in columns("progress")]
    return "  ".join(f"{c.key} {v:.2%}" for c, v in cells if v is not None)


def _load() -> None:
    """Import every evaluator file once; one that cannot be imported is one warning line naming
    it, and the others still measure. (Importing one evaluator module directly registers it
    alone: the scan still runs once.)"""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            try:
                importlib.import_module(f"{__name__}.{module.name}")
            except Exception as e:  # a broken file must not break every command
                print(
                    f"warning: bench/evaluators/{module.name}.py is skipped: {type(e).__name__}: {e}",
                    file=sys.stderr,
                )
