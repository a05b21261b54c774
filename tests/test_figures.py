"""A figure is drawn again exactly when what it shows could differ: its inputs, its PNG on disk,
or the drawing code (bench/report/drawn.py); the record of what drew it lives in the cache."""

import os
import shutil

from bench import store
from bench.report import plots


def test_a_figure_is_drawn_again_only_when_what_it_shows_could_differ(monkeypatch):
    drawn, save = [], plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (drawn.append(path), save(fig, path)))
    png = store.results_dir() / "loss.png"
    png.parent.mkdir(parents=True)

    def draw(values) -> int:
        before = len(drawn)
        plots.loss_png(png, {"loss_per_epoch": values}, "a run")
        return len(drawn) - before

    assert draw([3.0, 2.0, 1.0]) == 1
    assert draw([3.0, 2.0, 1.0]) == 0  # the same inputs, the PNG it wrote: not drawn again
    assert list((store.cache_dir() / "figures").glob("*.json"))  # the record: in the cache...
    assert {p.name for p in png.parent.iterdir()} == {"loss.png"}  # ...never beside the results
    assert draw([3.0, 2.0, 0.5]) == 1  # other inputs
    stat = png.stat()
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    assert draw([3.0, 2.0, 0.5]) == 1  # the PNG changed since it was drawn
    png.unlink()
    assert draw([3.0, 2.0, 0.5]) == 1 and png.stat().st_size > 1000  # removed
    for record in (store.cache_dir() / "figures").glob("*.json"):
        record.write_text("{broken")
    assert draw([3.0, 2.0, 0.5]) == 1  # a broken record: drawn again, not an error
    assert draw([3.0, 2.0, 0.5]) == 0


def test_a_store_copied_with_its_cache_keeps_its_figures(tmp_path, monkeypatch):
    """The record names a PNG by its path within the results: a copy of the results and the cache
    (times kept) draws nothing again; a copy without the cache draws everything."""
    drawn, save = [], plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: (drawn.append(path), save(fig, path)))
    first = store.Store(tmp_path / "a" / "results", tmp_path / "a" / "cache")
    with store.using(first):
        first.results.mkdir(parents=True)
        plots.loss_png(first.results / "loss.png", {"loss_per_epoch": [3.0, 1.0]}, "a run")
    assert len(drawn) == 1
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # copy2: modification times kept
    shutil.copytree(tmp_path / "a" / "results", tmp_path / "c" / "results")
    for where, want in (("b", 1), ("c", 2)):
        moved = store.Store(tmp_path / where / "results", tmp_path / where / "cache")
        with store.using(moved):
            plots.loss_png(moved.results / "loss.png", {"loss_per_epoch": [3.0, 1.0]}, "a run")
        assert len(drawn) == want, where
