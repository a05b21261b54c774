"""`bench site`: the results explorer, a folder of static HTML built from the store alone.

index.html is the leaderboard (leaderboard.py); every Markdown page of the store (results/**/*.md)
becomes an HTML page, a dataset's with its main table sortable and filterable and its charts
interactive (pages.py); every run gets a page (runpages.py). Pages link to each other with relative
links and load only what the folder holds (assets/: one style sheet, one script), so the folder
opens from file:// with no network and no server, and can be copied anywhere.

The site is written to a temporary folder beside `out` and renamed over it, so a reader never sees
half a site. A run page whose inputs did not change since the site at `out` was built (its run's
files, the pages it is on, this code) is carried over, not re-rendered: MANIFEST records a digest of
each run page's inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError, evaluators, store
from bench.site import data, html, leaderboard, pages, runpages

MANIFEST = ".latentbench-site.json"
HERE = Path(__file__).parent
KEY = re.compile(r"<td( style=\"[^\"]*\")?>([0-9a-f]{16})</td>")  # a run key in a page's runs table


@dataclass
class Built:
    out: Path
    pages: int
    runs: int
    rendered: int  # run pages rendered (the rest were carried over unchanged)
    bytes: int


def check_out(out: Path) -> None:
    """Refuse, in one line, an `--out` the site cannot replace: a file or device, a non-empty folder
    that is not a previous site, or a place this user cannot write."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise BenchError(f"--out {out} exists and is not a folder: give a folder for the site")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise BenchError(
                f"--out {out} is a folder with other files in it, not a site this command wrote: "
                "give an empty or new folder"
            )
    parent = out.absolute().parent
    if not parent.is_dir():
        raise BenchError(f"--out {out}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.is_dir() and not os.access(out, os.W_OK | os.X_OK)):
        raise BenchError(f"--out {out}: {parent} cannot be written by this user")


def build(out: Path) -> Built:
    out = Path(out)
    check_out(out)
    tmp = out.absolute().parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        built = _write(tmp, out)
        _swap(tmp, out)
    except OSError as e:
        raise BenchError(f"could not write the site to {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    built.out = out
    return built


def _swap(tmp: Path, out: Path) -> None:
    old = out.absolute().parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write(tmp: Path, previous: Path) -> Built:
    every = store.load_runs()
    results = store.results_dir()
    dataset_pages = data.pages(every)
    rows, ranked = leaderboard.rows(dataset_pages)
    markdown = {
        p.relative_to(results).with_suffix("").as_posix(): p
        for p in sorted(results.rglob("*.md"))
        if "runs" not in p.relative_to(results).parts[:1]
    }
    keys = {r["key"] for r in every}
    nav = html.Nav(
        (
            *((p.title, f"{p.name}.html") for p in dataset_pages if not p.subset),
            ("All pages", "pages.html"),
        )
    )
    (tmp / "assets").mkdir()
    for name in html.ASSETS:
        shutil.copyfile(HERE / "assets" / name, tmp / "assets" / name)
    written = [
        _put(
            tmp,
            "index.html",
            html.page("Leaderboard", pages.index(rows, ranked, dataset_pages), "index.html", nav),
        )
    ]
    appears: dict[str, list[tuple[str, str]]] = {}
    by_name = {p.name: p for p in dataset_pages}
    for r in rows:
        for name, (s, _) in r.cells.items():
            for key in by_name[name].rows(s.learner, s.latent_dim)["key"]:
                appears.setdefault(key, []).append((f"leaderboard: {r.name} ({r.group})", "index.html"))
    for page in dataset_pages:
        for s in page.summary.itertuples():
            for key in page.rows(s.learner, s.latent_dim)["key"]:
                appears.setdefault(key, []).append(
                    (
                        f"{page.title}: {s.learner} d={int(s.latent_dim)}",
                        f"{page.name}.html#{pages.anchor(s.learner, s.latent_dim)}",
                    )
                )
    for rel, path in markdown.items():
        text = path.read_text()
        up = "../" * rel.count("/")
        if rel in by_name:
            body = pages.dataset(by_name.pop(rel), text)
        else:
            body = html.from_markdown(text, re.sub(r"\W+", "-", rel))
        for key in sorted({m[1] for m in KEY.findall(body)} & keys):
            appears.setdefault(key, []).append((f"{rel}: runs table", f"{rel}.html#run-{key}"))
        body = KEY.sub(lambda m, up=up: _key_cell(m[2], m[1] or "", up, keys), body)
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), rel)
        written.append(_put(tmp, f"{rel}.html", html.page(title, body, f"{rel}.html", nav)))
        for src in set(re.findall(r'src="([^":]+\.(?:png|svg|jpg))"', body)):
            _link(path.parent / src, tmp / Path(rel).parent / src)
    for page in by_name.values():  # a page whose Markdown is missing still gets its tables
        written.append(
            _put(
                tmp,
                f"{page.name}.html",
                html.page(page.title, pages.dataset(page, None), f"{page.name}.html", nav),
            )
        )
    listing = "".join(f'<li><a href="{rel}.html">{html.esc(rel)}</a></li>' for rel in markdown)
    written.append(
        _put(
            tmp,
            "pages.html",
            html.page("All pages", f"<h1>All pages</h1><ul>{listing}</ul>", "pages.html", nav),
        )
    )
    old = _manifest(previous)
    manifest, rendered = {"code": _code_digest(), "runs": {}}, 0
    for run in every:
        key = run["key"]
        title = data.run_title(run)
        digest = _run_digest(run, title, appears.get(key, []), manifest["code"])
        manifest["runs"][key] = digest
        if (
            old.get("code") == manifest["code"]
            and old.get("runs", {}).get(key) == digest
            and _carry(previous, tmp, key)
        ):
            continue
        links = [(t, f"../{h}") for t, h in appears.get(key, [])]
        body = runpages.body(run, title, links)
        _put(tmp, f"runs/{key}.html", html.page(title, body, f"runs/{key}.html", nav))
        runpages.images(run, tmp / "runs" / key)
        rendered += 1
    (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    return Built(tmp, len(written), len(every), rendered, size)


def _key_cell(key: str, style: str, up: str, keys: set) -> str:
    if key not in keys:
        return f"<td{style}>{key}</td>"
    return f'<td{style} id="run-{key}"><a href="{up}runs/{key}.html">{key}</a></td>'


def _put(root: Path, rel: str, text: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return rel


def _link(src: Path, dst: Path) -> None:
    """Put a copy of `src` at `dst` (a hard link where the file system allows: the same bytes)."""
    if not src.is_file() or dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _manifest(previous: Path) -> dict:
    try:
        return json.loads((previous / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _carry(previous: Path, tmp: Path, key: str) -> bool:
    """Carry run `key`'s page (and its images) over from the previous site; False if it is gone."""
    page = previous / "runs" / f"{key}.html"
    if not page.is_file():
        return False
    _link(page, tmp / "runs" / f"{key}.html")
    folder = previous / "runs" / key
    for f in folder.iterdir() if folder.is_dir() else []:
        _link(f, tmp / "runs" / key / f.name)
    return True


def _code_digest() -> str:
    """This code's digest, with the registry's evaluator columns (a new column changes every page)."""
    h = hashlib.sha256()
    for f in sorted(HERE.rglob("*")) + sorted((HERE.parent / "report").glob("*.py")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(f.name.encode() + f.read_bytes())
    h.update(json.dumps([(e.name, [c.key for c in e.columns]) for e in evaluators.all()]).encode())
    return h.hexdigest()


def _run_digest(run: dict, title: str, appears: list, code: str) -> str:
    folder = store.run_dir(run["key"])
    files = sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.suffix == ".npz"
    ) if folder.is_dir() else []  # fmt: skip
    blob = json.dumps(
        [code, title, appears, run["config"], run["metrics"], files], sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()
