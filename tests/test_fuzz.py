"""The store, fuzzed: every kind of file a run folder and the cache hold (the run's config and
metrics, its kept arrays, the checkpoint and the latents), truncated, bit-flipped, emptied or
retyped (valid JSON or a valid file of the wrong shape). Every command that reads it either heals
(redoes what it needs, with a warning naming the file) or says one line; none ends in a
traceback, and the next `run` of the grid leaves the run measured as it was."""

import json

import numpy as np
import pytest
import torch

from bench import store
from bench.__main__ import main
from tests.conftest import QUICK_GRID as GRID
from tests.conftest import ae_run

pytestmark = pytest.mark.slow  # every command on a store with one file broken, per file kind


def _retype_json(b: bytes) -> bytes:
    obj = json.loads(b)  # the same keys, every value a string: parses, fails the schema
    return json.dumps({k: "x" for k in obj}).encode()


def _retype_npz(b: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, input=np.array(["x"]), recon=np.zeros(3), pred=np.zeros((2, 2)), xy=np.array([1]))
    return buf.getvalue()


def _retype_pt(b: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state": [1, 2], "train": "x", "test": torch.zeros(2)}, buf)
    return buf.getvalue()


MUTATIONS = {
    "truncated": lambda b, kind: b[: len(b) // 3],
    "flipped": lambda b, kind: (
        b[: len(b) // 2] + bytes(x ^ 0xFF for x in b[len(b) // 2 :][:64]) + b[len(b) // 2 + 64 :]
    ),
    "emptied": lambda b, kind: b"",
    "retyped": lambda b, kind: {"json": _retype_json, "npz": _retype_npz, "pt": _retype_pt}[kind](b),
}


def _files(run: dict) -> dict:
    """{name: (path, kind)} of every file the ae run owns in the store and the cache."""
    folder, train_key = store.run_dir(run["key"]), store.keys(run["config"])[1]
    out = {n: (folder / n, n.rsplit(".", 1)[1]) for n in ("config.json", "metrics.json")}
    out |= {n: (folder / n, "npz") for n in ("predictions.npz", "recon.npz", "latent_map.npz")}
    out |= {f"cache {k}": (store.cache_dir() / k / f"{train_key}.pt", "pt") for k in ("ckpt", "latents")}
    return out


def _heals_or_one_line(argv, capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert (code, len(errors)) in ((0, 0), (2, 1)), (argv, code, err)


FILES = ["config.json", "metrics.json", "predictions.npz", "recon.npz", "latent_map.npz", "cache ckpt"]
FILES += ["cache latents"]


@pytest.mark.parametrize("name", FILES)
def test_every_command_heals_or_says_one_line(stored, name, tmp_path, capsys):
    """Every file of the ae run that `stored` copied in (QUICK_GRID's store), broken each way in
    turn (each from the file as the grid wrote it): every command heals or says one line. Then,
    the file still broken the last way, the grid's next run redoes what it must (one grid per
    file kind) and the run is measured and exported as it was."""
    run = stored
    assert all(path.is_file() for path, _ in _files(run).values())
    path, kind = _files(run)[name]
    original = path.read_bytes()
    for how in sorted(MUTATIONS):
        path.parent.mkdir(parents=True, exist_ok=True)  # a command may have healed it away
        path.write_bytes(MUTATIONS[how](original, kind))
        export = ["export", run["key"], "--out", str(tmp_path / "z.npz")]
        for argv in (["runs"], ["evaluate", run["key"]], export, ["diff", "ae", "pixels"], ["report"]):
            _heals_or_one_line(argv, capsys)
    assert main(GRID) == 0  # the grid's next run redoes what it must
    assert ae_run()["metrics"]["linear"] == run["metrics"]["linear"]
    assert main(["export", run["key"], "--out", str(tmp_path / "z.npz")]) == 0  # and it is whole again
