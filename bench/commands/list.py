"""`bench list`: the learners (and where each came from), evaluators, datasets and configs."""

from __future__ import annotations

import re
import sys

from bench import CONFIG_DIR, cli, evaluators, registry
from bench.data import sources
from bench.report import tables
from bench.run import session


def add(p) -> None:
    p.add_argument(
        "--methods",
        type=cli.listed(str),
        help="also load these learner files, modules or encoders and list them",
    )


def main(args, argv) -> None:
    listing(args.methods or ())


def summary(module) -> str:
    """The first sentence of a module's docstring, whole (it may span lines)."""
    text = " ".join((sys.modules[module].__doc__ or "").strip().split("\n\n")[0].split())
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.(\s|$)", text)  # not "et al." or "e.g."
    return text if end is None else text[: end.start() + 1]


def listing(methods=()) -> None:
    """What `bench list` prints (`methods`: outside learners to load and list too)."""
    registry.resolve_all(methods)
    print("learners (name, kind, capabilities, where its code is, what it is):")
    for name in registry.names():
        cls = registry.get(name)
        can = [w for w, yes in (("reconstructs", cls.reconstructs), (cls.family, cls.family)) if yes]
        print(
            f"  {name:<12} {tables.kind(name):<9} {','.join(can):<25} {registry.where(name):<22} "
            f"{summary(cls.__module__)}"
        )
    print("evaluators:")
    for e in evaluators.all():
        print(f"  {e.name:<17} v{e.version:<3} {summary(type(e).__module__)}")
    print("datasets:")
    for name, doc in sources.DATASETS.items():
        print(f"  {name:<13} {doc}")
    print("configs (without --config, a dataset's own is used; --config none: the built-in defaults):")
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        first = path.read_text().split("\n", 1)[0].lstrip("# ")
        for_ = [d for d, name in session.DATASET_CONFIGS.items() if name == path.name]
        print(f"  configs/{path.name:<18} {first}" + (f" [default for {', '.join(for_)}]" if for_ else ""))
