"""The docs cannot rot: the site builds with warnings as errors, every command in a code block of
README.md and docs/ parses with the command line it names (a `make` target exists, a test file
exists), every Python block compiles and every TOML block parses (the runnable ones run in
tests/test_outside.py and tests/test_cli.py), the README's headline table is what its page says,
and the README stays a README."""

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench import commands

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(lang: str) -> list[tuple[str, str]]:
    """(page name, body) of every fenced block in `lang` of README.md and docs/."""
    found = []
    for page in PAGES:
        for body in re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(), re.M | re.S):
            found.append((page.name, body))
    return found


def commands_in(body: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", body)
    return [words for line in text.splitlines() if (words := shlex.split(line, comments=True))]


def check(words: list[str], targets: set[str]) -> None:
    if words[:3] == ["python", "-m", "bench"] or words[0] == "latentbench":
        argv = words[3:] if words[0] == "python" else words[1:]
        try:
            commands.parser(argv).parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"does not parse: {shlex.join(words)}") from e
    elif words[0] == "make":
        assert set(words[1:]) <= targets, f"no such make target: {shlex.join(words)}"
    elif words[:4] == [".venv/bin/python", "-m", "pytest", words[3]]:
        assert (ROOT / words[3]).is_file(), shlex.join(words)
    else:
        raise AssertionError(f"a command the docs test cannot check: {shlex.join(words)}")


def test_every_command_in_the_docs_parses():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    checked = 0
    for page, body in blocks("bash"):
        for words in commands_in(body):
            try:
                check(words, targets)
            except AssertionError as e:
                raise AssertionError(f"{page}: {e}") from None
            checked += 1
    assert checked > 40  # the blocks were found


def test_every_python_block_compiles_and_every_toml_block_parses():
    for page, body in blocks("python"):
        compile(body, page, "exec")
    for _, body in blocks("toml"):
        tomllib.loads(body)
    assert len(blocks("python")) >= 4 and len(blocks("toml")) >= 2


def test_the_readme_headline_is_its_page():
    readme = (ROOT / "README.md").read_text().split("<!-- headline", 1)[1]
    rows = [r for r in readme.split("\n\n", 1)[0].splitlines() if r.startswith("| ")][2:]
    page = (ROOT / "results" / "mnist.md").read_text().split("## Main table", 1)[1].split("\n## ", 1)[0]
    table = {}
    lines = [r for r in page.splitlines() if r.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = dict(zip(head, (c.strip() for c in line.strip("|").split("|"))))
        table[(cells["learner"].rstrip(" †‡"), cells["latent dim"])] = cells
    assert len(rows) >= 5
    for row in rows:
        learner, dim, linear, knn, psnr = (c.strip() for c in row.strip("|").split("|"))
        cells = table[(learner, dim)]
        assert (cells["linear %"], cells["kNN %"], cells["PSNR dB"]) == (linear, knn, psnr), row


def test_the_readme_stays_a_readme():
    words = len(re.sub(r"```.*?```", " ", (ROOT / "README.md").read_text(), flags=re.S).split())
    assert words <= 1500, f"README.md has {words} words of prose: move the detail to docs/"


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "results" / "findings" / "mlp-head" / "index.html").is_file()


def test_every_file_the_docs_name_exists():
    """A path in the docs is a file of the checkout (the two a reader is told to create aside)."""
    text = "\n".join(page.read_text() for page in PAGES)
    named = set(re.findall(r"\b(?:bench|methods|tests|configs|examples)/[\w/.-]+\.(?:py|toml)\b", text))
    created = {"bench/evaluators/ncm.py", "methods/mylearner.py"}  # what a reader writes
    assert len(named) > 20 and {p for p in named - created if not (ROOT / p).is_file()} == set()
