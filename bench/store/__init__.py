"""The run store: content-addressed run folders and a git-ignored cache for large artifacts.

    results/runs/<key>/config.json   what was run (resolved) and why
    results/runs/<key>/metrics.json  what it measured; its presence marks the run finished
    .cache/ckpt/<train_key>.pt       trained weights      .cache/latents/<train_key>.pt  latents

`key` hashes everything that changes a result; `train_key` hashes what changes the trained weights,
so a change to evaluation reuses the trained model (a run typed, its keys computed once: spec.py;
the rules that keep old runs' keys and read them today: compat.py). Every write is atomic (temp file
and rename): a killed process leaves finished runs intact and no half-written file behind; files get
the usual umask-respecting mode. The store heals: a run whose files cannot be read is reported in
one warning line and counts as unfinished (the next `run` redoes it); a cache file that cannot be
loaded is deleted and recomputed. A process claims a run before training it (`claim`), so two
processes on one store split a grid instead of training every run twice."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import BenchError
from bench.store import compat, spec


@dataclass(frozen=True)
class Store:
    """A run store: `results` holds the run folders and the pages, `cache` this machine's
    checkpoints, latents and decoded data. An edge (the command line, bench.api, a make target's
    tool) builds it once and opens it with `using`; everything below reads the open one through
    `results_dir()` and `cache_dir()`, never the environment."""

    results: Path = Path("results")
    cache: Path = Path(".cache")

    @classmethod
    def from_env(cls) -> Store:
        """The edges' store: $BENCH_RESULTS_DIR and $BENCH_CACHE_DIR (default results/, .cache/)."""
        env = os.environ
        return cls(Path(env.get("BENCH_RESULTS_DIR", "results")), Path(env.get("BENCH_CACHE_DIR", ".cache")))

    def environ(self) -> dict[str, str]:
        """This store as a child process's environment (a `tune --workers` worker is an edge)."""
        return {"BENCH_RESULTS_DIR": str(self.results), "BENCH_CACHE_DIR": str(self.cache)}


# The open store, per thread and per task (a new thread starts with the default, results/ and
# .cache/ under the working folder, until it opens its own): two stores can be open at once.
_OPEN: contextvars.ContextVar[Store | None] = contextvars.ContextVar("bench_store", default=None)


@contextlib.contextmanager
def using(store: Store):
    """Open `store` for everything called inside (in this thread or task); the one before is
    open again after."""
    token = _OPEN.set(store)
    try:
        yield store
    finally:
        _OPEN.reset(token)


def current() -> Store:
    return _OPEN.get() or Store()


def results_dir() -> Path:
    return current().results


def cache_dir() -> Path:
    return current().cache


def keys(record: dict) -> tuple[str, str]:
    """(run key, train key) of a run spec's JSON form (the rules: bench/store/compat.py)."""
    return compat.keys(record)


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def safe_name(name: str, what: str) -> str:
    """`name` if it can be a single file name (letters, digits, '.', '_', '-'; no separators,
    no '..'), else BenchError: study names, dataset slugs and run keys never leave their folder."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise BenchError(
            f"{what} {name!r}: use letters, digits, '.', '_' and '-' only (no '/' or '..'), at most 128"
        )
    return name


def inside(folder: Path, name: str, what: str) -> Path:
    path = (folder / safe_name(name, what)).resolve()
    if path.parent != folder.resolve():
        raise BenchError(f"{what} {name!r} would leave {folder}")
    return path


def run_dir(key: str) -> Path:
    return results_dir() / "runs" / key


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


GONE = object()  # read_json's `missing`/`unreadable` answer where JSON `null` (None) must differ


def read_json(path: Path, missing=None, unreadable=None):
    """The JSON at `path`; `missing` if there is no file; `unreadable` (with one warning line) if
    it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return missing
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warn(f"{path} cannot be read ({type(e).__name__}); treating the run as unfinished: it is redone")
        return unreadable


def read_run(folder: Path) -> tuple[dict, dict] | None:
    """A stored run's (config, metrics), or None if it is unfinished, unreadable or fails the
    schema (one warning naming the file: the run counts as unfinished and is redone)."""
    if not (folder / "metrics.json").exists():
        return None
    cfg, metrics = (read_json(folder / name, GONE, GONE) for name in ("config.json", "metrics.json"))
    if cfg is GONE or metrics is GONE:
        return None  # missing, or read_json has warned
    why = spec.problem(cfg, metrics)
    if why:
        warn(f"{folder}: {why}; treating the run as unfinished: it is redone")
        return None
    return cfg, metrics


