"""Figures drawn once: a figure whose inputs, and the code that draws it, are what they were
when its PNG was written is not drawn again. Drawing is most of what a page costs (a third of a
second a figure), and a page is rewritten after every grid, study and `bench report`.

A record per figure, in the cache (`<cache>/figures/`, never in the results), holds the digest
of what drew it and the size and modification time of the PNG it wrote: a PNG changed or removed
since is drawn again, as is every figure after a change to plots.py, statplots.py, matplotlib or
the registered learners. Inputs that do not pickle are drawn every time."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import pickle
from pathlib import Path

from bench import registry, store


def _sources() -> str:
    """The drawing code as this process loaded it: plots.py and statplots.py, read when this
    module is imported (with them, by bench.report), not when a figure is drawn. A long process
    (a grid, a verify) that draws after the files were edited would otherwise record the edited
    code's digest for a figure its loaded code drew, and that figure would never be redrawn."""
    here = Path(__file__).parent
    return "\n".join((here / name).read_text() for name in ("plots.py", "statplots.py"))


SOURCES = _sources()


@functools.cache
def _code() -> str:
    """The drawing code (SOURCES) and matplotlib's version."""
    import matplotlib

    return hashlib.sha256("\n".join([SOURCES, matplotlib.__version__]).encode()).hexdigest()


def _digest(draw, args, kwargs) -> str | None:
    traits = {m: registry.trait(m, "takes_latent_dim", True) for m in registry.names()}
    try:
        blob = pickle.dumps((draw.__qualname__, _code(), traits, args, sorted(kwargs.items())), protocol=5)
    except Exception:  # noqa: BLE001 - an input that does not pickle: no record, drawn every time
        return None
    return hashlib.sha256(blob).hexdigest()


def _record_path(png: Path) -> Path:
    """The record of a PNG, named by its path within the results (so a store copied with its
    cache, as a test or a second machine does, keeps its figures; mtimes travel with the copy)."""
    png, results = png.resolve(), store.results_dir().resolve()
    name = str(png.relative_to(results)) if png.is_relative_to(results) else str(png)
    return store.cache_dir() / "figures" / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.json"


def _known(record: Path) -> dict | None:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):  # none yet, or broken: the figure is drawn again
        return None


def _stamp(png: Path, digest: str) -> dict:
    stat = png.stat()
    return {"inputs": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def once(draw):
    """Decorate `draw(path, *inputs)`, which writes one PNG at `path`: skipped when that PNG is the
    one it wrote last from the same inputs with the same code."""

    @functools.wraps(draw)
    def drawn(path, *args, **kwargs):
        png, digest = Path(path), _digest(draw, args, kwargs)
        record = _record_path(png)
        if digest is not None and png.is_file() and _known(record) == _stamp(png, digest):
            return
        draw(path, *args, **kwargs)
        if digest is not None and png.is_file():
            with contextlib.suppress(OSError):  # a record that cannot be written: drawn next time
                store.write_json(record, _stamp(png, digest))

    return drawn
