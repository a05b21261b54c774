"""Nothing invalid becomes a result: every bad input ends with one line and exit code 2, before
any run folder exists, and names that become paths stay inside their folder."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench import BenchError, store
from bench.__main__ import main
from bench.store import output

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--config", str(ROOT / "tests" / "quick.toml"), "--seeds", "0", "--latent-dims", "8"]  # least work
QUICK += ["--set", "train.epochs=1", "--methods", "ae"]


def _npz(tmp_path, name="d.npz", **arrays):
    base = dict(
        x_train=np.zeros((20, 8, 8), np.uint8),
        y_train=np.arange(20) % 2,
        x_test=np.zeros((6, 8, 8), np.uint8),
        y_test=np.arange(6) % 2,
    )
    path = tmp_path / name
    np.savez(path, **{**base, **arrays})
    return f"npz:{path}"


RUN_CASES = [
    # (extra args for `bench run`, words the one line must hold)
    (["--set", "train.epochs=-1"], "train.epochs=-1: must be >= 1"),
    (["--set", "train.epochs=0"], "train.epochs=0: must be >= 1"),
    (["--latent-dims", "0"], "grid.latent_dims=[0]: every item must be in [1,"),
    (["--latent-dims=-5"], "grid.latent_dims=[-5]"),
    (["--latent-dims", "1000000000"], "GiB for weights"),
    (["--latent-dims", "99999999999999999999"], "latent_dims=[99999999999999999999]: every item must be in"),
    (["--latent-dims", ","], "--latent-dims: expected at least one int"),
    (["--seeds", ","], "--seeds: expected at least one int"),
    (["--seeds=-1"], "grid.seeds=[-1]"),
    (["--methods", ""], "--methods: expected at least one str"),
    (["--set", "eval.knn_ks=0"], "eval.knn_ks=[0]"),
    (["--set", "eval.knn_ks=5,-1"], "every item must be >= 1 and <= 2147483647 (not -1)"),
    (["--set", "eval.knn_ks=[]"], "eval.knn_ks=[]: must be a non-empty list"),
    (["--set", "eval.mlp_hidden=0"], "eval.mlp_hidden=0"),
    (["--set", "eval.mlp_max_epochs=0"], "eval.mlp_max_epochs=0"),
    (["--set", "eval.mlp_patience=0"], "eval.mlp_patience=0"),
    (["--set", "eval.mlp_lr=0"], "eval.mlp_lr=0.0: must be > 0"),
    (["--set", "eval.mlp_min_steps=0"], "eval.mlp_min_steps=0"),
    (["--set", "eval.mlp_lr_factors=[]"], "eval.mlp_lr_factors=[]: must be a non-empty list"),
    (["--set", "eval.mlp_lr_factors=1,0"], "eval.mlp_lr_factors"),
    (["--set", "eval.mlp_weight_decays=-1"], "eval.mlp_weight_decays=[-1.0]"),
    (["--set", "eval.probe_max_iter=0"], "eval.probe_max_iter=0"),
    (["--set", "eval.probe_weight_decays=[]"], "eval.probe_weight_decays=[]"),
    (["--set", "eval.probe_weight_decays=-1"], "eval.probe_weight_decays=[-1.0]"),
    (["--set", "data.train_limit=-5"], "data.train_limit=-5: must be >= 0"),
    (["--set", "data.val_fraction=0"], "data.val_fraction=0.0: must be in (0, 1)"),
    (["--set", "data.val_fraction=1.5"], "data.val_fraction=1.5"),
    (["--set", "data.val_seed=-1"], "data.val_seed=-1"),
    (["--set", "train.batch_size=0"], "train.batch_size=0: must be >= 2"),
    (["--set", "train.lr=-1"], "train.lr=-1.0: must be > 0"),
    (["--set", "train.lr=nan"], "train.lr=nan: must be > 0"),
    (["--set", "train.lr=inf"], "train.lr=inf"),
    (["--set", "train.weight_decay=-0.1"], "train.weight_decay=-0.1"),
    (["--set", "train.warmup_epochs=-1"], "train.warmup_epochs=-1.0"),
    (["--set", "train.grad_clip=-1"], "train.grad_clip=-1.0"),
    (["--set", "train.views.epochs=0"], "train.views.epochs=0"),
    (["--set", "methods.ae.channels=[]"], "methods.ae.channels=[]: must be a non-empty list"),
    (["--set", "methods.all.channels=8,0"], "methods.all.channels=[8, 0]"),
    (["--set", "methods.all.nope=1"], "unknown key methods.all.nope"),
    (["--set", "methods.views.hflip=maybe"], "expected bool"),
    (["--set", "methods.ae.loss=l3"], "methods.ae.loss='l3': must be one of mse"),
    (["--set", "methods.ae.bottleneck=sparse"], "must be one of dense, spatial"),
    (["--set", "methods.dae.mask_prob=1"], "methods.dae.mask_prob=1.0"),
    (["--set", "methods.unet.skip_drop=2"], "methods.unet.skip_drop=2.0"),
    (["--set", "methods.simclr.crop_scale=0.9,0.1"], "two numbers lo <= hi in (0, 1]"),
    (["--set", "methods.simclr.temperature=0"], "methods.simclr.temperature=0.0"),
    (["--set", "methods.vae.beta=-1"], "methods.vae.beta=-1.0"),
    (["--set", "methods.mae.mask_ratio=1"], "methods.mae.mask_ratio=1.0"),
    (["--set", "methods.byol.momentum=1.5"], "methods.byol.momentum=1.5"),
    (["--set", "methods.vicreg.variance_weight=-1"], "methods.vicreg.variance_weight=-1.0"),
    (["--set", "methods.supervised.label_smoothing=1"], "methods.supervised.label_smoothing=1.0"),
    (["--set", "methods.pca.latent_dim=0"], "methods.pca.latent_dim=0"),
    (["--methods", "ae,nope"], "unknown method 'nope'"),
    (["--device", "tpu"], "--device 'tpu'"),
    # what the evaluators cannot measure, or cannot hold in memory: refused before training
    (["--set", "eval.knn_ks=100000"], "every k is more than the 1293 training images"),
    (["--set", "eval.knn_ks=50"], "labelled images at label fraction 0.01"),
    (["--set", "eval.mlp_hidden=100000000"], "the MLP head's 100000000 hidden units"),
    (["--set", "data.train_limit=1"], "data.train_limit=1 leaves fewer than two classes"),
]


def _one_line_exit_2(args, capsys) -> str:
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors go through the same one-line path
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("args, message", RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_bad_run_input_is_one_line_exit_2_and_leaves_nothing(args, message, capsys):
    err = _one_line_exit_2(["run", *QUICK, *args], capsys)
    assert message in err
    assert not (store.results_dir() / "runs").exists()  # no run folder, not even a half one


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"y_train": np.zeros(20, int)}, "the training labels hold 1 class"),
        ({"y_test": np.array([0, 1, 12, 0, 1, 0]), "classes": np.array(["a", "b"])}, "labels go up to 12"),
        ({"x_test": np.zeros((6, 9, 9), np.uint8)}, "train images (1, 8, 8) != test (1, 9, 9)"),
        ({"x_train": np.zeros((20, 8, 8), np.float32)}, "x_train has dtype float32"),
        ({"y_test": np.array([0, 1, 10**9, 0, 1, 0])}, "labels go up to 1000000000 but there are 26 images"),
        ({"x_train": np.zeros((20, 1, 1), np.uint8), "x_test": np.zeros((6, 1, 1), np.uint8)}, "SSIM needs"),
        (
            {
                "x_train": np.zeros((20, 512, 512), np.uint8),
                "x_test": np.zeros((6, 512, 512), np.uint8),
                "methods": "pixels",
            },
            "the probe's 262144x262144 preconditioner",
        ),  # fmt: skip
    ],
)
def test_bad_datasets_are_one_line_exit_2(tmp_path, arrays, message, capsys):
    methods = ["--methods", arrays.pop("methods", "ae")]
    err = _one_line_exit_2(["run", *QUICK, *methods, "--dataset", _npz(tmp_path, **arrays)], capsys)
    assert message in err
    assert not (store.results_dir() / "runs").exists()


def test_a_text_file_is_not_called_pickled_data(tmp_path, capsys):
    path = tmp_path / "notes.npz"
    path.write_text("x_train = 1\n")
    assert "not an .npz file (not a zip archive)" in _one_line_exit_2(
        ["run", *QUICK, "--dataset", f"npz:{path}"], capsys
    )


def test_truncated_mnist_is_not_called_a_download_failure(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, size in [("train-images-idx3-ubyte", 1000), ("train-labels-idx1-ubyte", 60008)]:
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * (size - 4))
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00" * 16)
    err = _one_line_exit_2(["run", *QUICK, "--dataset", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert "present but unreadable" in err and "download" not in err


@pytest.mark.parametrize("study", ["../../README", "/tmp/elsewhere", "a/b", "..", ".hidden"])
def test_a_study_name_never_leaves_its_folder(study, capsys):
    readme = (ROOT / "README.md").read_bytes()
    err = _one_line_exit_2(["tune", "--method", "ae", "--trials", "1", "--study", study], capsys)
    assert "--study" in err
    assert (ROOT / "README.md").read_bytes() == readme
    assert not Path("/tmp/elsewhere.db").exists() or study != "/tmp/elsewhere"


@pytest.mark.parametrize("key", ["../studies", "..", "x/y", "abc*"])
def test_evaluate_takes_only_run_keys(key, capsys):
    assert "run key" in _one_line_exit_2(["evaluate", key], capsys)


def test_evaluate_of_an_unfinished_run_is_one_line(capsys):
    run = store.results_dir() / "runs" / "abcdef0123456789"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "ae"}))
    assert "is not finished" in _one_line_exit_2(["evaluate", "abcdef"], capsys)


def test_dataset_slugs_are_file_names(tmp_path, capsys):
    weird = tmp_path / "my data!.npz"
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = (rng.random((40, 8, 8)) * 50 + y[:, None, None] * 150).astype(np.uint8)
    np.savez(weird, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    args = ["run", *QUICK[:-2], "--methods", "pixels", "--dataset", f"npz:{weird}"]
    assert main(args) == 0
    assert (store.results_dir() / "npz-my-data-.md").is_file()


def test_a_read_only_or_full_store_is_one_line(monkeypatch, capsys):
    def refuse(path, obj):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(store, "write_json", refuse)
    err = _one_line_exit_2(["run", *QUICK], capsys)
    assert "cannot write" in err and "Read-only file system" in err


def test_store_files_respect_the_umask():
    old = os.umask(0o022)
    try:
        path = store.results_dir() / "x.json"
        store.write_json(path, {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def _folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png"
                )
    return tmp_path / "imgs"


def test_image_folder_with_an_empty_class_or_a_broken_image(tmp_path, capsys):
    root = _folder(tmp_path)
    (root / "train" / "c").mkdir()
    err = _one_line_exit_2(["run", *QUICK, "--dataset", f"folder:{root}"], capsys)
    assert "every class folder needs images" in err
    (root / "train" / "c").rmdir()
    (root / "test" / "a" / "9.png").write_bytes(b"not a png")
    err = _one_line_exit_2(["run", *QUICK, "--dataset", f"folder:{root}"], capsys)
    assert "9.png cannot be read as an image" in err
    assert not (store.results_dir() / "runs").exists()


def test_links_in_an_image_folder_count_each_image_once_in_its_own_class(tmp_path, capsys):
    from bench.data import userdata

    root = _folder(tmp_path)
    (root / "train" / "a" / "loop").symlink_to(root / "train")  # a/loop/a/loop/... and a/loop/b/...
    (root / "train" / "b" / "again.png").symlink_to(root / "train" / "b" / "0.png")
    (root / "train" / "b" / "from-a.png").symlink_to(root / "train" / "a" / "1.png")
    raw = userdata.folder(root)
    assert len(raw["x_train"]) == 8 and list(raw["y_train"]) == [0] * 4 + [1] * 4  # 8 images, as made
    (root / "test" / "a" / "leak.png").symlink_to(root / "train" / "a" / "2.png")
    err = _one_line_exit_2(["run", *QUICK, "--dataset", f"folder:{root}"], capsys)
    assert "2.png is both a training and a test image" in err


FLAG_CASES = [
    (["run", *QUICK, "--seeds", "99999999999999999999"], "every item must be in [0, 2147483647]"),
    (["run", *QUICK, "--cpus-per-run", "nan"], "--cpus-per-run nan: must be a finite number > 0"),
    (["run", *QUICK, "--cpus-per-run", "inf"], "--cpus-per-run inf: must be a finite number > 0"),
    (["run", *QUICK, "--cpus-per-run", "0"], "--cpus-per-run 0: must be a finite number > 0"),
    (["run", *QUICK, "--cpus-per-run", "100000"], "this machine has"),
    (["run", *QUICK, "--gpus-per-run", "1"], "add --workers N or --ray-address"),
    (["run", *QUICK, "--gpus-per-run", "nan", "--workers", "1"], "--gpus-per-run nan"),
    (["run", *QUICK, "--workers", "0"], "--workers 0: must be >= 1"),
    (["run", *QUICK, "--set", "train=5"], "[train] is a table, not a value"),
    (["verify", "--tolerance", "-1", "--dataset", "digits"], "--tolerance: expected a finite number >= 0"),
    (["verify", "--tolerance", "nan", "--dataset", "digits"], "got 'nan'"),
    (["verify", "--psnr-tolerance", "inf", "--dataset", "digits"], "--psnr-tolerance"),
    (["verify", "--metric-tolerance", "mlp", "--dataset", "digits"], "expected METRIC=N such as mlp=8"),
    (["verify", "--metric-tolerance", "mlp=-3", "--dataset", "digits"], "expected a finite number >= 0"),
    (["verify", "--metric-tolerance", "accuracy=3", "--dataset", "digits"], "verify compares knn, linear"),
    (["verify", "--trained-in", ".", "--metric-tolerance", "top5=3"], "--metric-tolerance top5=3"),
    (["compare", "--trials", "1", "--max-hours", "nan"], "--max-hours: expected a finite number >= 0"),
    (["compare", "--trials", "1", "--max-hours", "-2"], "--max-hours"),
]


CFG = ["--config", str(ROOT / "configs/default.toml")]
TUNE = ["tune", "--method", "ae", "--trials", "1", *CFG]
COMPARE = ["compare", "--trials", "1", *CFG]
NOWHERE = ["--offline", "--data-dir", "/nonexistent"]
VERB_CASES = [  # every verb, on an empty store: (argv, words the one line must hold)
    (["tune", "--method", "ae", "--trials", "0", *CFG], "--trials 0: give 1 to 100,000 trials"),
    (["tune", "--method", "ae", "--trials", "-3", *CFG], "--trials -3"),
    (["tune", "--method", "ae", "--trials", "x", *CFG], "argument --trials: invalid int value: 'x'"),
    (["tune", "--method", "nope", "--trials", "1", *CFG], "unknown method 'nope'"),
    (["tune", "--method", "pixels", "--trials", "1", *CFG], "pixels declares no search space"),
    ([*TUNE, "--study", "../x"], "--study '../x': use letters"),
    ([*TUNE, "--workers", "0"], "--workers 0: give 1 to"),
    ([*TUNE, "--workers", "100000"], "--workers 100000: give 1 to"),
    (["tune", "--method", "ae", "--trials", "99999999999", *CFG], "--trials 99999999999: give 1 to 100,000"),
    ([*TUNE, "--latent-dim", "99999999999999999999"], "grid.latent_dims=[99999999999999999999]"),
    ([*TUNE, "--storage", "nosuch://x"], "cannot open study storage nosuch://x"),
    ([*TUNE, "--latent-dim", "0"], "grid.latent_dims=[0]"),
    ([*TUNE, "--seeds=-1"], "grid.seeds=[-1]"),
    ([*TUNE, "--sampler-seed=-1"], "--sampler-seed: expected an integer in [0, 2147483647]"),
    ([*TUNE, "--sampler-seed", "99999999999"], "--sampler-seed"),
    (
        ["tune", "--method", "simclr", "--trials", "1", "--multi-objective", *CFG],
        "simclr does not reconstruct",
    ),
    ([*TUNE, "--dataset", "nope"], "unknown dataset 'nope'"),
    ([*TUNE, "--set", "eval.knn_ks=100000"], "every k is more than the 1293 training images"),
    ([*TUNE, "--set", "eval.mlp_hidden=100000000"], "the MLP head's 100000000 hidden units"),
    ([*TUNE, "--device", "tpu"], "--device 'tpu'"),
    ([*TUNE, "--classes", "0"], "classes [0] must be two or more distinct indices"),
    ([*TUNE, "--probe-dataset", "mnist"], "unrecognized arguments: --probe-dataset"),
    ([*TUNE, "--tensorboard", "/dev/null"], "/dev/null is not a folder"),
    (
        ["tune", "--method", "ae", "--trials", "1", "--config", "/nonexistent.toml"],
        "config file /nonexistent.toml",
    ),
    (["compare", "--trials", "0", *CFG], "--trials 0: give 1 to 100,000 trials per learner"),
    ([*COMPARE, "--methods", "nope"], "unknown method 'nope'"),
    ([*COMPARE, "--methods", "pixels"], "pixels is a baseline (nothing to tune)"),
    ([*COMPARE, "--trial-epochs", "0"], "--trial-epochs: expected epochs (5) or a share"),
    ([*COMPARE, "--trial-epochs", "150%"], "--trial-epochs"),
    ([*COMPARE, "--latent-dim=-1"], "grid.latent_dims=[-1]"),
    ([*COMPARE, "--storage", "nosuch://x"], "cannot open study storage"),
    ([*COMPARE, "--dataset", "npz:/nonexistent.npz"], "npz file /nonexistent.npz not found"),
    ([*COMPARE, "--methods", "ae", "--set", "eval.knn_ks=100000"], "every k is more than"),
    ([*COMPARE, "--sampler-seed", "x"], "--sampler-seed: expected an integer"),
    (["report", "--runs"], "the store is empty"),
    (["evaluate", "0000"], "no run in"),
    (["evaluate", ""], "run key '': a key is up to 16 hex digits"),
    (["evaluate", "../x"], "run key '../x'"),
    (["diff", "ae", "pca"], "no stored run of dataset 'digits'"),
    (["diff", "ae", "pca", "--dataset", "../x"], "no stored run of dataset '../x'"),
    (["export", "0000"], "no run in"),
    (["export", "../x"], "run key '../x'"),
    (["export", "0000", "--device", "tpu"], "no run in"),
    (["runs", "--dataset", "nope"], "no stored run"),
    (["list", "--methods", "/nonexistent.py"], "learner file /nonexistent.py not found"),
    (["list", "--methods", "nope"], "unknown method 'nope'"),
    (["verify"], "choose the runs to verify"),
    (["verify", "0000"], "no run in"),
    (["verify", "--dataset", "digits"], "no finished run in the store matches"),
    (["verify", "--dataset", "digits", "--sample", "0"], "no finished run in the store matches"),
    (["verify", "--dataset", "digits", "--seeds", "x"], "--seeds 'x': give comma-separated integers"),
    (["verify", "--dataset", "digits", "--sample-seed=-1"], "--sample-seed: expected an integer"),
    (["verify", "--trained-in", "/nonexistent"], "no finished run in /nonexistent/runs"),
    (["verify", "--dataset", "digits", "--device", "tpu"], "no finished run"),
    (["run", *CFG, "--dataset", "cifar100", *NOWHERE], "CIFAR-100 not found under /nonexistent"),
    (["run", *CFG, "--dataset", "cifar100-coarse", *NOWHERE], "not found under /nonexistent"),
    (["run", *CFG, "--dataset", "mnist", *NOWHERE], "MNIST not found under /nonexistent/MNIST/raw"),
    (["run", *CFG, "--dataset", "fashion-mnist", *NOWHERE], "Fashion-MNIST not found"),
    (["run", *CFG, "--dataset", "cifar10", *NOWHERE], "CIFAR-10 not found under /nonexistent"),
    (["run", *CFG, "--dataset", "cifar10-jpeg", *NOWHERE], "/nonexistent/cifar10_jpeg.npz not found"),
    (["run", *CFG, "--dataset", "folder:/nonexistent"], "/nonexistent/train not found"),
    (["run", *CFG, "--dataset", "npz:" + str(ROOT / "README.md")], "is not an .npz file"),
    (["run", *CFG, "--probe-dataset", "nope"], "unknown dataset 'nope'"),
    (["run", *CFG, "--probe-dataset", "mnist", *NOWHERE], "MNIST not found"),
    (["run", *CFG, "--classes", "0,0"], "classes [0, 0] must be two or more distinct"),
    (["run", *CFG, "--classes", "0,99"], "classes [0, 99]"),
    (["run", *CFG, "--classes", "a-b"], "--classes: expected class indices"),
    (["run", *CFG, "--probe-classes", "0"], "classes [0]"),
    (["run", *CFG, "--methods", "torchscript:/nonexistent.pt"], "file /nonexistent.pt not found"),
    (["run", *CFG, "--methods", "timm:resnet18:/nonexistent.pth"], "give the weights file"),
    (["run", *CFG, "--methods", "nosuchmodule.learners"], "no module named 'nosuchmodule.learners'"),
    (["run", *CFG, "--tensorboard", "/dev/null"], "/dev/null is not a folder"),
    (["run", "--config", "none", "--set", "grid.methods=nope"], "unknown method 'nope'"),
    (["run", *CFG, "--set", "nosection.x=1"], "unknown config section 'nosection'"),
    (["run", *CFG, "--set", "noequals"], "--set 'noequals': expected section.key=value"),
    (["run", *CFG, "--set", "train.epochs=abc"], "train.epochs: expected int, got 'abc'"),
    (["run", *CFG, "--set", "train.epochs=1.5"], "expected int, got '1.5'"),
    (["run", *CFG, "--set", "eval.label_fractions=0"], "eval.label_fractions=[0.0]"),
    (["run", *CFG, "--set", "eval.label_fractions=1"], "eval.label_fractions=[1.0]"),
    (["run", *CFG, "--set", "eval.label_draws=0"], "eval.label_draws=0: must be >= 1"),
    (["run", *CFG, "--set", "eval.map_points=-1"], "eval.map_points=-1: must be >= 0"),
    (["run", *CFG, "--set", "train.compile=maybe"], "train.compile: expected bool"),
    (["run", *CFG, "--set", "data.classes=5,5"], "classes [5, 5]"),
    (["run", *CFG, "--latent-dims", "abc"], "--latent-dims: expected comma-separated ints"),
    (["run", *CFG, "--workers=-1"], "--workers -1: must be >= 1"),
    (["run", *CFG, "--workers", "1000000000"], "--workers 1000000000: must be >= 1 and <= 4096"),
    (["run", *CFG, "--classes", "1-"], "expected class indices such as 0-4"),
    (["run", *CFG, "--classes", "3-1"], "class range '3-1'"),
    (["run", *CFG, "--classes", "0-99999999999"], "class range '0-99999999999': expected 0 <= first"),
    (["run", *CFG, "--set", "data.classes=[0,99999999999999999999]"], "data.classes=[0, 9999"),
    (["run", *CFG, "--set", "data.val_seed=99999999999999999999"], "data.val_seed=99999999999999999999"),
    (["run", *CFG, "--set", "methods.ae.channels=[99999999999999999999]"], "methods.ae.channels="),
    (["run", *CFG, "--set", "methods.simclr.temperature=1e-320"], "temperature=1e-320: must be in [1e-08"),
    (["run", *CFG, "--set", "eval.label_draws=1000000000"], "label_draws=1000000000: must be >= 1 and <="),
    (["run", *CFG, "--set", "train.lr=1e-320"], "train.lr=1e-320: must be > 0 and <= 1000000.0"),
    (["run", *CFG, "--cpus-per-run=-1"], "--cpus-per-run -1"),
    (["run", *CFG, "--methods", "pca", "--ray-address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["nosuchverb"], "invalid choice: 'nosuchverb'"),
]


@pytest.mark.parametrize("args, message", VERB_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in VERB_CASES])
def test_every_verb_refuses_bad_input_in_one_line(args, message, capsys):
    assert message in _one_line_exit_2(args, capsys)
    assert not list(store.results_dir().glob("runs/*"))  # nothing made, not even a half run folder


@pytest.mark.parametrize("args, message", FLAG_CASES, ids=[" ".join(a[-2:]) for a, _ in FLAG_CASES])
def test_every_flag_has_a_range(args, message, capsys):
    assert message in _one_line_exit_2(args, capsys)
    assert not (store.results_dir() / "runs").exists()


def test_every_verbs_help_is_printed():
    for verb in ([], ["run"], ["tune"], ["compare"], ["report"], ["diff"], ["evaluate"], ["runs"],
                 ["export"], ["verify"], ["list"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main([*verb, "--help"])
        assert e.value.code == 0


def test_bad_config_and_dataset_files_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b"[train]\nepochs = 1 # caf\xe9\n")
    assert "is not UTF-8 text" in _one_line_exit_2(["run", "--config", str(cfg), "--methods", "ae"], capsys)
    (tmp_path / "cifar10_jpeg.npz").write_bytes(b"PK\x03\x04 truncated")
    args = ["run", *QUICK, "--dataset", "cifar10-jpeg", "--data-dir", str(tmp_path)]
    assert "cannot be read as CIFAR-10 JPEG arrays" in _one_line_exit_2(args, capsys)
    assert not (store.results_dir() / "runs").exists()


def test_a_write_never_replaces_a_device_or_folder(tmp_path):
    for target in (Path("/dev/null"), tmp_path):
        with pytest.raises(BenchError, match="refusing to replace it"):
            store.write_text(target, "x")
    assert Path("/dev/null").is_char_device() and tmp_path.is_dir()


def test_a_one_wide_latent_is_measured_not_a_traceback():
    assert main(["run", *QUICK[:-2], "--methods", "pca", "--latent-dims", "1"]) == 0
    (run,) = store.load_runs()
    assert run["metrics"]["status"] == "ok" and run["metrics"]["latent_map"]["points"] > 0


def test_an_output_through_a_link_writes_where_it_points_and_keeps_the_link(tmp_path):
    """`--out`, `--csv`, `--encoder`: a link is followed to a regular file (the link stays), and a
    link to a device or folder, or a loop of links, is refused as the device or folder would be."""
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    output.write(link, lambda tmp: Path(tmp).write_text("new"))
    assert link.is_symlink() and real.read_text() == "new"
    fresh = tmp_path / "dangling.csv"
    fresh.symlink_to(tmp_path / "made.csv")
    output.write(fresh, lambda tmp: Path(tmp).write_text("made"))
    assert fresh.is_symlink() and (tmp_path / "made.csv").read_text() == "made"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for name, to in (("null", Path("/dev/null")), ("dir", tmp_path), ("stdout", Path("/dev/stdout"))):
        bad = tmp_path / f"to-{name}"
        bad.symlink_to(to)
        with pytest.raises(BenchError, match="refusing"):
            output.write(bad, lambda tmp: Path(tmp).write_text("x"))
        assert bad.is_symlink() and os.readlink(bad) == str(to)
    with pytest.raises(BenchError, match="refusing to write through it"):
        output.write(tmp_path / "a", lambda tmp: Path(tmp).write_text("x"))
    assert Path("/dev/null").is_char_device() and Path("/dev/stdout").is_symlink()


def test_runs_csv_through_a_link_to_a_device_is_one_line(tmp_path, capsys):
    assert main(["run", *QUICK[:-2], "--methods", "pixels"]) == 0
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/null")
    assert "is not a regular file" in _one_line_exit_2(["runs", "--csv", str(link)], capsys)
    assert link.is_symlink() and Path("/dev/null").is_char_device()


@pytest.mark.slow
def test_a_run_folder_that_is_a_link_is_replaced_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    args = ["run", "--config", str(ROOT / "tests" / "quick.toml"), "--methods", "pixels"]
    spec_key = None
    assert main(args) == 0
    (spec_key,) = [p.name for p in (store.results_dir() / "runs").iterdir()]
    run = store.results_dir() / "runs" / spec_key
    for f in run.iterdir():
        f.unlink()
    run.rmdir()
    run.symlink_to(outside, target_is_directory=True)
    assert main(args) == 0
    assert list(outside.iterdir()) == [] and run.is_dir() and not run.is_symlink()
    assert (run / "metrics.json").is_file()