def is_done(key: str) -> bool:
    """Finished: both files read back and pass the schema (`problem`)."""
    return read_run(run_dir(key)) is not None


def discard_unfinished(key: str) -> None:
    """Remove what a run left without finishing (a pruned trial's config.json): never a finished
    run's files, never another process's claim."""
    from bench.store.claims import claimed

    if is_done(key) or claimed(key):
        return
    (run_dir(key) / "config.json").unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: something else lives there, keep it
        run_dir(key).rmdir()


def load_json(path: Path):
    return json.loads(path.read_text())


def add_purpose(key: str, purpose: str) -> None:
    path = run_dir(key) / "config.json"
    cfg = load_json(path)
    if purpose not in cfg.setdefault("purposes", []):
        cfg["purposes"].append(purpose)
        write_json(path, cfg)


def load_runs(skipped: list | None = None) -> list[dict]:
    """Every finished run as {'key', 'config', 'metrics'}, in key order; the keys of those whose
    files cannot be read or fail the schema (each warned) are appended to `skipped`."""
    runs = []
    for d in sorted((results_dir() / "runs").glob("*/")):
        stored = read_run(d)  # unfinished, or warned: the next `bench run` of its grid redoes it
        if stored:
            runs.append({"key": d.name, "config": stored[0], "metrics": stored[1]})
        elif skipped is not None and (d / "metrics.json").exists():
            skipped.append(d.name)
    return runs


def find(prefix: str) -> str:
    """The full run key that starts with `prefix` (like a git short hash)."""
    if not re.fullmatch(r"[0-9a-f]{1,16}", prefix):
        raise BenchError(f"run key {prefix!r}: a key is up to 16 hex digits (see the tables' sources)")
    hits = [d.name for d in (results_dir() / "runs").glob(f"{prefix}*") if d.is_dir()]
    if len(hits) != 1:
        what = "no run" if not hits else f"{len(hits)} runs"
        raise BenchError(
            f"{what} in {results_dir() / 'runs'} match key {prefix!r}: "
            "`python -m bench report` lists the keys in the tables' sources"
        )
    return hits[0]


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: readers see the old file or the new one.
    Only a regular file is ever replaced: a device, folder or socket at `path` is refused in one
    line that names it. A link at `path` is replaced by the file, never followed (a link planted
    in the store takes no write elsewhere); files the user names go through bench/store/output.py."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, socket or pipe)"
        raise BenchError(f"{path} is {kind}: refusing to replace it; choose a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600: a shared store must stay readable
        os.replace(tmp, path)
    except OSError as e:  # a full disk names the user's file, never our temporary one
        if e.filename not in (None, tmp):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_tensor(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_tensor(path: Path, check=None):
    """A cached tensor file, or None if absent. A file that fails to load, or whose content
    `check(obj)` finds wrong (it returns what is wrong, or None), is deleted with one warning line,
    and so recomputed by the caller."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        why = check(obj) if check else None
    except Exception as e:  # truncated, garbage, or written by something else: never fatal
        why = f"cannot be loaded ({type(e).__name__})"
    if why is None:
        return obj
    warn(f"cache file {path} {why}; deleting it and recomputing")
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def try_save_tensor(path: Path, obj, what: str) -> bool:
    return try_cache(path, lambda: save_tensor(path, obj), what)


def try_cache(path: Path, save, what: str) -> bool:
    """`save()` a cache file at `path`; if it cannot be written (a full disk, a read-only cache,
    any error), warn and go on without it."""
    try:
        save()
        return True
    except Exception as e:  # OSError, and torch.save's RuntimeError on a full disk: never fatal
        why = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        warn(f"could not save the {what} to {path} ({why}); the run goes on without it")
        return False


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save_npz(path: Path, arrays: dict, compress: bool = True) -> None:
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)

    atomic_write(path, write)


def load_artifact(run_dir: Path, name: str) -> dict | None:
    """A run's `<name>.npz` as {array name: array}, or None if it has none, it cannot be read or
    it does not hold what spec.ARTIFACTS says (warned: the run's numbers stand, only what the file adds
    is missing)."""
    import numpy as np

    path = run_dir / f"{name}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        why = spec.artifact_problem(name, arrays)
    except Exception as e:  # truncated or garbage
        why = f"cannot be read ({type(e).__name__})"
    if why is None:
        return arrays
    warn(f"{path} {why}; what it holds is left out")
    return None
