"""The command line as a user drives it: end to end on digits, resume, and every bad input."""

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import registry, store
from bench.__main__ import main
from bench.run import runner

pytestmark = pytest.mark.slow  # the commands end to end

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--config", str(ROOT / "tests" / "quick.toml")]  # the digits protocol cut to a test's budget


def test_end_to_end_on_digits(capsys):
    assert main(["run", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and out.count("linear") == len(registry.names())
    table = (store.results_dir() / "digits.md").read_text()
    assert "| learner" in table and "scikit-learn digits" in table
    assert f"**Reproduce:** `python -m bench {' '.join(['run', *QUICK])}`, then" in table
    for name in registry.names():
        assert f"| {name} " in table, name
    assert (store.results_dir() / "digits-accuracy-vs-latent.png").stat().st_size > 1000
    assert (store.results_dir() / "digits-accuracy-vs-psnr.png").stat().st_size > 1000
    # each run keeps its test predictions and latent map; the page compares, maps and checks
    for r in store.load_runs():
        assert {"predictions.npz", "latent_map.npz"} <= {p.name for p in store.run_dir(r["key"]).iterdir()}
    for section in ("## Which differences are real", "## Latent maps", "## Label-free measures"):
        assert section in table, section
    assert "1 seed: no verdict" in table and " ▲" in table  # one seed: shown, not decided
    for figure in ("pairwise", "latent-maps", "label-free"):
        assert (store.results_dir() / f"digits-{figure}.png").stat().st_size > 1000, figure

    assert main(["run", *QUICK]) == 0  # everything is stored: nothing trains again
    assert capsys.readouterr().out.count("(stored)") == len(registry.names())

    assert main(["report"]) == 0
    key = next(r["key"] for r in store.load_runs() if r["config"]["method"] == "ae")
    figures = [store.run_dir(key) / n for n in ("confusion.png", "recon.png", "loss.png")]
    assert not any(path.exists() for path in figures)  # drawn on demand, not in every run
    assert main(["report", "--runs"]) == 0  # a run's own figures, drawn from what it stored
    assert all(path.stat().st_size > 1000 for path in figures)
    assert main(["evaluate", key[:6]]) == 0
    out = capsys.readouterr().out
    assert "per-class accuracy" in out and "linear" in out and "PSNR" in out
    assert (store.run_dir(key) / "confusion.png").is_file() and (
        store.run_dir(key) / "latent_map.png"
    ).is_file()
    assert "label-free: RankMe" in out
    assert main(["diff", "ae", "unet"]) == 0  # one seed each: an interval over images, no verdict
    assert "digits d=8: ae - unet = " in (out := capsys.readouterr().out)  # the rows
    assert "1 seed: no verdict" in out
    assert main(["diff", "ae", "no-such-row"]) == 2
    assert not list(store.results_dir().rglob("*.partial"))

    assert main(["run", *QUICK[:2], "--methods", "pixels", "--seeds", "1"]) == 0
    table = (store.results_dir() / "digits.md").read_text()
    assert "the 2 commands listed under *Runs behind these tables*" in table
    assert f"`python -m bench run {' '.join(QUICK)}` ({len(registry.names())} runs)" in table
    assert "--methods pixels --seeds 1` (1 run)" in table


def test_interrupted_grid_continues_where_it_stopped(monkeypatch, capsys):
    real, calls = runner.run_one, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", flaky)
    args = ["run", *QUICK, "--methods", "pixels,pca,ae"]
    assert main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert len(store.load_runs()) == 1
    monkeypatch.setattr(runner, "run_one", real)
    assert main(args) == 0
    assert capsys.readouterr().out.count("(stored)") == 1 and len(store.load_runs()) == 3


def _npz(tmp_path, **arrays):
    base = dict(
        x_train=np.zeros((20, 8, 8), np.uint8),
        y_train=np.arange(20) % 2,
        x_test=np.zeros((6, 8, 8), np.uint8),
        y_test=np.arange(6) % 2,
    )
    path = tmp_path / "d.npz"
    np.savez(path, **{**base, **arrays})
    return f"npz:{path}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "ae,vae2"], "unknown method 'vae2'"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--set", "train.epoch=3"], "unknown key train.epoch"),
        (["--set", "train.epochs=abc"], "train.epochs: expected int"),
        (["--set", "methods.ae.loss=l3"], "methods.ae.loss='l3'"),
        (["--dataset", "npz:/no/such/file.npz"], "npz file /no/such/file.npz not found"),
        (["--config", "/no/such.toml"], "config file /no/such.toml not found"),
        (["--methods", "pca", "--latent-dims", "100"], "pca: latent_dim 100 exceeds the 64 input values"),
        (["--device", "tpu"], "--device 'tpu'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, message, capsys):
    assert main(["run", *QUICK, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (store.results_dir() / "runs").exists()  # nothing written, not even half


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_test": np.zeros((6, 9, 9), np.uint8)}, "train images (1, 8, 8) != test (1, 9, 9)"),
        ({"y_train": np.arange(19) % 2}, "y_train has shape (19,): expected (20,)"),
        ({"x_train": np.zeros((20, 8, 8), np.float32)}, "x_train has dtype float32"),
        ({"y_test": np.full(6, -1)}, "y_test must hold non-negative integer"),
    ],
)
def test_bad_data_files_give_one_line_and_exit_2(tmp_path, arrays, message, capsys):
    assert main(["run", *QUICK, "--dataset", _npz(tmp_path, **arrays)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_corrupt_npz_and_missing_torchvision_files(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    assert main(["run", *QUICK, "--dataset", f"npz:{bad}"]) == 2
    assert "not an .npz file (not a zip archive)" in capsys.readouterr().err
    assert main(["run", *QUICK, "--dataset", "mnist", "--data-dir", str(tmp_path), "--offline"]) == 2
    err = capsys.readouterr().err.strip()
    assert "MNIST not found under" in err and "--offline forbids" in err and "\n" not in err


def test_grid_skips_what_a_learner_cannot_take(capsys):
    assert main(["run", *QUICK, "--methods", "pca", "--latent-dims", "8,100"]) == 0
    out = capsys.readouterr().out
    assert "skipped: pca: latent_dim 100 exceeds the 64 input values" in out
    assert [r["config"]["method_config"]["latent_dim"] for r in store.load_runs()] == [8]


def test_npz_dataset_runs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = (rng.random((120, 8, 8, 3)) * 60 + y[:, None, None, None] * 60).astype(np.uint8)
    path = tmp_path / "toy.npz"
    np.savez(
        path, x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:], classes=np.array(["a", "b", "c"])
    )
    assert main(["run", *QUICK, "--dataset", f"npz:{path}", "--methods", "pixels"]) == 0
    assert (store.results_dir() / "npz-toy.md").is_file()
    assert "linear 100.00%" in capsys.readouterr().out


def test_nan_loss_is_recorded_as_diverged_and_the_rest_go_on(capsys):
    args = ["run", *QUICK, "--methods", "ae,pixels", "--set", "train.lr=1e6", "--set", "train.grad_clip=0"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "1 of 2 runs diverged" in err and "\n" not in err
    statuses = sorted(r["metrics"]["status"] for r in store.load_runs())
    assert statuses == ["diverged", "ok"]
    assert "diverged" in (store.results_dir() / "digits.md").read_text()


def test_evaluate_unknown_key(capsys):
    assert main(["evaluate", "ffffffff"]) == 2
    assert "no run" in capsys.readouterr().err


def test_argparse_errors_are_one_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--seeds", "a,b"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_list_names_everything(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for word in [*registry.names(), "digits", "mnist", "cifar100", "npz:PATH", "configs/mnist.toml"]:
        assert word in out


def test_real_process_prints_no_traceback(tmp_path):
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--methods", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown method 'nope'")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_image_folder_dataset_runs(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        for cls, level in (("dark", 40), ("light", 200)):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(level, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    assert main(["run", *QUICK, "--dataset", f"folder:{tmp_path / 'imgs'}", "--methods", "pixels"]) == 0
    assert "linear 100.00%" in capsys.readouterr().out
    (tmp_path / "imgs" / "test" / "dark").rename(tmp_path / "imgs" / "test" / "dim")
    assert main(["run", *QUICK, "--dataset", f"folder:{tmp_path / 'imgs'}", "--methods", "pixels"]) == 2
    assert "differ from train/" in capsys.readouterr().err


def test_tensorboard_gets_every_loss_term_and_evaluate_plots_them(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "tb"
    args = ["run", *QUICK, "--set", "train.epochs=2", "--methods", "vae", "--tensorboard", str(board)]
    assert main(args) == 0
    (run_dir,) = (board / "digits").iterdir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/recon", "train/kl"}
    assert [e.step for e in events.Scalars("train/kl")] == [1, 2]
    (run,) = store.load_runs()
    assert main(["evaluate", run["key"][:8]]) == 0
    out = capsys.readouterr().out
    assert "train kl" in out and (store.run_dir(run["key"]) / "loss.png").stat().st_size > 1000


def test_a_new_learner_is_one_file(tmp_path, checkout):
    """Drop one file into methods/ and nothing else: `list`, the default grid, the row names and
    the table pick it up (in a fresh process, as a user would run it)."""
    source = (checkout / "methods" / "vicreg.py").read_text()
    (checkout / "methods" / "zzprobe.py").write_text(
        source.replace('@register("vicreg")', '@register("zzprobe")')
    )
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"), BENCH_CACHE_DIR=str(tmp_path / "c"))
    run = [sys.executable, "-m", "bench"]
    listed = subprocess.run(
        [*run, "list"], cwd=checkout, env=env, capture_output=True, text=True, timeout=120
    )
    assert "zzprobe" in listed.stdout and "views" in listed.stdout.split("zzprobe")[1].split("\n")[0]
    args = [*run, "run", *QUICK, "--methods", "pixels,zzprobe"]
    done = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "r" / "digits.md").read_text()
    assert "| zzprobe " in table  # its own name: the [methods.views] tables are its protocol
    configs = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").glob("*/config.json")]
    (mine,) = [c["method_config"] for c in configs if c["method"] == "zzprobe"]
    assert mine["crop_scale"] == [0.5, 1.0] and mine["channels"] == [32, 64]  # its neighbours' settings


NCM = '''"""Nearest class mean: a test latent takes the class of the closest training-class mean."""

from dataclasses import dataclass

import torch

from bench.checks import at_least
from bench.evaluators import Card, Column, Evaluator, accuracy, register



@register("zzncm")
class NearestClassMean(Evaluator):
    columns = (Column("zzncm", accuracy("zzncm"), "NCM %", 100, unit="points", progress=True),)

    @dataclass
    class Config:
        ncm_shrink: float = at_least(0, 0.0)  # pulls each class mean towards the global one

    def card(self, cfg):
        return [Card("NCM", "nothing", "-", "-", "test", 1)]

    def __call__(self, ctx):
        z, y = ctx.z, ctx.y
        means = torch.stack([z["train"][y["train"] == c].mean(0) for c in range(ctx.num_classes)])
        means = (1 - ctx.cfg.ncm_shrink) * means + ctx.cfg.ncm_shrink * z["train"].mean(0)
        test = ctx.test("zzncm")
        pred = torch.cdist(test.z, means).argmin(1)
        return {"zzncm": {"test_acc": (pred == test.y).float().mean().item()}}
'''


def test_a_new_evaluator_is_one_file(tmp_path, checkout):
    """Drop one file into bench/evaluators/ and nothing else: its config field joins [eval], its
    column joins the main table, `bench runs`, `bench verify` and the progress lines; runs stored
    before it keep their keys (nothing retrains) and show `-` for it (in fresh processes, as a
    user would run them)."""
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"), BENCH_CACHE_DIR=str(tmp_path / "c"))

    def bench(*args):
        done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode in (0, 1), done.stderr[-2000:]
        return done.stdout

    grid = ["run", *QUICK, "--methods", "pixels,pca"]
    bench(*grid)
    before = sorted(p.name for p in (tmp_path / "r" / "runs").iterdir())
    (checkout / "bench" / "evaluators" / "zzncm.py").write_text(NCM)
    again = bench(*grid)
    assert (
        again.count("stored)") == 2 and sorted(p.name for p in (tmp_path / "r" / "runs").iterdir()) == before
    )
    row = next(x for x in (tmp_path / "r" / "digits.md").read_text().splitlines() if x.startswith("| pca "))
    header = next(x for x in (tmp_path / "r" / "digits.md").read_text().splitlines() if "| learner" in x)
    cells = dict(zip([h.strip() for h in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["NCM %"] == "-"  # measured before the evaluator existed
    fresh = bench(*grid[:-1], "pca", "--seeds", "1", "--set", "eval.ncm_shrink=0.5")
    assert "zzncm " in fresh.splitlines()[-2] or any("zzncm " in x for x in fresh.splitlines())
    runs = list(csv.DictReader(io.StringIO(bench("runs"))))
    assert "zzncm" in runs[0] and sorted(bool(r["zzncm"]) for r in runs) == [False, False, True]
    (key,) = [r["key"] for r in runs if r["zzncm"]]
    checked = bench("verify", key, "--scratch", str(tmp_path / "v"))
    assert "zzncm " in checked and "  zzncm " in checked.split("difference")[1]


def test_steer_only_measures_the_linear_probe_and_stays_out_of_the_tables(capsys):
    """`eval.steer_only` (what a study's trial is scored by): the linear probe and the validation
    reconstruction only; its own run key, the full run's checkpoint; tables leave it out."""
    from bench.store import compat

    assert main(["run", *QUICK, "--methods", "ae"]) == 0
    assert main(["run", *QUICK, "--methods", "ae", "--set", "eval.steer_only=true"]) == 0
    full, steer = sorted(store.load_runs(), key=lambda r: bool(r["metrics"].get("steer_only")))
    assert full["key"] != steer["key"] and store.keys(full["config"])[1] == store.keys(steer["config"])[1]
    m = steer["metrics"]
    assert not full["metrics"]["from_checkpoint"]  # trained here, then cached for the trial
    assert m["steer_only"] and m["from_checkpoint"] and not compat.stale(m)
    assert m["linear"]["val_acc"] == full["metrics"]["linear"]["val_acc"]  # the same score
    assert not {"mlp", "knn", "label_efficiency", "rankme"} & set(m)
    assert m["recon"] is None and m["recon_val"]["psnr"] == full["metrics"]["recon_val"]["psnr"]
    assert "steer_only" not in (store.results_dir() / "digits.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", steer["key"]]) == 0
    assert "measured only by what steers its study" in capsys.readouterr().out
    assert main(["runs"]) == 0 and steer["key"] in capsys.readouterr().out


def test_the_design_cards_command_reproduces_the_committed_digits_page(tmp_path, move_store, capsys):
    """`python -m bench run --methods ae,unet` with no --config is the digits protocol
    (configs/default.toml): on a copy of the committed store it trains nothing, and the page it
    rewrites is byte-identical to the committed one (figures included)."""
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(ROOT / "results", copy)
    held = set((copy / "runs").glob("*/claim.lock"))  # a grid in flight in this checkout's store
    move_store(results=copy, cache=tmp_path / "cache")
    capsys.readouterr()
    assert main(["run", "--methods", "ae,unet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("config: configs/default.toml (the dataset's protocol")
    runs = [x for x in lines if x.startswith("[")]
    assert len(runs) == 12 and all(x.endswith("(stored)") for x in runs)
    for page in ["digits.md", *(p.name for p in (ROOT / "results").glob("digits-*.png"))]:
        assert (copy / page).read_bytes() == (ROOT / "results" / page).read_bytes(), page
    assert set((copy / "runs").glob("*/claim.lock")) == held
    # `make bench`'s grid, as the Makefile gives it: every run it trains has a committed run of the
    # same key, so its verify compares them all (none "with no committed run").
    recipe = (ROOT / "Makefile").read_text().split("\nbench: ")[1].split("\n\n")[0]
    (line,) = [x for x in recipe.splitlines() if " -m bench run " in x]
    assert main(shlex.split(line.split(" -m bench ")[1])) == 0
    runs = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert len(runs) == len(registry.names()) and all(x.endswith("(stored)") for x in runs), runs


def test_a_broken_learner_file_is_one_line_and_the_rest_still_work(tmp_path, checkout):
    """A user's learner file that fails to import names itself in one warning line; `bench list`
    and a grid of the other learners still run."""
    (checkout / "methods" / "zzbroken.py").write_text(
        "from bench.method import Method\n\nclass Broken(Method:\n    pass\n"
    )
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"), BENCH_CACHE_DIR=str(tmp_path / "c"))
    run = [sys.executable, "-m", "bench"]
    listed = subprocess.run(
        [*run, "list"], cwd=checkout, env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and "| ae " not in listed.stdout and "  ae " in listed.stdout
    (warning,) = listed.stderr.strip().splitlines()
    assert "methods/zzbroken.py is skipped: line 3: SyntaxError" in warning
    grid = [*run, "run", *QUICK, "--methods", "pca"]
    done = subprocess.run(grid, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_a_closed_pipe_ends_the_command_quietly():
    """`bench runs | head -c 10` on the committed store (its CSV is far larger than a pipe's
    buffer): the reader stops early, and the command ends with no error line and exit 0."""
    env = dict(os.environ, BENCH_RESULTS_DIR=str(ROOT / "results"))  # read only
    cmd = f"{sys.executable} -m bench runs | head -c 10"
    shell = ["bash", "-o", "pipefail", "-c", cmd]
    done = subprocess.run(shell, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout == "key,datase" and done.stderr == "" and done.returncode == 0


def test_a_learner_keeps_its_colour_across_a_pages_figures(monkeypatch, tmp_path):
    """byol has no reconstruction: the accuracy-vs-PSNR figure leaves it out, and dae must still
    be drawn in the colour it has in the accuracy-vs-latent figure."""
    import matplotlib.axes
    import matplotlib.colors

    seen: dict[str, set] = {}
    for name in ("errorbar", "scatter"):
        real = getattr(matplotlib.axes.Axes, name)

        def record(self, *args, _real=real, **kw):
            if kw.get("label") and kw.get("color") is not None:
                seen.setdefault(kw["label"], set()).add(matplotlib.colors.to_hex(kw["color"]))
            return _real(self, *args, **kw)

        monkeypatch.setattr(matplotlib.axes.Axes, name, record)
    assert main(["run", *QUICK, "--methods", "ae,byol,dae", "--latent-dims", "8,16"]) == 0
    assert {"ae", "byol", "dae"} <= set(seen)
    assert all(len(colours) == 1 for colours in seen.values()), seen


def _docs_block(heading: str) -> str:
    """The python code block under a heading of docs/extending.md."""
    section = (ROOT / "docs" / "extending.md").read_text().split(f"## {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_snippets_run(tmp_path, checkout):
    """The docs' learner snippet (and the README's) imports what it uses (its bodies are `...`:
    its import lines run); its evaluator snippet is whole: dropped in as bench/evaluators/ncm.py,
    it measures."""
    learner = _docs_block("Adding a learner")
    exec(learner.split("@register")[0], {})  # the imports a user copies
    readme = (ROOT / "README.md").read_text().split("## Add a learner\n", 1)[1]
    exec(readme.split("```python\n", 1)[1].split("@register")[0], {})
    evaluator = checkout / "bench" / "evaluators" / "ncm.py"
    assert not evaluator.exists()
    evaluator.write_text(_docs_block("Adding an evaluator"))
    env = dict(os.environ, BENCH_RESULTS_DIR=str(tmp_path / "r"), BENCH_CACHE_DIR=str(tmp_path / "c"))
    cmd = [sys.executable, "-m", "bench", "run", *QUICK, "--methods", "pca"]
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and " ncm " in done.stdout, done.stderr[-2000:]
    assert "| NCM %" in (tmp_path / "r" / "digits.md").read_text()
