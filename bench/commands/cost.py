"""`bench cost`: the FLOPs of stored runs that predate the cost evaluator, counted from their specs.

FLOPs per image depend on the learner's architecture and the image shape, not on its trained
weights: each chosen run's learner is built untrained at its config on its dataset's shape, and
its encoder and training-step FLOPs (bench/evaluators/cost.py) are added to its metrics.json
(`cost`, with `"counted_from": "spec"` and no latency, which only a measured run has). Nothing is
retrained, no key changes, no number already stored moves; runs that have their cost are left.
"""

from __future__ import annotations

import torch

from bench import BenchError, cli, config, data, registry, store
from bench.evaluators import cost
from bench.report import tables


def add(p) -> None:
    p.add_argument("keys", nargs="*", help="run keys or unique prefixes (default: every stored run)")
    p.add_argument("--dataset", help="only the runs trained on this dataset (its slug, e.g. mnist)")
    cli.data_args(p)


def main(args, argv) -> None:
    runs = tables.registered([r for r in store.load_runs() if r["metrics"].get("status") == "ok"])
    if args.keys:
        wanted = {store.find(k) for k in args.keys}
        runs = [r for r in runs if r["key"] in wanted]
    if args.dataset:
        runs = [r for r in runs if r["config"]["dataset"]["slug"] == args.dataset]
    todo = [r for r in runs if (r["metrics"].get("cost") or {}).get("encode_flops") is None]
    if not runs:
        raise BenchError("no finished run in the store matches: check the keys and --dataset")
    loaded, counted = {}, {}
    for r in todo:
        spec, method = r["config"], r["config"]["method"]
        ds = data.for_run(spec, args.data_dir, args.offline, loaded)
        shape = (method, repr(sorted(spec["method_config"].items())), ds.shape)
        if shape not in counted:
            registry.ensure(method, spec.get("source"))  # an outside learner: from its recorded source
            torch.manual_seed(0)
            model = registry.create(method, config.method_config(method, spec["method_config"]), ds.shape)
            counted[shape] = cost.count(
                model, ds.x_val[: cost.SAMPLE], ds.y_val[: cost.SAMPLE], torch.device("cpu")
            )
        folder = store.run_dir(r["key"])
        metrics = store.read_json(folder / "metrics.json")
        metrics["cost"] = {**counted[shape], "latency_ms": None, "counted_from": "spec"}
        store.write_json(folder / "metrics.json", metrics)
    print(
        f"counted the FLOPs of {len(todo)} run(s) ({len(counted)} architectures); "
        f"{len(runs) - len(todo)} had them"
    )
