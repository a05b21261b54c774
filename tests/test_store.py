"""Run keys, skip/resume, atomic writes, and the learner labels the report derives from runs."""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import config, data, evaluators, store
from bench.report import labels, tables
from bench.run import runner
from bench.store import spec
from bench.store.spec import RunSpec


def _spec(**changes):
    cfg = config.load(Path(__file__).parent / "quick.toml")  # every evaluator, on the least work
    ds = data.load(cfg.data)
    s = runner.spec(cfg, ds, "ae", {"channels": (8, 16), "latent_dim": 8}, seed=0).json()
    for path, value in changes.items():
        section, key = path.split(".")
        s[section][key] = value
    return RunSpec.of(s), ds


def test_keys_are_stable_under_dict_order():
    s, _ = _spec()
    shuffled = json.loads(json.dumps(s.json()))
    shuffled["method_config"] = dict(reversed(list(shuffled["method_config"].items())))
    shuffled = dict(reversed(list(shuffled.items())))
    assert (s.key, s.train_key) == store.keys(shuffled)


def test_keys_change_with_every_semantic_field():
    s, _ = _spec()
    base = (s.key, s.train_key)
    for path, value in [
        ("method_config.latent_dim", 9),
        ("train.lr", 0.1),
        ("data.val_seed", 3),
        ("data.fingerprint", "other"),
        ("eval.mlp_hidden", 7),
    ]:
        changed, _ = _spec(**{path: value})
        assert changed.key != base[0], path
    seed = s.json()
    seed["seed"] = 1
    assert store.keys(seed)[0] != base[0]


def test_eval_changes_keep_the_train_key_and_names_and_paths_change_nothing():
    s, _ = _spec()
    run_key, train_key = s.key, s.train_key
    changed, _ = _spec(**{"eval.mlp_hidden": 7})
    assert changed.train_key == train_key
    renamed = copy.deepcopy(s.json())
    renamed["dataset"] = {"name": "npz:/elsewhere/digits.npz", "slug": "x"}
    renamed["command"] = "python -m bench run ..."
    assert store.keys(renamed) == (run_key, train_key)


@pytest.mark.slow
def test_finished_run_is_skipped_and_unfinished_is_redone():
    s, ds = _spec()
    first = runner.run_one(s, ds, torch.device("cpu"))
    key = s.key
    metrics_path = store.run_dir(key) / "metrics.json"
    mtime = metrics_path.stat().st_mtime_ns
    again = runner.run_one(s, ds, torch.device("cpu"))
    assert metrics_path.stat().st_mtime_ns == mtime and again == json.loads(metrics_path.read_text())
    assert first["linear"]["test_acc"] == again["linear"]["test_acc"]
    metrics_path.unlink()  # as if the process died after config.json was written
    assert not store.is_done(key) and [r["key"] for r in store.load_runs()] == []
    redone = runner.run_one(s, ds, torch.device("cpu"))
    assert redone["linear"]["test_acc"] == first["linear"]["test_acc"]  # checkpoint cache + same seed


def test_evaluation_leaves_encoder_unchanged_and_records_it():
    s, ds = _spec()
    metrics = runner.run_one(s, ds, torch.device("cpu"))
    assert metrics["status"] == "ok" and metrics["encoder_unchanged"] is True
    assert metrics["latent_dim"] == 8 and 0 <= metrics["linear"]["test_acc"] <= 1
    assert set(metrics["recon"]) == {"mse", "psnr", "ssim"}
    assert len(metrics["confusion"]) == 10 and sum(map(sum, metrics["confusion"])) == len(ds.x_test)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "m.json"
    store.write_json(path, {"a": 1})

    def boom(tmp):
        open(tmp, "w").write("half")
        raise KeyboardInterrupt

    try:
        store.atomic_write(path, boom)
    except KeyboardInterrupt:
        pass
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_method_config_round_trips_through_json():
    s, _ = _spec()
    cfg = config.method_config("ae", json.loads(json.dumps(s.method_config)))
    assert cfg.channels == (8, 16)


