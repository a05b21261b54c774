"""Plugin registry of learners: registry key = file name in methods/ = CLI name (as timm does).

Every module in methods/ is imported on first use, so adding a learner is adding one file.
Capabilities are read from the class (see bench/method.py); the helpers here are the one place
the rest of the harness asks about them.
"""

from __future__ import annotations

from bench import BenchError

_METHODS: dict[str, type] = {}


def register(name: str):
    """Class decorator that adds a learner under `name`, which must be its file name in methods/;
    a duplicate name is a programming error."""

    def wrap(cls):
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
        module = cls.__module__.rsplit(".", 1)[-1]
        if cls.__module__.startswith("methods.") and module != name:
            raise ValueError(f"method {name!r} is registered in methods/{module}.py: name the file {name}.py")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def names() -> list[str]:
    _load()
    return sorted(_METHODS)


def get(name: str) -> type:
    _load()
    if name not in _METHODS:
        raise BenchError(f"unknown method {name!r}: choose from {', '.join(sorted(_METHODS))}")
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
    return name in names() and _METHODS[name].needs_labels


def _load() -> None:
    import methods  # noqa: F401  (importing the package registers every method)
