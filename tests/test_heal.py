"""A store that heals: a corrupt file is reported in one warning line and redone, never a
traceback; a full disk costs the checkpoint, not the run; two processes split a grid."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import store
from bench.__main__ import main
from bench.store import claims
from tests.conftest import QUICK_GRID as GRID
from tests.conftest import ae_run

pytestmark = pytest.mark.slow  # the store broken and mended under real commands and processes

ROOT = Path(__file__).resolve().parent.parent
CORRUPTIONS = {"truncated": lambda b: b[: len(b) // 3], "garbage": lambda b: b"\x00not what it was\xff" * 3}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
@pytest.mark.parametrize("name", ["metrics.json", "config.json"])
def test_a_corrupt_run_file_is_reported_and_the_run_redone(name, how, stored, capsys):
    run = stored
    path = store.run_dir(run["key"]) / name
    path.write_bytes(CORRUPTIONS[how](path.read_bytes()))
    capsys.readouterr()
    assert main(["report"]) == 0  # the report skips it with a warning
    err = capsys.readouterr().err
    assert f"{path} cannot be read" in err and "Traceback" not in err
    assert main(GRID) == 0  # the next run of its grid redoes it
    assert ae_run()["metrics"]["linear"] == run["metrics"]["linear"]


@pytest.mark.parametrize("kind", ["ckpt", "latents"])
def test_a_corrupt_cache_file_is_deleted_and_recomputed(kind, stored, capsys):
    run = stored
    path = store.cache_dir() / kind / f"{store.keys(run['config'])[1]}.pt"
    path.write_bytes(b"garbage")
    (store.run_dir(run["key"]) / "metrics.json").unlink()  # the run must be made again
    capsys.readouterr()
    assert main(GRID) == 0
    assert f"cache file {path} cannot be loaded" in capsys.readouterr().err
    assert ae_run()["metrics"]["linear"] == run["metrics"]["linear"]
    assert path.stat().st_size > 1000  # written anew


def _nan_weights(ckpt):
    name = next(k for k, t in ckpt["state"].items() if t.is_floating_point())
    ckpt["state"][name] = ckpt["state"][name] * float("nan")
    return ckpt


def _first(state):
    return {k: t.flatten()[:1] for k, t in state.items()}


WRONG_CACHE = {  # loads, but does not fit its run: (kind, mutate, what the warning says)
    "latents: 5 rows": ("latents", lambda z: {**z, "test": z["test"][:5]}, "test latents of shape (5,"),
    "latents: NaN": ("latents", lambda z: {**z, "val": z["val"] * float("nan")}, "not finite"),
    "latents: a list": ("latents", lambda z: list(z.values()), "is not a latents file"),
    "latents: widths": ("latents", lambda z: {**z, "train": z["train"][:, :3]}, "different widths"),
    "ckpt: NaN weights": ("ckpt", _nan_weights, "weights that are not finite"),
    "ckpt: no record": ("ckpt", lambda c: c["state"], "is not a checkpoint"),
    "ckpt: wrong shapes": ("ckpt", lambda c: {**c, "state": _first(c["state"])}, "does not fit"),
}


@pytest.mark.parametrize("case", sorted(WRONG_CACHE))
def test_a_cache_file_that_loads_but_does_not_fit_its_run_is_redone(case, stored, capsys):
    import torch

    kind, mutate, says = WRONG_CACHE[case]
    run = stored
    path = store.cache_dir() / kind / f"{store.keys(run['config'])[1]}.pt"
    torch.save(mutate(torch.load(path, weights_only=True)), path)
    (store.run_dir(run["key"]) / "metrics.json").unlink()  # the run must be made again
    capsys.readouterr()
    assert main(GRID) == 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert ae_run()["metrics"]["linear"] == run["metrics"]["linear"]  # and again on every retry:
    assert store.load_tensor(path, None) is not None and "does not fit" not in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00truncated", b"\x00garbage\xff" * 300])
def test_a_corrupt_study_database_costs_only_its_own_pages(content, stored, capsys):
    db = store.results_dir() / "studies" / "broken.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(content)
    capsys.readouterr()
    assert main(["report"]) == 0  # the dataset pages are still written
    err = capsys.readouterr().err
    assert "Traceback" not in err and (not content or f"{db} is not a readable study database" in err)
    assert (store.results_dir() / "digits.md").is_file()


def test_a_corrupt_reconstruction_grid_only_loses_its_figure(stored, capsys):
    path = store.run_dir(stored["key"]) / "recon.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert main(["report", "--runs"]) == 0
    assert f"{path} cannot be read" in capsys.readouterr().err


def test_a_full_disk_costs_the_checkpoint_not_the_run(monkeypatch, capsys):
    real = store.save_tensor

    def full(path, obj):
        if "ckpt" in str(path):
            raise OSError(28, "No space left on device")
        real(path, obj)

    monkeypatch.setattr(store, "save_tensor", full)
    assert main(GRID) == 0
    assert "could not save the checkpoint" in capsys.readouterr().err
    assert ae_run()["metrics"]["status"] == "ok"


@pytest.fixture
def full_disk(tmp_path):
    """A real file system of a few kilobytes (tmpfs): what a full disk does, not a mock of it.
    Mounting needs root (CI runs as root); elsewhere the test is skipped."""
    mounts = []

    def mount(name, kib):
        folder = tmp_path / name
        folder.mkdir()
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no mount command here")
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not permitted'})")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_real_full_cache_disk_costs_only_the_cache(full_disk, monkeypatch, capsys, move_store):
    move_store(cache=str(full_disk("cache", 16)))  # no checkpoint fits
    assert main(GRID) == 0
    err = capsys.readouterr().err
    assert "could not save the checkpoint" in err and "Traceback" not in err
    status = {r["config"]["method"]: r["metrics"]["status"] for r in store.load_runs()}
    assert status == {"ae": "ok", "pixels": "ok"}
    assert not [p for p in store.cache_dir().rglob("*") if p.name.endswith(".partial")]


def test_a_real_full_store_is_one_line_naming_the_file(full_disk, monkeypatch, capsys, move_store):
    move_store(results=str(full_disk("results", 12)))
    assert main(GRID) == 2
    err = capsys.readouterr().err.strip()
    (last,) = err.splitlines()  # one line
    assert last.startswith(f"error: cannot write {store.results_dir()}") and "No space left on device" in last
    assert ".partial" not in last and "Traceback" not in err
    assert not store.load_runs()  # nothing half-written counts as a result
    assert not [p for p in store.results_dir().rglob("*") if p.name.endswith(".partial")]


def test_a_stale_claim_of_a_dead_process_is_taken_over():
    key = "0123456789abcdef"
    lock = store.run_dir(key) / "claim.lock"
    lock.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{os.uname().nodename} {dead.pid}")
    with claims.claim(key) as mine:
        assert mine and lock.read_text().endswith(str(os.getpid()))
    assert not lock.exists()
    with claims.claim(key) as first, claims.claim(key) as second:  # a live claim is respected
        assert first and not second


_RACER = """
import os, sys
from bench import store
from bench.store import claims
held = []
with store.using(store.Store.from_env()):  # a process of its own: an edge
    for key in sys.argv[1].split(","):
        with claims.claim(key) as mine:
            if mine:
                marker = store.run_dir(key) / "held"
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError: held twice
                os.close(fd)
                held.append(key)
                marker.unlink()
