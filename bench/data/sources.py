"""Where a dataset's arrays come from: scikit-learn's digits, torchvision's MNIST and
Fashion-MNIST, the CIFAR python batches, the CIFAR-10 JPEG copy, an .npz file, an ImageFolder.
Each reader returns raw arrays (x_train, y_train, x_test, y_test), class names, a title and a
provenance; bench/data/__init__.py checks them, splits and describes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from pathlib import Path

import numpy as np

from bench import BenchError
from bench.data import userdata
from bench.store.hashing import file_sha256

# name -> (one-line description for `bench list`)
DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (embedded, offline; the default)",
    "mnist": "MNIST 28x28 through torchvision (DATA_DIR/MNIST/raw/)",
    "fashion-mnist": "Fashion-MNIST 28x28 through torchvision (DATA_DIR/FashionMNIST/raw/)",
    "cifar10": "CIFAR-10 32x32 through torchvision (DATA_DIR/cifar-10-batches-py/)",
    "cifar100": "CIFAR-100 32x32, 100 fine classes (DATA_DIR/cifar-100-python/)",
    "cifar100-coarse": "the same images, labelled with the 20 CIFAR-100 superclasses",
    "cifar10-jpeg": "CIFAR-10 (JPEG q75 copy) from DATA_DIR/cifar10_jpeg.npz",
    "npz:PATH": "arrays x_train, y_train, x_test, y_test (+ optional classes, provenance)",
    "folder:PATH": "torchvision ImageFolder layout with train/ and test/ subfolders",
}


def read(name: str, root: Path, offline: bool) -> dict:
    """The raw arrays of dataset `name` (files under `root` where the format has any)."""
    if name == "digits":
        return _digits()
    if name in ("mnist", "fashion-mnist"):
        return _torchvision(name, root, offline)
    if name in CIFAR:
        return _cifar(name, root, offline)
    if name == "cifar10-jpeg":
        return _cifar10_jpeg(root)
    if name.startswith("npz:"):
        return userdata.npz(Path(name[4:]))
    if name.startswith("folder:"):
        return userdata.folder(Path(name[7:]))
    raise BenchError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")


def _digits() -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)  # 16 grey levels -> 0..255
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    return dict(
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        classes=[str(i) for i in range(10)],
        title="digits (scikit-learn, 8x8)",
        provenance="scikit-learn digits (UCI optdigits, 1797 images 8x8, 17 grey levels; "
        "fixed stratified 80/20 train/test split, seed 0)",
    )


def _torchvision(name: str, root: Path, offline: bool) -> dict:
    from torchvision import datasets

    cls, title, folder = {
        "mnist": (datasets.MNIST, "MNIST", "MNIST/raw/"),
        "fashion-mnist": (datasets.FashionMNIST, "Fashion-MNIST", "FashionMNIST/raw/"),
        "cifar10": (datasets.CIFAR10, "CIFAR-10", "cifar-10-batches-py/"),
        "cifar100": (datasets.CIFAR100, "CIFAR-100", "cifar-100-python/"),
    }[name]
    try:
        train = cls(str(root), train=True, download=not offline)
        test = cls(str(root), train=False, download=not offline)
    except Exception as e:  # missing files, no network, failed checksum: all one actionable line
        present = (root / folder).is_dir() and any((root / folder).iterdir())
        if present and "not found" not in str(e).lower():  # files there, but they do not parse
            raise BenchError(
                f"{title} files under {root / folder} are present but unreadable (truncated or corrupt: "
                f"{type(e).__name__}): replace them with intact copies"
            ) from None
        reason = (
            "files missing or corrupt; --offline forbids downloading"
            if offline
            else f"could not download: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        )
        raise BenchError(
            f"{title} not found under {root / folder} ({reason}): point --data-dir "
            "or BENCH_DATA_DIR at the folder that holds it"
        ) from None
    out = {}
    for split, ds in (("train", train), ("test", test)):
        out[f"x_{split}"] = np.asarray(ds.data)
        out[f"y_{split}"] = np.asarray(ds.targets)
    return dict(
        out,
        classes=list(train.classes),
        title=title,
        provenance=f"{title} (torchvision {cls.__name__}, original files)",
    )


# name -> (title, folder, train files, test file, meta file, label key, class-name key)
CIFAR = {
    "cifar10": (
        "CIFAR-10",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": (
        "CIFAR-100",
        "cifar-100-python",
        ["train"],
        "test",
        "meta",
        "fine_labels",
        "fine_label_names",
    ),
    "cifar100-coarse": (
        "CIFAR-100 (20 superclasses)",
        "cifar-100-python",
        ["train"],
        "test",
        "meta",
        "coarse_labels",
        "coarse_label_names",
    ),
}


class RefusedCode(Exception):
    """A pickle asked for a callable that data files never hold."""


class DataOnly(pickle.Unpickler):
    """An unpickler for data files (the CIFAR batches): dicts, lists, strings, numbers and numpy
    arrays rebuild; any other global a pickle names (a function to call, a class to build) is
    refused before it is looked up, so a crafted file in a data folder runs nothing."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5: an array from its bytes
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol 2 spells bytes: encode(text, "latin1")
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise RefusedCode(f"{module}.{name}")
        return super().find_class(module, name)


