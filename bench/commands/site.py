"""`bench site`: the results explorer, static HTML from the store alone (bench/site/)."""

from __future__ import annotations

import time
from pathlib import Path


def add(p) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("explorer"),
        help="the folder to write (default: explorer/; replaced whole)",
    )


def main(args, argv) -> None:
    from bench import site

    start = time.perf_counter()
    built = site.build(args.out)
    print(
        f"wrote {built.out}/index.html: {built.pages} pages, {built.runs} run pages ({built.rendered} "
        f"rendered, {built.runs - built.rendered} unchanged), {built.bytes / 1e6:.1f} MB, "
        f"{time.perf_counter() - start:.1f} s; open it in a browser, no server needed"
    )
