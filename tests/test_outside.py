"""Learners from outside the repository: a file, a module or package, an installed entry point.
Each joins the registry for the command that names it, is keyed by its code's content, and a
broken one is one line (exit 2)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench import BenchError, config, data, registry
from bench.report import tables
from bench.run import runner
from bench.store import compat

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sparse_ae.py"
QUICK = ROOT / "tests" / "quick.toml"  # every evaluator on the least work; one epoch
TINY = ["data.train_limit=256"]

LEARNER = """
from dataclasses import dataclass
import torch
from torch import nn
from bench.checks import at_least
from bench.method import Method
from bench.registry import register


@register("{name}")
class Mine(Method):
    @dataclass
    class Config:
        latent_dim: int = at_least(1, 8)

    def __init__(self, cfg, shape):
        super().__init__(cfg, shape)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(shape.numel, cfg.latent_dim))

    def encode(self, x):
        return self.net(self.normalize(x))

    def training_step(self, x):
        return self.encode(x).pow(2).mean()  # {comment}
"""


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """What a test loads leaves the registry as it was for the next test."""
    registry.names()
    for attr in ("_METHODS", "_SOURCES", "_RESOLVED", "_RECORDED"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def bench(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **(env or {})}, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_the_example_runs_from_the_cli_and_an_edit_makes_a_new_run(tmp_path):
    store = {"BENCH_RESULTS_DIR": str(tmp_path / "results"), "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["run", "--config", str(QUICK), "--latent-dims", "16", "--seeds", "0", *sets]
    r = bench(*args, "--methods", "examples/sparse_ae.py,pca", env=store)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "results" / "digits.md").read_text()
    settings = "data.train_limit=256"
    assert f"| sparse_ae ({settings}, from examples/sparse_ae.py) |" in page
    configs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*/config.json")]
    (mine,) = [c for c in configs if c["method"] == "sparse_ae"]
    assert mine["source"]["kind"] == "file" and mine["source"]["traits"]["reconstructs"] is True
    import hashlib

    assert mine["source"]["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()  # = sha256sum
    copy = tmp_path / "mine" / "sparse_ae.py"
    copy.parent.mkdir()
    shutil.copy(EXAMPLE, copy)  # the same code elsewhere: the same run, found in the store
    r = bench(*args, "--methods", str(copy), env=store)
    assert r.returncode == 0 and "(stored)" in r.stdout, r.stdout + r.stderr
    copy.write_text(
        copy.read_text().replace("l1: float = at_least(0, 1e-3)", "l1: float = at_least(0, 1e-2)")
    )
    r = bench(*args, "--methods", str(copy), env=store)
    assert r.returncode == 0 and "(stored)" not in r.stdout, r.stdout + r.stderr
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*/config.json")]
    assert sum(c["method"] == "sparse_ae" for c in runs) == 2
    broken = write(tmp_path / "broken.py", "def oops(:\n    pass\n")
    r = bench("list", "--methods", str(broken), env=store)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "line 1: SyntaxError" in r.stderr and "Traceback" not in r.stderr


def test_a_file_learner_is_trained_evaluated_and_keyed_by_its_content(tmp_path):
    path = write(tmp_path / "mine.py", LEARNER.format(name="mine", comment="v1"))
    assert registry.resolve(str(path)) == ["mine"]
    assert registry.resolve(str(path)) == ["mine"]  # loaded once
    assert registry.where("mine") == str(path) and registry.get("mine").trainable
    cfg = config.load(QUICK, TINY)
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "mine", {}, seed=0)
    assert spec.source["entry"] == str(path) and len(spec.source["sha256"]) == 64
    moved = {**spec.json(), "source": {**spec.source, "entry": "elsewhere/mine.py"}}
    edited = {**spec.json(), "source": {**spec.source, "sha256": "0" * 64}}
    assert compat.keys(moved) == (spec.key, spec.train_key)  # the path is not the code
    assert compat.keys(edited)[1] != spec.train_key  # the code is: a new checkpoint too
    assert compat.keys({**spec.json(), "source": None})[0] != spec.key
    m = runner.run_one(spec, ds, torch.device("cpu"))
    assert m["status"] == "ok" and m["latent_dim"] == 8
    # a worker whose copy of the file changed refuses the planned run
    with pytest.raises(BenchError, match="not the code this run was made with"):
        registry.ensure("mine", {**spec.source, "sha256": "0" * 64})


def test_an_edited_file_or_module_is_loaded_again_in_the_same_process(tmp_path, monkeypatch):
    """`bench.api` in a notebook: edit the learner, run again, and the new code is what runs (a new
    key), as a new CLI command would; an unchanged file is not imported twice."""
    path = write(tmp_path / "mine.py", LEARNER.format(name="mine_edit", comment="v1"))
    assert registry.resolve(str(path)) == ["mine_edit"]
    first, sha = registry.get("mine_edit"), registry.source("mine_edit")["sha256"]
    assert registry.resolve(str(path)) == ["mine_edit"] and registry.get("mine_edit") is first
    write(path, LEARNER.format(name="mine_edit", comment="v2"))
    assert registry.resolve(str(path)) == ["mine_edit"]
    assert registry.get("mine_edit") is not first and registry.source("mine_edit")["sha256"] != sha
    write(path, LEARNER.format(name="renamed", comment="v3"))  # its old name leaves with its old code
    assert registry.resolve(str(path)) == ["renamed"] and "mine_edit" not in registry.names()
    write(tmp_path / "editpkg" / "__init__.py", "")
    module = write(tmp_path / "editpkg" / "learners.py", LEARNER.format(name="mod_edit", comment="v1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.resolve("editpkg.learners")
    old = registry.get("mod_edit")
    write(module, LEARNER.format(name="mod_edit", comment="v2 edited"))
    assert registry.resolve("editpkg.learners") == ["mod_edit"] and registry.get("mod_edit") is not old
    assert "v2 edited" in Path(sys.modules["editpkg.learners"].__file__).read_text()


def test_the_python_api_names_a_bad_argument_in_its_own_error():
    from bench import api

    for call, message in [
        (lambda: api.run([5], dataset="digits"), r"methods: expected a list of str .*got \[5\]"),
        (lambda: api.run(["pca"], latent_dims=["8"]), "latent_dims: expected a list of int"),
        (lambda: api.run(["pca"], seeds=[True]), "seeds: expected a list of int"),
        (lambda: api.run(["pca"], sets="a=b"), "sets: expected a list of str"),
        (lambda: api.run(["pca"], workers="2"), "workers: expected int"),
        (lambda: api.latents(None), "key: expected a run's key"),
        (lambda: api.runs(dataset=3), "dataset: expected str"),
    ]:
        with pytest.raises(BenchError, match=message):
            call()


def test_a_path_with_a_pipe_or_a_line_break_stays_in_its_table_cell(tmp_path):
    """Names reaching a Markdown cell are safe there by construction: every table escapes `|` and
    joins lines, so a learner file under `a|b/` keeps the page's columns."""
    import pandas as pd

    from bench import report, store
    from bench.report import labels

    cells = labels.markdown(pd.DataFrame([{"learner": "x (from a|b/c.py)", "note": "two\nlines"}]))
    assert "x (from a\\|b/c.py)" in cells and "two lines" in cells and len(cells.splitlines()) == 3
    path = write(tmp_path / "a|b" / "mine.py", LEARNER.format(name="piped", comment=""))
    registry.resolve(str(path))
    cfg = config.load(QUICK, TINY)
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "piped", {}, seed=0)
    runner.run_one(spec, ds, torch.device("cpu"))
    page = report.write_for(spec.json(), store.load_runs()).read_text()
    rows = [line for line in page.splitlines() if line.startswith("| piped")]
    assert rows and all("a\\|b" in row for row in rows)
    for table in page.split("\n\n"):
        lines = [line.replace("\\|", "") for line in table.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in lines}) <= 1, table  # every row has the header's columns


