"""Typed config values: `coerce` turns a TOML value or a `--set` string into a field's type, and
`replace` sets fields that way. Valid ranges of config fields are declared next to their defaults
and checked when a config is resolved (before any run folder exists). A field is written
`epochs: int = at_least(1, 30)`: the default and the rule in one place; `python -m bench` errors
name the field, the value and what is allowed. A test holds every field of every section and
learner to having a rule.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import BenchError


@dataclass(frozen=True)
class Rule:
    text: str  # what is allowed, as the error message says it
    test: Callable[[Any], bool]
    each: bool = False  # the value is a list: every item must pass, and the list must not be empty
    empty: bool = False  # ... unless this says an empty list is a choice (none of them)


def _field(default, rule: Rule):
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


# The largest value a field takes unless its rule says less: an int fits int32 (every torch size,
# numpy seed and loop count here takes it; past int64 nothing does) and a float is at most 1e6 (a
# rate, weight, scale or std past it is a typo in these units, and its square is still finite).
INT_MAX = 2**31 - 1
FLOAT_MAX = 1e6
MAX_CLASS = 2**16 - 1  # a class index (ImageNet-21k has 21,841 classes)


def _ceiling(default, hi):
    if hi is not None:
        return hi
    sample = default[0] if isinstance(default, list | tuple) and default else default
    return FLOAT_MAX if isinstance(sample, float) else INT_MAX


def at_least(lo, default, *, hi=None, each: bool = False):
    hi = _ceiling(default, hi)
    return _field(default, Rule(f">= {lo} and <= {hi}", lambda v: lo <= v <= hi, each))


def above(lo, default, *, hi=None, each: bool = False):
    hi = _ceiling(default, hi)
    return _field(default, Rule(f"> {lo} and <= {hi}", lambda v: lo < v <= hi, each))


def within(lo, hi, default, *, each: bool = False, open_lo: bool = False, open_hi: bool = False):
    text = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
    ok_lo = (lambda v: v > lo) if open_lo else (lambda v: v >= lo)
    ok_hi = (lambda v: v < hi) if open_hi else (lambda v: v <= hi)
    return _field(default, Rule(f"in {text}", lambda v: ok_lo(v) and ok_hi(v), each))


def values_within(lo, hi, default, why: str, *, open_lo: bool = False):
    """A list that may be empty (`why` says what empty means), each item in [lo, hi] or (lo, hi]."""

    def test(v) -> bool:
        return all(_plain(x) and (x > lo if open_lo else x >= lo) and x <= hi for x in v)

    return _field(default, Rule(f"each in {'(' if open_lo else '['}{lo}, {hi}] ({why})", test))


def one_of(options, default, *, each: bool = False, empty: bool = False):
    return _field(
        default, Rule(f"one of {', '.join(map(str, options))}", lambda v: v in options, each, empty)
    )


def any_value(default, why: str):
    """A field with no range of its own (a seed, a name checked elsewhere): say why."""
    return _field(default, Rule(why, lambda v: True))


def names(default):
    return _field(default, Rule("a non-empty name", lambda v: isinstance(v, str) and bool(v.strip()), True))


def fraction_range(default):
    """A (lo, hi) pair of fractions, e.g. a crop's area range."""
    return _field(
        default, Rule("two numbers lo <= hi in (0, 1]", lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1)
    )


def flag(default: bool):
    return _field(default, Rule("true or false", lambda v: isinstance(v, bool)))


def problem(value, rule: Rule) -> str | None:
    """What is wrong with an already type-coerced `value` under `rule`, or None."""
    if rule.each:
        if not isinstance(value, list | tuple) or not (value or rule.empty):
            return f"must be a {'' if rule.empty else 'non-empty '}list, each item {rule.text}"
        bad = [v for v in value if not _ok(v, rule)]
        return f"every item must be {rule.text} (not {_show(bad[0])})" if bad else None
    return None if _ok(value, rule) else f"must be {rule.text}"


def _plain(v) -> bool:
    """Not inf, nan or a subnormal float (1e-320: no rate, scale or std here means that)."""
    return not isinstance(v, float) or math.isfinite(v) and not 0 < abs(v) < sys.float_info.min


def _ok(v, rule: Rule) -> bool:
    if not _plain(v):
        return False
    try:
        return bool(rule.test(v))
    except TypeError:
        return False


def _show(v) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def validate(obj, where: str) -> None:
    """Check every field of dataclass `obj` that declares a rule; BenchError on the first bad one."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("rule")
        value = getattr(obj, f.name)
        if rule is None or value is None:
            continue
        msg = problem(value, rule)
        if msg:
            shown = list(value) if isinstance(value, tuple) else value
            raise BenchError(f"{where}.{f.name}={shown!r}: {msg}")


def replace(obj, values: dict, where: str):
    """A copy of dataclass `obj` with `values` coerced to its field types; unknown keys are errors."""
    hints = typing.get_type_hints(type(obj))
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise BenchError(f"unknown key {where}.{unknown[0]}: valid keys are {sorted(hints)}")
    out = dataclasses.replace(obj, **{k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    validate(out, where)
    return out


def coerce(value, tp, where: str):
    """Convert a TOML value or a --set string to type `tp` (int, float, bool, str, list/tuple of those)."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip().removeprefix("[").removesuffix("]")
            value = [v.strip().strip("'\"") for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise BenchError(f"{where}: expected a list, got {value!r}")
        return origin(coerce(v, item_tp, where) for v in value)
    if origin in (typing.Union, types.UnionType):  # Optional[X]: coerce to X (a list too)
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(value, tp, where)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if tp is int and (isinstance(value, float) or isinstance(value, bool)):
            raise ValueError
        if tp is str and not isinstance(value, str):
            raise ValueError
        return tp(value)
    except (TypeError, ValueError):
        raise BenchError(f"{where}: expected {tp.__name__}, got {value!r}") from None