print(len(held))
"""


def test_claims_do_not_race_and_a_killed_claim_is_taken(tmp_path):
    """Four processes claim the same 400 keys at once: no key is ever held by two at a time; and a
    claim whose process was killed with SIGKILL is free at once."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the test's own store (conftest)
    keys = ",".join(f"{i:016x}" for i in range(400))
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, keys], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    assert sum(int(out) for out, _ in outs) >= 400  # every key was claimed by someone
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from bench import store; from bench.store import claims\n"
         "with store.using(store.Store.from_env()), claims.claim('00000000000000aa') as m:\n"
         "    print(m, flush=True); time.sleep(600)"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "True"
    with claims.claim("00000000000000aa") as mine:
        assert not mine  # held by a live process
    holder.kill()  # SIGKILL: no finally, no cleanup
    holder.wait()
    with claims.claim("00000000000000aa") as mine:
        assert mine


def test_two_processes_on_one_store_split_the_grid(tmp_path):
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"), BENCH_CACHE_DIR=str(tmp_path / "c"))
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "bench", *GRID[:-1], "ae,dae,unet,vae", "--seeds", "0,1"]
    cmd += ["--set", "train.epochs=10"]  # runs long enough that the two processes meet
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = [
        line.split(":")[0].split("] ")[1] for out in outs for line in out.splitlines() if line.endswith(" s)")
    ]
    assert len(trained) == len(set(trained)), f"a run was trained twice: {trained}"
    runs = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").glob("*/metrics.json")]
    assert len(runs) == 8 and all(r["status"] == "ok" for r in runs)
    both = [line for out in outs for line in out.splitlines() if line.startswith("[")]
    assert len(both) == 16  # each process accounted for every run: trained, stored or left to the other


