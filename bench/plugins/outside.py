"""Learners from outside this repository, given where a learner's name goes (`--methods`,
`[grid] methods`, `bench tune --method`, `bench compare --methods`, `bench list --methods`):

- a Python file, `path/to/mylearner.py`: every `@register` in it joins the registry;
- an importable module or package, `mypkg.learners` (a package: all of its .py files are its code);
- an installed package's entry point in the group `latentbench.methods` (`[project.entry-points.
  "latentbench.methods"] mine = "mypkg.learners"`), found with no flag at all;
- a frozen pretrained encoder, `torchscript:PATH`, `timm:MODEL@WEIGHTS` or
  `factory:MODULE:FUNCTION[@WEIGHTS]`, optionally named `NAME=...` (bench/plugins/encoders.py).

Each is a `Source`: what was given (so a worker process can load it again), and the sha256 of its
content (the file, the package's files, the weights), which every run of its learners records
and hashes into its key: editing the file makes a new run, never a silently reused one. A file
that cannot be loaded (a syntax error, no `@register`, a name a learner already has) is one line
and exit 2.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import BenchError

GROUP = "latentbench.methods"  # the entry-point group of installed learners
ENCODER_KINDS = ("torchscript", "timm", "factory")


@dataclass(frozen=True)
class Source:
    """Where a learner from outside the repository came from. `entry` loads it again; `sha256`
    (of its content) is part of its runs' keys; `traits` are its class's declared capabilities,
    kept with each run so that the pages can show it without loading its code."""

    kind: str  # "file", "module", "entry point" or an encoder kind (ENCODER_KINDS)
    entry: str
    sha256: str
    traits: dict
    package: str = ""  # an entry point's distribution
    files: tuple[Path, ...] = ()  # what `sha256` was taken of (not recorded: `changed` reads it)
    extra: bytes = b""

    def json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v != "" and k not in ("files", "extra")}

    def changed(self) -> bool:
        """Whether its files no longer hold what it was loaded from (edited, or gone): in one
        process (`bench.api`, a notebook) the changed code is loaded again, as a new command would."""
        try:
            return digest_files(list(self.files), self.extra) != self.sha256
        except OSError:
            return True

    def describe(self) -> str:
        if self.kind == "entry point":
            return f"entry point of {self.package} ({self.entry})"
        return self.entry if self.kind in ("file", *ENCODER_KINDS) else f"module {self.entry}"


TRAITS = ("trainable", "reconstructs", "takes_latent_dim", "needs_labels", "family")


def traits(cls) -> dict:
    return {t: getattr(cls, t) for t in TRAITS}


ENCODER = re.compile(rf"^(?:(?P<name>[A-Za-z0-9_.-]+)=)?(?P<kind>{'|'.join(ENCODER_KINDS)}):(?P<target>.+)$")


def encoder_kind(entry: str) -> str | None:
    """`torchscript`, `timm` or `factory` for an encoder item (`[NAME=]KIND:...`), else None."""
    m = ENCODER.match(entry)
    return m["kind"] if m else None


def looks_outside(entry: str) -> bool:
    """Whether a `--methods` item names something outside the registry (else: a learner's name)."""
    return entry.endswith(".py") or "/" in entry or "." in entry or encoder_kind(entry) is not None


def digest_files(paths: list[Path], *extra: bytes) -> str:
    """sha256 of one file's bytes (what `sha256sum` prints), or of several files' names (relative
    to the first one's folder: a package's layout is part of its code) and bytes; then `extra`."""
    h = hashlib.sha256()
    root = paths[0].parent if paths else Path(".")
    for p in paths:
        if len(paths) > 1:
            h.update(str(p.relative_to(root) if p.is_relative_to(root) else p.name).encode() + b"\0")
        h.update(p.read_bytes())
    for e in extra:
        h.update(e)
    return h.hexdigest()


def module_files(module) -> list[Path]:
    """A module's code: its file, or every .py file of a package."""
    path = Path(getattr(module, "__file__", None) or "")
    if not path.is_file():
        raise BenchError(f"module {module.__name__} has no source file to key its runs by")
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]


def import_file(path: Path):
    """Import the Python file at `path` as a fresh module (its folder on sys.path, so it can import
    files beside it); one line for a file that cannot be imported."""
    if not path.is_file():
        raise BenchError(f"learner file {path} not found")
    stem = re.sub(r"\W", "_", path.stem)
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"latentbench_outside.{stem}_{where}_{digest_files([path])[:8]}"  # an edited file: a new module
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look a class's module up here
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BenchError:
        del sys.modules[name]
        raise
    except (Exception, SystemExit) as e:  # exit() in outside code ends nothing but its import
        del sys.modules[name]
        raise BenchError(f"{path}: {failure(e)}") from None
    finally:
        sys.path.remove(folder)
    return module


def import_module(name: str):
    try:
        return importlib.import_module(name)
    except BenchError:
        raise
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise BenchError(
                f"no module named {name!r} (not a learner's name, file or importable module)"
            ) from None
        raise BenchError(f"module {name}: {failure(e)}") from None
    except (Exception, SystemExit) as e:
        raise BenchError(f"module {name}: {failure(e)}") from None


def failure(e: BaseException) -> str:
    """An import's exception in one line (a syntax error with its line number)."""
    if isinstance(e, SyntaxError):
        return f"line {e.lineno}: SyntaxError: {e.msg}"
    if isinstance(e, SystemExit):
        return f"SystemExit({e.code!r}): it calls sys.exit"
    if isinstance(e, ValueError) and "already registered" in str(e):
        return f"{e}: rename the learner in its @register(...)"
    return f"{type(e).__name__}: {e}"


def load_code(entry: str, register_hook) -> tuple[list[str], Source]:
    """Import a learner file or module; `register_hook()` is a context manager that collects
    the names its `@register`s add. Returns (names, source)."""
    is_file = entry.endswith(".py") or "/" in entry
    with register_hook() as added:
        module = import_file(Path(entry)) if is_file else import_module(entry)
    files = [Path(entry)] if is_file else module_files(module)
    return added, Source("file" if is_file else "module", entry, digest_files(files), {}, files=tuple(files))


def forget(files) -> None:
    """Drop every imported module whose source is one of `files`, so that the next import of it
    reads the file again."""
    paths = {Path(f).resolve() for f in files}
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if source and Path(source).resolve() in paths:
            del sys.modules[name]


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: ep.name)


def load_entry_point(ep, register_hook) -> tuple[list[str], Source]:
    module_name = ep.value.split(":")[0].strip()
    with register_hook() as added:
        try:
            ep.load()
        except BenchError:
            raise
        except (Exception, SystemExit) as e:
            raise BenchError(f"entry point {ep.name} = {ep.value}: {failure(e)}") from None
    files = module_files(sys.modules[module_name])
    package = ep.dist.name if ep.dist is not None else ep.name
    return added, Source("entry point", module_name, digest_files(files), {}, package, tuple(files))
