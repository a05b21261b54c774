"""Plugin registry of learners: registry key = file name in methods/ = CLI name (as timm does)."""

from __future__ import annotations

from bench import BenchError

_METHODS: dict[str, type] = {}


def register(name: str):
    """Class decorator that adds a learner under `name`; a duplicate name is a programming error."""

    def wrap(cls):
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
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


def _load() -> None:
    import methods  # noqa: F401  (importing the package registers every method)