def test_a_corrupt_decoded_dataset_cache_is_decoded_again(tmp_path, capsys):
    """cifar10-jpeg decodes its JPEGs once into the cache; a broken cache file is redone."""
    import io

    import numpy as np
    from PIL import Image

    arrays = {"classes": np.array(["a", "b"])}
    for split, n in (("train", 30), ("test", 8)):
        blobs = []
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.full((32, 32, 3), 60 + 120 * (i % 2), np.uint8)).save(buf, "JPEG", quality=75)
            blobs.append(buf.getvalue())
        arrays[f"jpeg_{split}"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"jpeg_{split}_offsets"] = np.cumsum([0, *map(len, blobs)]).astype(np.int64)
        arrays[f"y_{split}"] = (np.arange(n) % 2).astype(np.uint8)
    np.savez(tmp_path / "cifar10_jpeg.npz", **arrays)
    args = [*GRID[:-1], "random", "--dataset", "cifar10-jpeg", "--data-dir", str(tmp_path)]
    assert main(args) == 0
    (cached,) = (store.cache_dir() / "data").glob("cifar10-jpeg-*.npz")
    cached.write_bytes(cached.read_bytes()[:100])
    assert main([*args, "--force"]) == 0
    assert f"cache file {cached} cannot be read" in capsys.readouterr().err
    assert (store.results_dir() / "cifar10-jpeg.md").is_file()
    memo = json.loads((store.cache_dir() / "data" / "hashes.json").read_text())  # hashed once, remembered
    assert [v[2][:16] for v in memo.values()] == [cached.name[len("cifar10-jpeg-") : -4]]
    src = tmp_path / "cifar10_jpeg.npz"
    np.savez(src, **{**arrays, "y_train": 1 - arrays["y_train"]})  # another file at the same path
    os.utime(src, ns=(1, 1))
    assert main(args) == 0
    assert len(list((store.cache_dir() / "data").glob("cifar10-jpeg-*.npz"))) == 2  # never the old arrays


def test_any_failure_to_write_a_cache_file_costs_only_the_cache(monkeypatch, capsys):
    """torch.save on a full disk raises RuntimeError, not OSError: the run's results are kept."""
    real = store.save_tensor

    def full(path, obj):
        if "ckpt" in str(path) or "latents" in str(path):
            raise RuntimeError("[enforce fail at inline_container.cc:642] . unexpected pos 64 vs 0")
        real(path, obj)

    monkeypatch.setattr(store, "save_tensor", full)
    assert main(GRID) == 0
    err = capsys.readouterr().err
    assert "could not save the checkpoint" in err and "Traceback" not in err
    assert ae_run()["metrics"]["status"] == "ok"


PARSES_BUT_WRONG = {
    "metrics.json": [{"status": "ok"}, {"status": "weird"}, [], {"status": "ok", "linear": "x"},
                     {"status": "ok", "linear": {"test_acc": "high"}}],
    "config.json": [{"method": "ae"}, {"method": "ae", "seed": "0"}, "ae", None],
}  # fmt: skip
WRONG_CASES = [(name, value) for name, values in PARSES_BUT_WRONG.items() for value in values]


@pytest.mark.parametrize("name, value", WRONG_CASES, ids=[f"{n}={v!r}" for n, v in WRONG_CASES])
def test_a_run_file_that_parses_but_fails_the_schema_is_redone(name, value, stored, capsys):
    run = stored
    path = store.run_dir(run["key"]) / name
    path.write_text(json.dumps(value))
    capsys.readouterr()
    for verb in (["report"], ["runs"]):
        assert main(verb) == 0
        err = capsys.readouterr().err
        assert f"{store.run_dir(run['key'])}:" in err and "Traceback" not in err
    assert main(["evaluate", run["key"]]) == 2
    assert main(GRID) == 0  # redone
    assert ae_run()["metrics"]["linear"] == run["metrics"]["linear"]


