"""Datasets that users bring: an .npz file of arrays, or an image folder (ImageFolder layout,
train/ and test/ with one folder per class). Each reader returns the raw arrays, class names and
a provenance, as bench/data/sources.py's readers do; what they hold is checked in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import BenchError


def npz(path: Path) -> dict:
    if not path.is_file():
        raise BenchError(f"npz file {path} not found: give npz:PATH to an existing .npz file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise BenchError(f"{path} is not an .npz file (not a zip archive): write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:
        raise BenchError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
    if missing:
        raise BenchError(f"{path} lacks arrays {missing}: it needs x_train, y_train, x_test, y_test")
    data["classes"] = data["classes"].tolist() if "classes" in data else []
    data["provenance"] = str(data["provenance"]) if "provenance" in data else f"npz file {path.name}"
    return data


def folder(path: Path) -> dict:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    out, seen = {}, {"train": set(), "test": set()}
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise BenchError(f"{path / split} not found: folder:PATH needs train/ and test/ subfolders")
        try:
            ds = ImageFolder(
                str(path / split),
                loader=lambda p: Image.open(p).convert("RGB"),
                is_valid_file=_once(path / split, seen[split]),
            )
        except FileNotFoundError as e:  # e.g. a class folder with no image in it
            raise BenchError(
                f"{path / split}: {str(e).splitlines()[0]}: every class folder needs images"
            ) from None
        images = []
        for file, _ in ds.samples:
            try:
                images.append(np.asarray(ds.loader(file)))
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
                raise BenchError(
                    f"{file} cannot be read as an image ({type(e).__name__}): fix or remove it"
                ) from None
        sizes = {im.shape for im in images}
        if len(sizes) != 1:
            raise BenchError(f"{path / split}: images differ in size {sorted(sizes)[:3]}: resize them")
        out[f"x_{split}"], out[f"y_{split}"] = np.stack(images), np.asarray(ds.targets)
        if split == "train":
            out["classes"] = ds.classes
        elif ds.classes != out["classes"]:
            raise BenchError(f"{path}: test/ classes {ds.classes} differ from train/ {out['classes']}")
    if both := seen["train"] & seen["test"]:
        raise BenchError(f"{min(both)} is both a training and a test image (through a link): remove one")
    return dict(out, provenance=f"image folder {path.name}")


def _once(root: Path, seen: set):
    """ImageFolder's `is_valid_file` for `root`: an image file counts once however many links lead
    to it (a link loop is followed once), in its own class folder when it lives under `root`."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    real_root = root.resolve()

    def valid(file: str) -> bool:
        if not file.lower().endswith(IMG_EXTENSIONS):
            return False
        try:
            real, own = Path(file).resolve(), (root / Path(file).relative_to(root).parts[0]).resolve()
        except (OSError, RuntimeError):  # a link that leads nowhere, or in a circle
            return False
        if real in seen or (real.is_relative_to(real_root) and not real.is_relative_to(own)):
            return False
        seen.add(real)
        return True

    return valid
