import os

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
    parametrised over it (README: Your own learner)."""
    from bench import registry

    for entry in config.getoption("--learner"):
        registry.resolve(entry)


GREY8 = InputShape(1, 8, 8, (0.3,), (0.4,), num_classes=10)
RGB32 = InputShape(3, 32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), num_classes=10)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test writes its runs and cache under its own temp dir, never into the project."""
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    yield


@pytest.fixture
def data_dir():
    path = os.environ.get("BENCH_DATA_DIR")
    if not path or not os.path.isdir(os.path.join(path, "MNIST", "raw")):
        pytest.skip("real-data test: set BENCH_DATA_DIR to a folder holding MNIST/raw/")
    return path
