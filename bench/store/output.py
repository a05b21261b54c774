"""Files the user names outside the store (`export --out`, `export --encoder`, `runs --csv`):
one rule for all of them. A link is followed to the regular file at its end, which is replaced
atomically while the link stays a link; a link to a device, a folder or a stream (/dev/stdout,
/proc/self/fd/1), or a loop of links, is refused in one line, as the device or folder itself is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bench import BenchError, store


def write(path: Path, write_file) -> None:
    """Write a file the user named outside the store (`--out`, `--csv`, `--encoder`): atomically,
    through a link to where it points (the link stays a link), never over a device, folder or
    stream; a refusal is one line (BenchError) and writes nothing."""
    store.atomic_write(target(Path(path)), write_file)


def target(path: Path) -> Path:
    """Where a write to `path` lands: `path` itself, or the file at the end of its links. What
    is there is checked by what it is, links followed (os.stat): /dev/stdout is a device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None  # nothing there yet, or a link to a file not yet made
    except OSError as e:  # a loop of links, a link through a file
        raise BenchError(f"{path}: {e.strerror or e}: refusing to write through it; choose a file") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, socket or pipe)"
        through = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise BenchError(f"{path}{through} is {kind}: refusing to replace it; choose a file path")
    if not path.is_symlink():
        return path
    hop = path
    while hop.is_symlink():  # a loop was refused above by os.stat
        hop = hop.parent / os.readlink(hop)
        if Path(os.path.abspath(hop)).parts[1:2] in (("proc",), ("dev",)):  # /dev/stdout, /proc/self/fd/1
            raise BenchError(f"{path} (a link to {hop}) is a device or a stream: refusing to replace it")
    return Path(os.path.realpath(path))