def test_a_tensorboard_folder_gets_one_folder_per_run_whatever_the_learners_path(tmp_path):
    """The run's row name holds its file's path (`from ../x/mine.py`): its TensorBoard folder is
    a slug of it, one folder inside DIR/<dataset>/, never a path that climbs out of DIR."""
    (tmp_path / "deep" / "er").mkdir(parents=True)
    write(tmp_path / "mine.py", LEARNER.format(name="climber", comment=""))
    registry.resolve(str(tmp_path / "deep" / "er" / ".." / ".." / "mine.py"))
    cfg = config.load(QUICK, TINY)
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "climber", {}, seed=0)
    board = tmp_path / "board"
    with runner._tensorboard(board, spec) as log:
        log(0, {"loss": 1.0})
    (run,) = (board / "digits").iterdir()
    assert run.name.startswith("climber_(") and "_er_" in run.name and ".." not in run.name
    assert [p for p in tmp_path.rglob("events.out.tfevents.*")] == list(run.glob("events.out.tfevents.*"))


def test_pages_keep_an_outside_learners_runs_without_its_code(tmp_path):
    path = write(tmp_path / "mine.py", LEARNER.format(name="mine2", comment=""))
    registry.resolve(str(path))
    cfg = config.load(QUICK, TINY)
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "mine2", {}, seed=0)
    runner.run_one(spec, ds, torch.device("cpu"))
    from bench import store

    del registry._METHODS["mine2"], registry._SOURCES["mine2"]  # a report in another process
    runs = tables.registered(store.load_runs())
    assert [r["config"]["method"] for r in runs] == ["mine2"]
    assert tables.kind("mine2") == "learner" and registry.trait("mine2", "reconstructs") is False