def test_row_names_come_from_what_was_asked_not_from_the_store(tmp_path):
    """`--set` values name a row; the config file's shared tables do not; the same run gets the
    same name whatever else is stored."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[train]\nepochs = 1\n[methods.all]\nchannels = [8, 16]\n[methods.dae]\nnoise_std = 0.1\n"
    )
    ds = data.load(config.DataConfig())
    plain = config.load(path)
    asked = config.load(path, ["methods.ae.loss=l1", "train.lr=0.01", "methods.dae.mask_prob=0.25"])
    name = lambda cfg, m: labels.name(runner.spec(cfg, ds, m, {"latent_dim": 8}, 0).json())  # noqa: E731
    assert name(plain, "ae") == "ae"  # widths from [methods.all]: the page's protocol
    assert name(plain, "dae") == "dae (noise_std=0.1)"  # the learner's own table: asked for
    assert name(asked, "ae") == "ae (loss=l1, train.lr=0.01)"
    assert name(asked, "dae") == "dae (noise_std=0.1, train.lr=0.01)"  # mask_prob=0.25 is its default
    assert name(asked, "unet") == "unet (train.lr=0.01)"
    assert name(config.load(path, ["methods.ae.loss=mse"]), "ae") == "ae"  # a default is no override
    s = runner.spec(asked, ds, "supervised", {"latent_dim": 8}, 0).json()
    assert labels.name(s) == "supervised (train.lr=0.01, reference: trained with labels)"
    s = runner.spec(plain, ds, "ae", {"latent_dim": 8, "loss": "l1"}, 0).record([spec.tuned("x")])
    assert labels.name(s) == "ae (tuned, loss=l1)"
    # a class subset is its page's subject (results/<slug>-classes5-9.md), not a setting of the row
    subset = runner.spec(config.load(path, ["data.classes=5,6,7,8,9", "train.lr=0.01"]), ds, "ae",
                         {"latent_dim": 8}, 0).json()  # fmt: skip
    assert subset["overrides"]["data.classes"] == [5, 6, 7, 8, 9]  # still recorded, still in the key
    assert labels.name(subset) == "ae (train.lr=0.01)" and labels.is_variant(subset)
    subset["overrides"].pop("train.lr")
    assert labels.name(subset) == "ae" and not labels.is_variant(subset)


def test_the_default_learner_is_never_a_variant_of_itself():
    run = {"config": {"method": "dae", "overrides": {}, "purposes": ["grid"]}}
    variant = {"config": {"method": "dae", "overrides": {"noise_std": 0.6}, "purposes": ["grid"]}}
    for store_content in ([run], [run, variant], [variant, variant, run]):
        assert labels.labels(store_content)[store_content.index(run)] == "dae"


def test_latent_table_orders_sizes_numerically():
    summary = pd.DataFrame(
        {"learner": ["pixels", "ae", "ae"], "latent_dim": [3072, 256, 1024], "linear_mean": [0.4, 0.5, 0.6]}
    ).assign(linear_std=float("nan"))
    header = tables.latent_table(summary).splitlines()[0]
    assert header.index("d=256") < header.index("d=1024") < header.index("d=3072")


def test_ablation_table_pairs_each_variant_with_its_plain_learner():
    rows = [("ae", "ae", 256, 0.47), ("ae", "ae (loss=l1+ssim)", 256, 0.43), ("ae", "ae (loss=l1)", 64, 0.4)]
    rows.append(("simclr", "simclr (train.epochs=40)", 256, 0.66))  # nothing to compare with
    summary = pd.DataFrame(rows, columns=["method", "learner", "latent_dim", "linear_mean"])
    summary["variant"] = summary["learner"] != summary["method"]
    nan = {f"{m}_{s}": float("nan") for m in ("knn", "psnr", "ssim") for s in ("mean", "std")}
    summary = summary.assign(n=1, linear_std=float("nan"), **nan)
    body = tables.ablation_table(summary).splitlines()[2:]
    assert [line.split("|")[1].strip() for line in body] == ["ae", "ae (loss=l1+ssim)"]
    assert "| -4.00 " in body[1]
    assert tables.ablation_table(summary[summary.method == "simclr"]) is None


def test_runs_of_two_protocols_are_never_averaged_under_one_name():
    def run(epochs, overrides=None):
        cfg = {"method": "ae", "method_config": {"latent_dim": 8}, "train": {"epochs": epochs}}
        return {"config": {**cfg, "eval": {}, "data": {}, "overrides": overrides or {}}}

    assert labels.labels([run(60), run(20), run(20)]) == [
        "ae [train.epochs=60]",
        "ae [train.epochs=20]",
        "ae [train.epochs=20]",
    ]
    assert labels.labels([run(20), run(20)]) == ["ae", "ae"]


def test_a_metrics_record_reads_back_as_it_was_written():
    s, ds = _spec()
    stored = runner.run_one(s, ds, torch.device("cpu"))
    record = spec.Metrics.of(stored)
    assert record.status == "ok" and "linear" in record.measures
    assert record.evaluators["linear"] == evaluators.get("linear").version
    assert record.json() == stored and not record.from_checkpoint
    diverged = spec.Metrics("diverged", {"device": "cpu"}, 1.0, error="loss is NaN")
    assert spec.Metrics.of(diverged.json()) == diverged


def test_below_pca_is_flagged_only_where_pca_is_not_lossless():
    """PCA with as many components as pixels reconstructs exactly (100 dB): below it is every
    learner, so the flag says nothing there; at a smaller size it marks an undertrained one."""
    rows = [
        {"learner": "pca", "method": "pca", "latent_dim": 16, "psnr": 20.0},
        {"learner": "pca", "method": "pca", "latent_dim": 64, "psnr": 100.0},
        {"learner": "ae", "method": "ae", "latent_dim": 16, "psnr": 15.0},
        {"learner": "ae", "method": "ae", "latent_dim": 64, "psnr": 25.0},
    ]
    df = pd.DataFrame(rows).assign(
        variant=False, kind="learner", params=0, seed=0, uncommitted=False, stale=False
    )
    summary = tables.summarize(df).set_index(["learner", "latent_dim"])
    assert summary.loc[("ae", 16), "below_pca"] and not summary.loc[("ae", 64), "below_pca"]
    assert not summary.loc[("pca", 16), "below_pca"]


def test_two_stores_are_open_at_once_in_two_threads(tmp_path, monkeypatch):
    """A store is a value an edge opens, not the process's environment: two threads each run a
    grid through bench.api into their own store at the same time (both are mid-run together),
    each store holds its own run and page only, and the environment is neither read nor written."""
    import os
    import threading

    from bench import api

    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "environment"))  # must stay empty
    ours = lambda: {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}  # noqa: E731
    before = ours()
    stores = {m: store.Store(tmp_path / m / "results", tmp_path / m / "cache") for m in ("pca", "pixels")}
    both_running = threading.Barrier(2, timeout=120)
    write_json, waited = store.write_json, set()

    def meet_then_write(path, obj):  # each thread's first file of a run waits for the other's
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_running.wait()
        write_json(path, obj)

    monkeypatch.setattr(store, "write_json", meet_then_write)
    quick = str(Path(__file__).parent / "quick.toml")
    done, errors = {}, []

    def grid(method):
        try:
            s = stores[method]
            done[method] = api.run([method], config=quick, latent_dims=[8], seeds=[0], store=s)
            with store.using(s):
                done[method + " store"] = store.load_runs()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            both_running.abort()

    threads = [threading.Thread(target=grid, args=(m,)) for m in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(waited) == 2  # both threads were inside a run at the same time
    for method, s in stores.items():
        assert list(done[method]["method"]) == [method]
        assert [r["config"]["method"] for r in done[method + " store"]] == [method]
        assert (s.results / "digits.md").is_file() and method in (s.results / "digits.md").read_text()
    assert not (tmp_path / "environment").exists() and ours() == before
