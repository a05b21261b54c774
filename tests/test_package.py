"""LatentBench installs as a package: the built wheel, installed apart from the checkout, gives
the `latentbench` command, finds its configs as package data and runs a grid from a folder that
knows nothing of the checkout. The names of the dependencies are written once (pyproject.toml),
and requirements.txt pins exactly those."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~! ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_pin_the_declared_dependencies_and_nothing_else():
    project = PYPROJECT["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    pinned = [ln for ln in lines if ln]
    assert all("==" in ln for ln in pinned), "requirements.txt is a lock: every line pinned"
    assert {_name(ln) for ln in pinned} == declared


def test_every_folder_of_bench_ships():
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bench").rglob("__init__.py")} | {
        "methods",
        "bench.configs",
    }
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == folders


@pytest.mark.slow
def test_the_wheel_installs_apart_and_runs_a_grid(tmp_path):
    src = tmp_path / "src"  # the build writes build/ and *.egg-info beside the sources: not the checkout's
    for name in ("bench", "methods", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = ["wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")]
    subprocess.run([*pip, *build], check=True, cwd=tmp_path, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("latentbench-*.whl")
    site = tmp_path / "site"  # the package alone; torch and the rest are this environment's
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["PYTHONPATH"] = str(site)
    command = [str(site / "bin" / "latentbench")]

    show = "import bench; print(bench.__file__, bench.CHECKOUT)"
    where = subprocess.run([sys.executable, "-c", show], cwd=work, env=env, capture_output=True, text=True)
    assert where.stdout.split() == [str(site / "bench" / "__init__.py"), "None"]

    listing = subprocess.run(
        [*command, "list"], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "configs/default.toml" in listing.stdout and "[default for digits]" in listing.stdout
    assert re.search(r"^  ae ", listing.stdout, re.M)

    grid = ["run", "--methods", "pca", "--latent-dims", "8", "--seeds", "0", "--set", "eval.map_points=0"]
    run = subprocess.run([*command, *grid], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "config: configs/default.toml" in run.stdout  # the dataset's own protocol, from package data
    page = (work / "results" / "digits.md").read_text()
    assert "| pca" in page and "latentbench 0.1.0" in page  # the code named by the package's version
    assert len(list((work / "results" / "runs").glob("*/metrics.json"))) == 1