def _cifar(name: str, root: Path, offline: bool) -> dict:
    """CIFAR-10/100 from the python-pickle files torchvision downloads (Krizhevsky's format: dicts
    with `data` (N, 3072) uint8 rows in CHW order, label lists and a meta file of class names),
    read here so that the fine and coarse labels of CIFAR-100 come from one copy. A missing
    folder is downloaded through torchvision unless --offline."""
    title, folder, train_files, test_file, meta_file, label_key, names_key = CIFAR[name]
    base = root / folder
    if not (base / meta_file).is_file():
        if offline:
            raise BenchError(
                f"{title} not found under {base}/ (files missing; --offline forbids downloading): "
                "point --data-dir or BENCH_DATA_DIR at the folder that holds it"
            )
        _torchvision("cifar100" if name.startswith("cifar100") else "cifar10", root, offline=False)

    def read(file: str) -> dict:
        try:
            with open(base / file, "rb") as f:
                return DataOnly(f, encoding="latin1").load()
        except RefusedCode as e:
            raise BenchError(
                f"{base / file} asks to run {e}: a {title} file holds only arrays, lists and strings, "
                "so it was refused and nothing in it ran; replace it with an intact copy"
            ) from None
        except Exception as e:  # truncated, corrupt, or another format
            raise BenchError(
                f"{base / file} is missing or unreadable ({type(e).__name__}): replace the {title} "
                "files with intact copies"
            ) from None

    out = {}
    for split, files in (("train", train_files), ("test", [test_file])):
        parts = [read(f) for f in files]
        try:
            x = np.concatenate([np.asarray(p["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for p in parts])
            y = np.concatenate([np.asarray(p[label_key], dtype=np.int64) for p in parts])
        except (KeyError, ValueError) as e:
            raise BenchError(f"{base}: {split} files lack {e} in the CIFAR format") from None
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    meta = read(meta_file)
    if names_key not in meta:
        raise BenchError(f"{base / meta_file} lacks {names_key!r}: not a {title} meta file")
    return dict(
        out,
        classes=list(meta[names_key]),
        title=title,
        provenance=f"{title} (python-pickle files as torchvision downloads them, original pixels)",
    )


def _cifar10_jpeg(root: Path) -> dict:
    """CIFAR-10 re-encoded as quality-75 JPEGs: decoded once, cached as plain arrays."""
    from PIL import Image

    from bench.store import atomic_save_npz, cache_dir

    src = root / "cifar10_jpeg.npz"
    if not src.is_file():
        raise BenchError(
            f"{src} not found: point --data-dir or BENCH_DATA_DIR at the folder holding cifar10_jpeg.npz"
        )
    # keyed by the source's content, not its size and date: a copied-over file never reuses
    # another file's decoded arrays
    cached = cache_dir() / "data" / f"cifar10-jpeg-{_content_hash(src)[:16]}.npz"
    if cached.is_file():
        try:
            raw = userdata.npz(cached)
        except BenchError:  # a truncated or garbage cache file: decode again
            from bench.store import warn

            warn(f"cache file {cached} cannot be read; decoding {src} again")
            cached.unlink()
    if not cached.is_file():
        try:
            with np.load(src, allow_pickle=False) as d:
                arrays = {"classes": d["classes"]}
                for s in ("train", "test"):
                    buf, off = d[f"jpeg_{s}"], d[f"jpeg_{s}_offsets"]
                    arrays[f"x_{s}"] = np.stack(
                        [
                            np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())).convert("RGB"))
                            for a, b in zip(off[:-1], off[1:])
                        ]
                    )
                    arrays[f"y_{s}"] = d[f"y_{s}"].astype(np.int64)
        except Exception as e:  # truncated, not a zip, arrays missing, an undecodable JPEG
            raise BenchError(
                f"{src} cannot be read as CIFAR-10 JPEG arrays ({type(e).__name__}: {e}): "
                "write it again with cifar10_npz.py"
            ) from None
        atomic_save_npz(cached, arrays)
    raw = userdata.npz(cached)
    raw["title"] = "CIFAR-10 (JPEG q75 copy)"
    raw["provenance"] = (
        "CIFAR-10 (JPEG q75 copy): quality-75 JPEG re-encoding with 4:2:0 chroma, "
        "not the original pixels; not directly comparable with published CIFAR-10"
    )
    return raw


def _content_hash(src: Path) -> str:
    """sha256 of `src` (~0.2 s for the CIFAR-10 copy), hashed once: remembered in the cache by the
    file's path, size and modification time."""
    from bench.store import cache_dir, try_cache, write_json

    memo, stat, known = cache_dir() / "data" / "hashes.json", src.stat(), {}
    with contextlib.suppress(OSError, ValueError):  # no memo yet, or a broken one: hash again
        known = dict(json.loads(memo.read_text()))
    mark, entry = [stat.st_size, stat.st_mtime_ns], known.get(str(src.resolve()))
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == mark:
        return str(entry[2])
    sha = file_sha256(src)
    try_cache(memo, lambda: write_json(memo, {**known, str(src.resolve()): [*mark, sha]}), "file hashes")
    return sha
