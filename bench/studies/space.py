"""Search spaces, read by the harness: the grammar of their keys, and the point of a space that
is a learner's defaults (the first trial of every `bench compare` study).

A learner's `search_space(trial)` returns config overrides in the `--set` grammar, relative to
the learner: `train.lr` is its own budget (`--set train.<learner>.lr`), a bare `loss` its own
option (`--set methods.<learner>.loss`), and `eval.*` or `data.*` are the shared sections.
"""

from __future__ import annotations

from bench import registry
from bench.report import labels
from bench.run import runner


def qualify(key: str, method: str) -> str:
    """A search-space key as the `--set` key it stands for: `train.lr` -> `train.ae.lr`,
    `loss` -> `methods.ae.loss`; `eval.*` and `data.*` are already whole."""
    section, _, field = key.rpartition(".")
    if not section:
        return f"methods.{method}.{field}"
    return f"train.{method}.{field}" if section == "train" else key


def resolved(spec, key: str):
    """The value a run spec holds for search-space key `key` (its learner's, resolved)."""
    section, _, field = key.rpartition(".")
    return (getattr(spec, section or "method_config") or {}).get(field)


class _Marker:
    """What a suggestion returns while `default_params` reads a search space."""

    def __init__(self, name: str, low=None, high=None, choices=None):
        self.name, self.low, self.high, self.choices = name, low, high, choices

    def holds(self, value) -> bool:
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and self.low <= value <= self.high


class _Reader:
    """A stand-in Optuna trial whose every suggestion is a marker, so the overrides a search
    space builds show which setting each of its parameters drives."""

    def __init__(self):
        self.params: dict[str, _Marker] = {}

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self.params.setdefault(name, _Marker(name, low=low, high=high))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self.params.setdefault(name, _Marker(name, low=low, high=high))

    def suggest_categorical(self, name, choices):
        return self.params.setdefault(name, _Marker(name, choices=tuple(choices)))


def default_params(cfg, data, method: str) -> tuple[dict | None, str]:
    """The learner's configuration under `cfg` (its default row's) as a point of its search space:
    (Optuna params, "") to enqueue as a trial, or (None, why it is not a point of the space)."""
    reader = _Reader()
    try:
        overrides = registry.get(method).search_space(reader)
    except TypeError:  # the space computes with a suggested value: no way to read it back
        return None, "its search space computes with the suggested values"
    base = runner.spec(cfg, data, method, {}, 0)
    found: dict = {}
    for key, value in overrides.items():
        current = resolved(base, key)
        pairs = [(value, current)]
        if isinstance(value, (tuple, list)):
            if not isinstance(current, (tuple, list)) or len(current) != len(value):
                return None, f"{key}={current!r} is not a point of the space"
            pairs = list(zip(value, current))
        for suggested, default in pairs:
            if not isinstance(suggested, _Marker):
                if suggested != default:  # a part the space fixes, e.g. the crop's largest area
                    return None, f"{key}={labels.short(current)} is not a point of the space"
                continue
            if found.get(suggested.name, default) != default:
                return None, f"{suggested.name} drives settings whose defaults differ"
            found[suggested.name] = default
    for name, marker in reader.params.items():
        if name not in found:
            return None, f"cannot read the default of {name}"
        if not marker.holds(found[name]):
            return None, f"the default {name}={found[name]!r} lies outside its search range"
    return found, ""
