"""The one content hash of the store (run keys, study lock keys and sampler seeds use it), and the
hash of a file's bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def digest(obj) -> str:
    """Stable short hash of a JSON-able object: key order does not matter, values do."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (what `sha256sum` prints), read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