def _stopped_in_epoch_3(monkeypatch, seeds):
    """Specs of a 3-epoch ae run for each seed (a resume state after every epoch); the last seed's
    run is stopped in its third epoch, as Ctrl-C would, leaving its resume state."""
    import torch

    from bench import config, data
    from bench.run import runner, train

    monkeypatch.setattr(train, "RESUME_EVERY_S", 0.0)
    cfg = config.load(ROOT / "tests" / "quick.toml", ["train.epochs=3", "data.train_limit=256"])
    ds = data.load(cfg.data)
    specs = [runner.spec(cfg, ds, "ae", {"channels": (8, 16), "latent_dim": 8}, seed=s) for s in seeds]

    def stop(epoch, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_one(specs[-1], ds, torch.device("cpu"), on_epoch=stop)
    return specs, ds


def test_a_stopped_run_resumes_from_its_last_epoch(tmp_path, monkeypatch, move_store):
    """Ctrl-C or `kill PID` in epoch 3 of 3: the next run of it trains epoch 3 only, and stores
    exactly what the uninterrupted run stores."""
    import torch

    from bench.run import runner

    (spec,), ds = _stopped_in_epoch_3(monkeypatch, seeds=(0,))
    cpu = torch.device("cpu")
    resume = store.cache_dir() / "resume" / f"{spec.train_key}.pt"
    assert resume.is_file() and not store.is_done(spec.key)
    resumed = runner.run_one(spec, ds, cpu)
    assert resumed["train"]["resumed_after_epoch"] == 2 and not resume.exists()
    move_store(results=str(tmp_path / "whole"), cache=str(tmp_path / "whole-cache"))
    whole = runner.run_one(spec, ds, cpu)
    assert resumed["train"]["loss_per_epoch"] == whole["train"]["loss_per_epoch"]
    for name in ("linear", "mlp", "knn", "recon"):
        assert resumed[name] == whole[name], name


def test_a_resume_state_that_is_not_this_runs_is_ignored(tmp_path, monkeypatch, capsys, move_store):
    """A state saved by another seed's run and copied under this run's key, one whose epoch or
    digest was edited, and one whose generator entry does not load: each is warned about, deleted
    and trained from scratch, and the stored run is the uninterrupted one."""
    import torch

    from bench.run import runner, train

    (seed0, seed1), ds = _stopped_in_epoch_3(monkeypatch, seeds=(0, 1))  # seed 1's run stopped
    cpu = torch.device("cpu")
    folder = store.cache_dir() / "resume"
    state = torch.load(folder / f"{seed1.train_key}.pt", weights_only=True)
    move_store(results=str(tmp_path / "whole"), cache=str(tmp_path / "whole-cache"))
    whole = runner.run_one(seed0, ds, cpu)
    lying = {
        "another run's": state,
        "an edited epoch": {**state, "owner": seed0.train_key, "seed": 0, "epoch": 1_000_000},
        "an edited digest": {**state, "owner": seed0.train_key, "seed": 0},
        "a broken generator": {**state, "gen": torch.zeros(3, dtype=torch.uint8)},
    }
    lying["a broken generator"]["owner"], lying["a broken generator"]["seed"] = seed0.train_key, 0
    lying["a broken generator"]["digest"] = train.digest(
        {k: lying["a broken generator"][k] for k in train.PROGRESS}
    )
    for i, (what, bad) in enumerate(lying.items()):
        move_store(results=str(tmp_path / f"r{i}"), cache=str(tmp_path / f"c{i}"))
        path = store.cache_dir() / "resume" / f"{seed0.train_key}.pt"
        path.parent.mkdir(parents=True)
        torch.save(bad, path)
        capsys.readouterr()
        got = runner.run_one(seed0, ds, cpu)
        assert "resumed_after_epoch" not in got["train"] and not path.exists(), what
        assert "warning:" in capsys.readouterr().err, what
        assert got["train"]["loss_per_epoch"] == whole["train"]["loss_per_epoch"], what
        assert got["linear"] == whole["linear"] and got["weights_sha256"] == whole["weights_sha256"], what
