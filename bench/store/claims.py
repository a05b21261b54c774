"""Claims: a process claims a run before training it, so two processes on one store (two shells,
`tune --workers`, a Ray driver beside a plain `run`) split a grid instead of training every run
twice, and a claim left by a killed process is simply taken."""

from __future__ import annotations

import contextlib
import os
import socket

from bench.store import run_dir, umask, warn


@contextlib.contextmanager
def claim(key: str):
    """Claim run `key` for this process: yields True if it is ours to train, False if another live
    process holds it. The claim is an exclusive OS lock (flock) on the run's claim.lock, held for
    as long as the run trains: nothing can read a half-made claim as stale, and the kernel
    releases it when its process dies, however it dies (`kill -9` included), so a dead claim is
    simply taken. The file holds the owner's host and pid for a reader; the lock, not the file,
    is the claim."""
    import fcntl

    folder = run_dir(key)
    if folder.is_symlink():  # never write through it to wherever it points: replace it
        warn(f"{folder} is a symbolic link, not a run folder of this store; replacing the link")
        folder.unlink()
    path = folder / "claim.lock"
    for _ in range(100):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666 & ~umask())
        except (FileNotFoundError, FileExistsError):  # its last owner removed the empty folder: again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its owner finished and removed it between our open and our lock: again
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
        try:
            yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # while still locked: a waiter that opened it sees the inode go
            with contextlib.suppress(OSError):
                folder.rmdir()  # a run refused or only looked at leaves no empty folder behind
            os.close(fd)
        return
    yield False


def claimed(key: str) -> bool:
    """Whether a live process holds run `key`'s claim (a claim.lock left by a killed one is free)."""
    with claim(key) as mine:
        return not mine
