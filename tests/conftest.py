import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from bench.method import InputShape


def pytest_addoption(parser):
    parser.addoption(
        "--learner",
        action="append",
        default=[],
        metavar="ENTRY",
        help="also hold this learner file, module or encoder to the contract (tests/test_methods.py)",
    )


def pytest_configure(config):
    """`--learner path/to/mine.py`: the learner joins the registry before the contract tests are
    parametrised over it (docs/extending.md). Under pytest-xdist (`make test`: one worker a
    core) each worker, and every process it starts, computes on one thread: the cores are shared
    by workers, not oversubscribed by each one's thread pool."""
    from bench import registry
    from bench.run import env

    if os.environ.get("PYTEST_XDIST_WORKER"):
        env.set_threads(1)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = "1"

    for entry in config.getoption("--learner"):
        registry.resolve(entry)


def pytest_collection_modifyitems(config, items):
    """The slow tests first, and among them the groups that one worker runs in turn (the Ray
    cluster's, the explorer's), stable otherwise: under pytest-xdist a long test or group left to
    the end of the queue keeps one worker busy while the other has nothing left to take."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            item.get_closest_marker("xdist_group") is None,
        )
    )


ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results"  # the committed store, read (copied from) only
# One quick ae run and the pixels baseline (tests/quick.toml: the digits protocol cut to a test's
# budget): the grid that the store's healing and fuzz tests break and mend.
QUICK_GRID = ["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "ae,pixels"]

GREY8 = InputShape(1, 8, 8, (0.3,), (0.4,), num_classes=10)
RGB32 = InputShape(3, 32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), num_classes=10)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test writes its runs and cache under its own temp dir, never into the project: the
    store open in the test's thread, and the environment's for the edges it calls (the command
    line in-process and in subprocesses, bench.api)."""
    from bench import store

    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    with store.using(store.Store.from_env()):
        yield


@pytest.fixture
def move_store(monkeypatch):
    """`move_store(results=..., cache=...)`: point the rest of the test at another store, for the
    edges it calls (the environment) and the code it calls directly (the store open in its thread)."""
    from bench import store

    with contextlib.ExitStack() as opened:

        def move(results=None, cache=None):
            now = store.current()
            moved = store.Store(Path(results or now.results), Path(cache or now.cache))
            for k, v in moved.environ().items():
                monkeypatch.setenv(k, v)
            opened.enter_context(store.using(moved))

        yield move


@pytest.fixture
def data_dir():
    path = os.environ.get("BENCH_DATA_DIR")
    if not path or not os.path.isdir(os.path.join(path, "MNIST", "raw")):
        pytest.skip("real-data test: set BENCH_DATA_DIR to a folder holding MNIST/raw/")
    return path


@pytest.fixture(scope="session")
def made_store(tmp_path_factory):
    """A store and cache holding QUICK_GRID's runs, made once per session; `stored` copies it."""
    from bench.__main__ import main

    folder = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_RESULTS_DIR", str(folder / "results"))
        mp.setenv("BENCH_CACHE_DIR", str(folder / "cache"))
        assert main(QUICK_GRID) == 0
    return folder


def ae_run() -> dict:
    """QUICK_GRID's ae run, as the store reads it now."""
    from bench import store

    (run,) = [r for r in store.load_runs() if r["config"]["method"] == "ae"]
    return run


@pytest.fixture
def stored(made_store, isolated_store, tmp_path, capsys):
    """This test's store and cache begin as a copy of `made_store` (what `main(QUICK_GRID)` would
    leave in them); returns the ae run."""
    for part in ("results", "cache"):
        shutil.copytree(made_store / part, tmp_path / part)
    capsys.readouterr()
    return ae_run()


@pytest.fixture
def checkout(tmp_path):
    """A copy of the code a command runs (bench/, methods/, configs/), for tests that drop a file
    into methods/ or bench/evaluators/ as a user would: they run `python -m bench` there, and the
    project's own checkout never holds their files, even when a test is killed mid-way."""
    copy = tmp_path / "checkout"
    for name in ("bench", "methods", "configs"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def copy_page(results: Path, page: str = "digits", seeds=None) -> list[str]:
    """Copy the committed in-domain runs of dataset `page` (its study trials left out: they are on
    no page) and its Markdown page and figures into the store at `results`; the keys copied."""
    keys = []
    for folder in sorted((COMMITTED / "runs").iterdir()):
        if not (folder / "metrics.json").is_file():
            continue  # a run being made here (its claim only)
        cfg = json.loads((folder / "config.json").read_text())
        if cfg["dataset"]["slug"] != page or cfg.get("probe") or cfg.get("data", {}).get("classes"):
            continue
        if all(p.startswith("trial:") for p in cfg.get("purposes", [])) and cfg.get("purposes"):
            continue
        if seeds is not None and cfg["seed"] not in seeds:
            continue
        shutil.copytree(folder, results / "runs" / folder.name)
        keys.append(folder.name)
    if seeds is None:
        shutil.copy(COMMITTED / f"{page}.md", results / f"{page}.md")
        for png in COMMITTED.glob(f"{page}-*.png"):
            shutil.copy(png, results / png.name)
    return keys


@pytest.fixture(scope="session")
def digits_site(tmp_path_factory):
    """The explorer of the committed digits runs, built once a session (tests/test_browser.py
    opens the same one: both modules run on one xdist worker, `xdist_group`)."""
    root = tmp_path_factory.mktemp("site")
    keys = copy_page(root / "results")
    from bench import site, store

    with store.using(store.Store(root / "results", root / "cache")):
        built = site.build(root / "site")
    return root / "site", keys, built
