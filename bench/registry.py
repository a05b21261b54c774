"""Plugin registry of learners: registry key = file name in methods/ = CLI name (as timm does).

Every module in methods/ is imported on first use, so adding a learner is adding one file; so is
every installed package's `latentbench.methods` entry point. A learner from outside the
repository (a file, a module, a pretrained encoder: bench/plugins/outside.py) joins when a command names
it (`resolve`), with its `Source`. Capabilities are read from the class (see bench/method.py);
the helpers here are the one place the rest of the harness asks about them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import re
import sys

from bench import BenchError
from bench.plugins import outside

_METHODS: dict[str, type] = {}
_SOURCES: dict[str, outside.Source] = {}  # the learners from outside the repository
_RESOLVED: dict[str, list[str]] = {}  # a --methods item already loaded -> the names it gave
_RECORDED: dict[str, dict] = {}  # traits of outside learners known only from their stored runs
_ADDING: list[list[str]] = []  # the names registered by the outside import in progress
_LOADED = False


# A learner's name: what a file name and a Python identifier both allow (and a Markdown cell, a
# path and a shell word take as they are): a letter, then letters, digits, _ or -.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def register(name: str):
    """Class decorator that adds a learner under `name`, which must be its file name in methods/;
    a duplicate name, or one outside NAME's grammar, is a programming error."""

    def wrap(cls):
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(
                f"learner name {name!r}: use a letter, then up to 63 letters, digits, _ or - (a file name "
                "and a Python identifier both allow it)"
            )
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
        module = cls.__module__.rsplit(".", 1)[-1]
        if cls.__module__.startswith("methods.") and module != name:
            raise ValueError(f"method {name!r} is registered in methods/{module}.py: name the file {name}.py")
        cls.name = name
        _METHODS[name] = cls
        if _ADDING:
            _ADDING[-1].append(name)
        return cls

    return wrap


@contextlib.contextmanager
def _collecting():
    """The names registered inside the block; an import that fails registers none of them."""
    added: list[str] = []
    _ADDING.append(added)
    try:
        yield added
    except BaseException:
        for name in added:
            _METHODS.pop(name, None)
        raise
    finally:
        _ADDING.pop()


def resolve(entry: str) -> list[str]:
    """The learners a `--methods` item stands for: a registered name, or every learner that an
    outside file, module or encoder registers (loaded once per process)."""
    _load()
    entry = entry.strip()
    if entry in _METHODS:
        return [entry]
    if entry in _RESOLVED and not _changed(entry):
        return list(_RESOLVED[entry])
    if not outside.looks_outside(entry) and not _importable(entry):
        get(entry)  # an unknown name: the error lists the known ones
    if outside.encoder_kind(entry):
        from bench.plugins import encoders

        name, cls, source = encoders.make(entry)
        try:
            with _collecting() as names:
                register(name)(cls)
        except ValueError as e:  # a name taken by a built-in, or outside the grammar
            raise BenchError(f"{entry}: {e}; name it NAME={entry.split('=', 1)[-1]}") from None
    else:
        names, source = outside.load_code(entry, _collecting)
    if not names:
        raise BenchError(f'{entry} registers no learner: decorate a Method subclass with @register("name")')
    from bench.method import Method

    for name in names:
        cls = _METHODS[name]
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            for n in names:
                _METHODS.pop(n, None)
            raise BenchError(f"{entry}: learner {name!r} must subclass bench.method.Method")
        _SOURCES[name] = dataclasses.replace(source, traits=outside.traits(cls))
    _RESOLVED[entry] = list(names)
    return list(names)


def _changed(entry: str) -> bool:
    """An item loaded earlier in this process whose code or weights changed since: its learners
    are forgotten (and a module's import), so that `resolve` loads what the files hold now."""
    names = _RESOLVED[entry]
    src = _SOURCES.get(names[0]) if names else None
    if src is None or not src.changed():
        return False
    for name in names:
        _METHODS.pop(name, None)
        _SOURCES.pop(name, None)
    del _RESOLVED[entry]
    outside.forget(src.files)  # a module (or a factory's) is imported again, not taken from sys.modules
    return True


def resolve_all(entries) -> list[str]:
    """`resolve` of each item, in order, each name once."""
    return list(dict.fromkeys(n for e in entries for n in resolve(e)))


