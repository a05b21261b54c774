"""The one content hash of the store: run keys, study lock keys and sampler seeds use it."""

from __future__ import annotations

import hashlib
import json


def digest(obj) -> str:
    """Stable short hash of a JSON-able object: key order does not matter, values do."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
