"""Grids on Ray: the same results as in-process, one stored run per spec, and no finished run
lost or redone when a worker node or the driver is killed.

The local-instance test always runs. The cluster tests need a running cluster: `.ci/ray.sh`
starts a head and a worker node on this machine and CI exports RAY_TEST_ADDRESS (and
RAY_AUTH_MODE=token); without it they skip.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRID = [
    "run",
    "--config",
    str(ROOT / "tests" / "quick.toml"),
    "--set",
    "train.epochs=2",
    "--cpus-per-run",
    "1",
]
COMPARED = ("linear", "mlp", "knn", "recon", "rankme", "label_efficiency", "confusion", "weights_sha256")
CLUSTER = os.environ.get("RAY_TEST_ADDRESS")
needs_cluster = pytest.mark.skipif(not CLUSTER, reason="set RAY_TEST_ADDRESS (.ci/ray.sh starts a cluster)")
# slow; and one xdist worker runs them in turn, as they kill the nodes of one cluster
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def bench(*args, store_dir: Path, wait=True, **kw):
    """`python -m bench ARGS` in a fresh process with its own store and cache."""
    env = dict(os.environ, BENCH_RESULTS_DIR=str(store_dir), BENCH_CACHE_DIR=str(store_dir / "cache"))
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "bench", *args]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw
        )
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def stored(store_dir: Path) -> dict:
    """{run key: metrics} of every finished run in a store."""
    out = {}
    for path in (store_dir / "runs").glob("*/metrics.json"):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def same_results(a: dict, b: dict) -> None:
    """Bit-identical weights and probe accuracies; the continuous metrics (reconstruction, RankMe)
    to float32 precision: on some CPUs the in-process run and a Ray worker sum them in another
    order and differ in the last bit (seen: MSE 0.02358640916645527 vs 0.023586411029100418)."""
    assert a.keys() == b.keys()
    for key in a:
        for field in COMPARED:
            want = b[key].get(field)
            if field == "recon" and want is not None:
                want = {k: pytest.approx(v, rel=1e-6) for k, v in want.items()}
            elif field == "rankme" and want is not None:
                want = pytest.approx(want, rel=1e-6)
            assert a[key].get(field) == want, (key, field)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The grid run in-process with one thread per run, as every Ray task below runs (once per
    worker: at module scope, pytest-xdist's worker tore it down between these tests and made it
    again, 11 s each time)."""
    folder = tmp_path_factory.mktemp("in-process")
    done = bench(*GRID, "--methods", "ae,pca,simclr", "--seeds", "0,1", store_dir=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return stored(folder)


def test_workers_give_the_in_process_results(reference, tmp_path, capsys, monkeypatch):
    from bench.__main__ import main

    args = [*GRID, "--methods", "ae,pca,simclr", "--seeds", "0,1", "--workers", "2"]
    done = bench(*args, store_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ray: 2 run(s) at a time" in done.stdout and "[6 done, 0 running, 0 pending" in done.stdout
    runs = stored(tmp_path)
    same_results(runs, reference)
    assert len(list((tmp_path / "runs").iterdir())) == 6 and not list(tmp_path.rglob("claim.lock"))
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))  # the same store, in this process:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))  # Ray is not even started
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "6 stored, 0 to run" in again and "Ray:" not in again


def test_a_steer_only_grid_on_ray_prints_its_progress(tmp_path):
    """A study's trial is measured by the linear probe alone: its progress line on Ray shows what
    it measured (it once indexed the MLP head and ended in a traceback)."""
    where = ["--ray-address", CLUSTER] if CLUSTER else ["--workers", "1"]  # a running cluster starts at once
    args = ["--methods", "pca", "--seeds", "0", *where, "--set", "eval.steer_only=true"]
    done = bench(*GRID, *args, store_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("[1 done, 0 running, 0 pending")]
    assert line.split(": ")[-1].startswith("linear ") and "mlp" not in line and "knn" not in line


def test_bad_ray_settings_are_one_line(tmp_path, capsys):
    from bench import store
    from bench.__main__ import main

    for args, words in (  # refused before Ray starts: in this process
        (["--workers", "0"], "--workers"),
        (["--cpus-per-run", "0", "--workers", "1"], "--cpus-per-run"),
        (["--workers", "1", "--gpus-per-run", "1"], "GPUs"),  # a local instance would have none
    ):
        assert main([*GRID, "--methods", "pca", "--seeds", "0", *args]) == 2
        err = capsys.readouterr().err
        assert words in err and err.strip().count("\n") == 0 and "Traceback" not in err, err
        assert not list((store.results_dir() / "runs").glob("*/metrics.json"))
    # at once, not after minutes
    asked = [(["--ray-address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1")]
    if CLUSTER:  # the cluster itself says it lacks what a run asks for
        asked.append((["--ray-address", CLUSTER, "--gpus-per-run", "1"], "GPUs: less than one run's"))
    for args, words in asked:  # Ray itself is asked, in a process of its own
        done = bench(*GRID, "--methods", "pca", "--seeds", "0", *args, store_dir=tmp_path)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not list((tmp_path / "runs").glob("*/metrics.json"))


def _wait_for(predicate, timeout=600, what=""):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@needs_cluster
def test_killing_a_worker_node_loses_nothing(reference, tmp_path):
    """A third node joins, takes tasks, and is killed with SIGKILL mid-grid: Ray retries its
    tasks on the other nodes and every run ends stored once, with the in-process metrics."""
    ray = str(Path(sys.executable).parent / "ray")
    node = subprocess.Popen(
        [ray, "start", "--address", CLUSTER, "--num-cpus=2", "--memory=2000000000",
         "--object-store-memory=100000000", "--block", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: "Ray runtime started" in (node.stdout.readline() or ""), 120, "the extra node")
        driver = bench(
            *GRID, "--methods", "ae,pca,simclr", "--seeds", "0,1", "--ray-address", CLUSTER,
            store_dir=tmp_path, wait=False,
        )  # fmt: skip
        _wait_for(lambda: len(stored(tmp_path)) >= 1 or driver.poll() is not None, what="a first run")
        assert driver.poll() is None, driver.stdout.read()
        os.killpg(node.pid, signal.SIGKILL)  # the node's raylet and its workers
        out = driver.communicate(timeout=900)[0].decode()
        assert driver.returncode == 0, out
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
    same_results(stored(tmp_path), reference)
    assert len(list((tmp_path / "runs").iterdir())) == 6 and not list(tmp_path.rglob("claim.lock"))


def test_a_terminated_driver_releases_every_claim_and_keeps_what_finished(tmp_path):
    args = [*GRID, "--methods", "pca,ae", "--seeds", "0,1,2", "--workers", "1"]
    driver = bench(*args, store_dir=tmp_path, wait=False)
    _wait_for(lambda: len(stored(tmp_path)) >= 1 or driver.poll() is not None, what="one run")
    driver.send_signal(signal.SIGTERM)  # `kill PID`: the tidy exit of Ctrl-C
    out = driver.communicate(timeout=120)[0].decode()
    assert driver.returncode == 130 and "finished runs are stored" in out and "Traceback" not in out, out
    assert stored(tmp_path) and not list(tmp_path.rglob("claim.lock"))  # no claim left, finished kept


@needs_cluster
def test_killing_the_driver_redoes_nothing_finished(reference, tmp_path):
    """A grid on the cluster whose driver is killed with SIGKILL after two runs: the same command
    again runs only the rest, and the cluster's grid stores one run per spec, each with the
    in-process metrics."""
    args = [*GRID, "--methods", "ae,pca,simclr", "--seeds", "0,1", "--ray-address", CLUSTER]
    driver = bench(*args, store_dir=tmp_path, wait=False, start_new_session=True)
    _wait_for(lambda: len(stored(tmp_path)) >= 2 or driver.poll() is not None, what="two runs")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    finished = {k: (tmp_path / "runs" / k / "metrics.json").stat().st_mtime_ns for k in stored(tmp_path)}
    assert 2 <= len(finished) < 6
    again = bench(*args, store_dir=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(finished)} stored, {6 - len(finished)} to run" in again.stdout
    for key, mtime in finished.items():  # not redone, not rewritten
        assert (tmp_path / "runs" / key / "metrics.json").stat().st_mtime_ns == mtime
    same_results(stored(tmp_path), reference)
    assert len(list((tmp_path / "runs").iterdir())) == 6 and not list(tmp_path.rglob("claim.lock"))
