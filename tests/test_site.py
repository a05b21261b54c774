"""`bench site`: the results explorer built from a store, checked as files (tests/test_browser.py
opens it in a real browser). The store here is a copy of the committed digits runs and page, so
the leaderboard can be held to the page's own numbers."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench import evaluators, site, store
from bench.evaluators import Column, Evaluator
from tests.conftest import COMMITTED, copy_page

pytestmark = pytest.mark.xdist_group("explorer")


class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.update(v for k, v in attrs if k == "id")
        for k in ("href", "src"):
            if a.get(k):
                self.refs.append(a[k])


def test_every_page_is_written_and_every_link_resolves_inside_the_folder(digits_site):
    out, keys, built = digits_site
    assert (built.runs, built.rendered) == (len(keys), len(keys))
    pages = sorted(out.rglob("*.html"))
    assert {p.stem for p in (out / "runs").glob("*.html")} == set(keys)
    assert {"index.html", "digits.html", "pages.html"} <= {p.name for p in pages}
    ids = {}
    for page in pages:
        parsed = Refs()
        parsed.feed(page.read_text())
        ids[page] = parsed
    for page, parsed in ids.items():
        for ref in parsed.refs:
            assert not re.match(r"^[a-z]+://|^//", ref), f"{page.name} asks for {ref} outside the folder"
            path, _, frag = ref.partition("#")
            target = (page.parent / path).resolve() if path else page
            if "../docs/" in ref or ref.startswith("mailto:"):
                continue  # a link to the project's docs, outside the results
            assert target.is_file(), f"{page.relative_to(out)} links to missing {ref}"
            if frag and target.suffix == ".html":
                assert frag in ids[target].ids, f"{page.relative_to(out)} links to missing anchor {ref}"


def markdown_linear(page: Path) -> dict[tuple[str, int], str]:
    """{(learner, latent dim): linear cell} of a page's main table, its significance mark dropped."""
    text = page.read_text().split("## Main table", 1)[1]
    rows = [line for line in text.split("\n\n")[2].splitlines() if line.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for line in rows[2:]:
        cells = dict(zip(head, (c.strip() for c in line.strip("|").split("|"))))
        learner = cells["learner"].replace(" †", "").replace(" ‡", "")
        out[(learner, int(cells["latent dim"]))] = cells["linear %"].rstrip(" ▲=").strip()
    return out


def test_the_leaderboard_prints_the_pages_numbers_and_ranks_with_intervals(digits_site):
    out, _, _ = digits_site
    index = (out / "index.html").read_text()
    cells = re.findall(r'data-page="digits" data-learner="([^"]+)" data-dim="(\d+)"[^>]*>([^<]+)</a>', index)
    expected = markdown_linear(COMMITTED / "digits.md")
    assert len(cells) >= 14
    for learner, dim, text in cells:
        assert expected[(learner.replace("&amp;", "&"), int(dim))] == text, (learner, dim)
    ranks = re.findall(r"<td class=\"num\">(\d+\.\d\d)</td><td class=\"num\">\[(\d+\.\d), (\d+\.\d)\]", index)
    assert len(ranks) >= 14
    for mean, lo, hi in ranks:
        assert float(lo) <= float(mean) + 1 and float(mean) - 1 <= float(
            hi
        )  # a rank inside its interval (±ties)
    assert "tied group" in index and "How the ranks are computed" in index


def test_the_main_table_is_the_pages_with_run_links_and_filters(digits_site):
    out, keys, _ = digits_site
    page = (out / "digits.html").read_text()
    assert page.count('id="main"') == 1 and 'data-table="main" data-attr="family"' in page
    rows = re.findall(r'<tr data-family="([^"]+)" data-dim="(\d+)" data-setting="(\w+)">', page)
    assert len(rows) == len(markdown_linear(COMMITTED / "digits.md"))
    assert {f for f, _, _ in rows} >= {"autoencoders", "views", "baselines", "reference"}
    linked = set(re.findall(r'href="runs/([0-9a-f]{16})\.html"', page))
    on_page = set(re.findall(r"\| ([0-9a-f]{16}) \|", (COMMITTED / "digits.md").read_text()))
    assert linked == on_page and on_page <= set(keys)
    assert "<svg" in page and 'data-tip="class ' in page  # charts and latent maps, hover text inside


def test_a_run_page_has_its_numbers_images_and_the_command_that_reproduces_it(digits_site):
    out, keys, _ = digits_site
    on_page = set(re.findall(r"\| ([0-9a-f]{16}) \|", (COMMITTED / "digits.md").read_text()))
    files = {k: {f.name for f in (COMMITTED / "runs" / k).iterdir()} for k in on_page}
    run = sorted(k for k in on_page if {"recon.npz", "latent_map.npz"} <= files[k])[0]
    assert (out / "runs" / run / "recon.png").is_file()
    page = (out / "runs" / f"{run}.html").read_text()
    for part in ("Per-class accuracy", "Confusion matrix", "Training loss", "Reconstructions", "Latent map",
                 "Protocol card", "Provenance", f"python -m bench verify {run}", "config.json"):  # fmt: skip
        assert part in page, part
    assert "../digits.html#row-" in page and f"../digits.html#run-{run}" in page  # back to its rows
    assert f'id="run-{run}"' in (out / "digits.html").read_text()


def test_a_new_evaluator_column_appears_without_editing_the_site(tmp_path, monkeypatch):
    copy_page(tmp_path / "results", seeds={0})

    class Toy(Evaluator):
        columns = (Column("toyscore", lambda m: 0.5, header="toy score"),)

        def __call__(self, ctx):
            return {}

    evaluators.register("zztoy")(Toy)
    try:
        site.build(tmp_path / "site")
    finally:
        evaluators._EVALUATORS.pop("zztoy", None)
    page = (tmp_path / "site" / "digits.html").read_text()
    assert "<th>toy score</th>" in page and page.count('<td class="num">0.50</td>') >= 10
    run = next((tmp_path / "site" / "runs").glob("*.html")).read_text()
    assert "toy score" in run


def test_a_second_build_renders_only_the_runs_that_changed(tmp_path, capsys):
    from bench.__main__ import main

    keys = copy_page(tmp_path / "results", seeds={0})
    assert main(["site", "--out", str(tmp_path / "site")]) == 0
    said = capsys.readouterr().out
    assert f"{len(keys)} run pages ({len(keys)} rendered, 0 unchanged)" in said and "index.html" in said
    again = site.build(tmp_path / "site")
    assert again.rendered == 0 and (tmp_path / "site" / "runs" / f"{keys[0]}.html").is_file()
    path = store.run_dir(keys[1]) / "metrics.json"
    m = json.loads(path.read_text())
    m["wall_time_s"] += 1
    path.write_text(json.dumps(m))
    assert site.build(tmp_path / "site").rendered == 1
    assert not list(tmp_path.glob(".site.*"))  # no temporary folder left behind


def test_an_empty_store_gives_a_site_that_says_so(tmp_path):
    built = site.build(tmp_path / "site")
    assert built.runs == 0
    assert "no finished in-domain runs" in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.parametrize("kind", ["file", "foreign folder", "device", "read-only place"])
def test_a_bad_out_is_one_line_and_exit_2_with_nothing_written(tmp_path, kind, capsys):
    from bench.__main__ import main

    out = {
        "file": tmp_path / "a.txt",
        "foreign folder": tmp_path / "mine",
        "device": Path("/dev/null"),
        "read-only place": Path("/proc/latentbench-site"),
    }[kind]
    if kind == "file":
        out.write_text("keep me")
    if kind == "foreign folder":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    copy_page(tmp_path / "results", seeds={0})  # a store with runs: the refusal is --out's alone
    capsys.readouterr()
    assert main(["site", "--out", str(out)]) == 2
    said = capsys.readouterr()
    assert said.err.startswith("error:") and len(said.err.strip().splitlines()) == 1, said.err
    assert str(out) in said.err and said.out == ""
    if kind == "file":
        assert out.read_text() == "keep me"
    if kind == "foreign folder":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not Path("/proc/latentbench-site").exists()