@pytest.mark.parametrize(
    "text, message",
    [
        ("def oops(:\n    pass\n", "line 1: SyntaxError"),
        ("x = 1\n", "registers no learner"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", r"SystemExit\(3\): it calls sys.exit"),
        (LEARNER.format(name="ae", comment=""), "already registered by methods.ae: rename"),
        ("from bench.registry import register\n@register('notamethod')\nclass X:\n    pass\n",
         "must subclass bench.method.Method"),
        (LEARNER.format(name="../../../../x", comment=""), "learner name '../../../../x': use a letter"),
        (LEARNER.format(name="a|b", comment=""), r"learner name 'a\|b'"),
        (LEARNER.format(name="two\\nlines", comment=""), "learner name 'two\\\\nlines'"),
    ],
    ids=["syntax", "no-register", "raises", "exits", "name-clash", "not-a-method", "path", "pipe", "newline"],
)  # fmt: skip
def test_a_broken_file_is_one_clear_error(tmp_path, text, message):
    path = write(tmp_path / "bad.py", text)
    before = registry.names()
    with pytest.raises(BenchError, match=message) as e:
        registry.resolve(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert registry.names() == before  # a failed file registers nothing


def test_missing_files_and_modules_and_unknown_names():
    with pytest.raises(BenchError, match="not found"):
        registry.resolve("no/such/learner.py")
    with pytest.raises(BenchError, match="no module named 'nosuchpkg.learners'"):
        registry.resolve("nosuchpkg.learners")
    with pytest.raises(BenchError, match="unknown method 'vae2': choose from .*or give a learner's file"):
        registry.resolve("vae2")


def test_a_module_and_a_package_are_keyed_by_their_files(tmp_path, monkeypatch):
    write(tmp_path / "mypkg" / "__init__.py", "")
    write(tmp_path / "mypkg" / "helpers.py", "WIDTH = 8\n")
    write(tmp_path / "mypkg" / "learners.py", LEARNER.format(name="pkg_mine", comment=""))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.resolve("mypkg.learners") == ["pkg_mine"]
    assert registry.source("pkg_mine")["kind"] == "module"
    assert registry.where("pkg_mine") == "module mypkg.learners"
    write(tmp_path / "otherpkg" / "__init__.py", "from otherpkg.impl import *\n")
    write(tmp_path / "otherpkg" / "impl.py", LEARNER.format(name="pkg_other", comment=""))
    assert registry.resolve("otherpkg") == ["pkg_other"]  # a top-level package, all its files hashed
    from bench.plugins import outside

    files = outside.module_files(sys.modules["otherpkg"])
    assert [f.name for f in files] == ["__init__.py", "impl.py"]
    assert registry.source("pkg_other")["sha256"] == outside.digest_files(files)


def test_an_installed_entry_point_is_found_without_a_flag(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    write(site / "eplearners.py", LEARNER.format(name="ep_mine", comment=""))
    info = site / "eplearners-0.1.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: eplearners\nVersion: 0.1\n")
    write(info / "entry_points.txt", "[latentbench.methods]\nmine = eplearners\n")
    write(site / "broken-0.1.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    write(site / "broken-0.1.dist-info" / "entry_points.txt", "[latentbench.methods]\nbad = nosuchmodule\n")
    write(site / "exiting.py", "import sys\nsys.exit(5)\n")  # a warning line, not the end of the process
    write(site / "exiting-0.1.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: exiting\nVersion: 0.1\n")
    write(site / "exiting-0.1.dist-info" / "entry_points.txt", "[latentbench.methods]\nx = exiting\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_LOADED", False)
    assert "ep_mine" in registry.names()  # no flag: the group is read when the registry loads
    assert "entry point x = exiting: SystemExit(5)" in capsys.readouterr().err
    assert registry.where("ep_mine") == "entry point of eplearners (eplearners)"
    cfg = config.load(QUICK, TINY)
    ds = data.load(cfg.data)
    spec = runner.spec(cfg, ds, "ep_mine", {}, seed=0)
    assert spec.source["kind"] == "entry point"
    assert runner.run_one(spec, ds, torch.device("cpu"))["status"] == "ok"


@pytest.mark.slow
def test_the_contract_tests_take_an_outside_file(tmp_path):
    """The documented command: `pytest tests/test_methods.py --learner FILE -k NAME`."""
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_methods.py", "--learner", "examples/sparse_ae.py",
         "-k", "sparse_ae", "-o", "addopts=", "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:]
    assert "7 passed" in r.stdout, r.stdout[-500:]  # contract x2 shapes, traits, run, space, config, resume


@pytest.mark.slow
def test_the_docs_python_example_runs():
    """The `bench.api` block of docs/extending.md, as a reader pastes it (in this test's own store)."""
    readme = (ROOT / "docs" / "extending.md").read_text()
    block = readme.split("<!-- api-example")[1].split("```python\n")[1].split("```")[0]
    assert len(block.strip().splitlines()) <= 12
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example names examples/sparse_ae.py from the repository's root
    try:
        exec(compile(block, "docs/extending.md", "exec"), {})
    finally:
        os.chdir(cwd)
    from bench import api, store

    df = api.runs(dataset="digits")
    assert sorted(df.method) == ["pca", "sparse_ae"] and df.linear.between(0, 1).all()
    z = api.latents(df.key.iloc[0])
    assert z["z_test"].shape[1] == 16 and len(z["y_test"]) == len(z["z_test"])
    assert (store.results_dir() / "digits.md").is_file()
    with pytest.raises(BenchError, match="unknown method 'nope'"):
        api.run(["nope"], dataset="digits")
