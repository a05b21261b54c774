"""The architecture stays put: the import contracts of pyproject.toml ([tool.importlinter]: bench/
is layered as the pipeline reads, no cycle inside one of its folders, learners never import the
harness) hold, and the modules stay small enough to read."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_modules_stay_small():
    """Modules under ~300 lines (the entry point under 200): a module that outgrows this has
    taken on a second job."""
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "bench").rglob("*.py")}
    sizes = {p: n for p, n in sizes.items() if p.parts[1] != "tools"}  # measurement scripts, not the library
    assert sizes[Path("bench/__main__.py")] < 200
    assert {str(p): n for p, n in sizes.items() if n > 320} == {}
