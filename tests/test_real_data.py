"""Real data, small: MNIST from BENCH_DATA_DIR (skips cleanly when it is not there)."""

import pytest
import torch

from bench import config, data
from bench.config import Config
from bench.run import runner

pytestmark = pytest.mark.slow  # MNIST and CIFAR-10 runs


def test_mnist_is_read_whole_and_split_without_overlap(data_dir):
    ds = data.load(config.DataConfig(name="mnist"), data_dir, offline=True)
    assert ds.x_train.shape[1:] == (1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert len(ds.x_train) + len(ds.x_val) == 60000 and len(ds.x_test) == 10000
    assert abs(ds.shape.mean[0] - 0.1307) < 0.002  # train statistics, as published
    assert ds.classes[0].startswith("0") and "original files" in ds.provenance


def test_trained_ae_beats_random_encoder_on_mnist_subset(data_dir):
    cfg = Config()
    cfg.data = config.DataConfig(name="mnist", train_limit=6000)
    cfg.train.epochs, cfg.train.batch_size = 3, 128
    # the linear probe as in every run; the rest (MLP head, label efficiency, few-shot, map, the
    # stress evaluators) cut
    cfg.eval = config.EvalConfig(
        mlp_max_epochs=1,
        mlp_min_steps=30,
        mlp_lr_factors=[1.0],
        mlp_weight_decays=[1e-4],
        label_fractions=[0.1],
        label_draws=1,
        map_points=0,
        fewshot_ks=[1],
        fewshot_episodes=1,
        corruption_images=0,
        ood_images=100,
        ood_sources=["noise"],
    )
    ds = data.load(cfg.data, data_dir, offline=True)
    acc = {}
    for method in ("ae", "random"):
        spec = runner.spec(cfg, ds, method, {"channels": (16, 32, 64), "latent_dim": 32}, seed=0)
        acc[method] = runner.run_one(spec, ds, torch.device("cpu"))["linear"]["test_acc"]
    assert acc["ae"] > acc["random"] + 0.02, acc
    assert acc["ae"] > 0.85, acc