def one(entry: str) -> str:
    """The single learner an item names (`bench tune --method`)."""
    names = resolve(entry)
    if len(names) != 1:
        raise BenchError(
            f"{entry} registers {len(names)} learners ({', '.join(names)}): "
            "give one learner per file to tune it"
        )
    return names[0]


def _importable(name: str) -> bool:
    """A bare word that is a top-level module outside the standard library (`mylearners`)."""
    if not name.isidentifier() or name in sys.stdlib_module_names:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def source(name: str) -> dict | None:
    """The source record a run of `name` keeps (None: a learner of this repository's methods/)."""
    _load()
    return _SOURCES[name].json() if name in _SOURCES else None


def where(name: str) -> str:
    """Where a registered learner's code is: `methods/ae.py`, a file, a module, an entry point."""
    _load()
    if name in _SOURCES:
        return _SOURCES[name].describe()
    return f"{_METHODS[name].__module__.replace('.', '/')}.py"


def ensure(method: str, recorded: dict | None) -> None:
    """Make a run's learner available in this process (a worker, `verify`, `export`): an outside
    learner is loaded from its recorded source, which must still hold the code the run was made
    with."""
    _load()
    if recorded is None:
        get(method)
        return
    if method not in _METHODS:
        resolve(recorded["entry"])
    now = _SOURCES.get(method)
    if now is None or now.sha256 != recorded["sha256"]:
        raise BenchError(
            f"{method}: {recorded['entry']} is not the code this run was made with (its content "
            "changed): restore it, or run the changed learner as a new run"
        )


def recall(cfg: dict) -> bool:
    """Remember the traits of an outside learner from a stored run's config (its source record),
    so that pages show it without loading its code. False for a run of an unknown learner."""
    _load()
    method, recorded = cfg["method"], cfg.get("source")
    if method in _METHODS:
        return True
    if isinstance(recorded, dict) and isinstance(recorded.get("traits"), dict):
        _RECORDED.setdefault(method, recorded["traits"])
        return True
    return False


def trait(name: str, attr: str, default=None):
    """A learner's declared capability (`trainable`, `family`, ...): from its class, or from the
    stored runs of an outside learner not loaded here; `default` for an unknown name."""
    _load()
    if name in _METHODS:
        return getattr(_METHODS[name], attr)
    return _RECORDED.get(name, {}).get(attr, default)


def names() -> list[str]:
    _load()
    return sorted(_METHODS)


def get(name: str) -> type:
    _load()
    if name not in _METHODS:
        raise BenchError(
            f"unknown method {name!r}: choose from {', '.join(sorted(_METHODS))}, or give a learner's "
            "file (path/to/learner.py), module (pkg.learners) or encoder (torchscript:PATH, "
            "timm:MODEL@WEIGHTS, factory:MODULE:FUNCTION)"
        )
    return _METHODS[name]


def create(name: str, cfg, shape):
    """Instantiate method `name` with its resolved `Config` for inputs of `shape` (an InputShape)."""
    return get(name)(cfg, shape)


def families() -> dict[str, list[str]]:
    """Family name -> its learners, e.g. {"views": ["barlowtwins", "byol", ...]}."""
    out: dict[str, list[str]] = {}
    for name in names():
        if _METHODS[name].family:
            out.setdefault(_METHODS[name].family, []).append(name)
    return out


def baselines() -> list[str]:
    return [n for n in names() if not _METHODS[n].trainable]


def tunable(name: str) -> bool:
    return get(name).search_space is not None


def is_reference(name: str) -> bool:
    """A learner trained with labels: a ceiling printed beside the others, never 'the best'.
    False for a name no longer registered (an old run in the store)."""
    return bool(trait(name, "needs_labels", False))


def _load() -> None:
    """Import methods/ (each file registers itself), then every installed entry point; a broken
    entry point is one warning line, like a broken file in methods/."""
    global _LOADED
    import methods  # noqa: F401  (importing the package registers every method)

    if _LOADED:
        return
    _LOADED = True
    for ep in outside.entry_points():
        try:
            names, src = outside.load_entry_point(ep, _collecting)
        except BenchError as e:
            print(f"warning: {e}; its learners are skipped", file=sys.stderr)
            continue
        for name in names:
            _SOURCES[name] = dataclasses.replace(src, traits=outside.traits(_METHODS[name]))
