"""What k-shot episodes add to a digits run's evaluation: `make bench-fewshot-speed` ->
results/speed.md, section "k-shot episodes: a digits run's evaluation".

The whole evaluation of a run (every registered evaluator on its latents, the model-free ones:
what `bench run` calls after encoding) is timed with and without the few-shot evaluator,
alternately, on the latents of the page's untrained d = 64 runs (PCA, the random network), so no
training is timed. The rule it checks (issue: k-shot must not double a digits run's evaluation):
the ratio with/without stays below 2.

    python -m bench.tools.speed_fewshot [--out results/speed.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench import config, data, evaluators, registry
from bench.evaluators import Context
from bench.run import env, evaluate
from bench.tools.speed import replace_section
from bench.tools.timing import alternate

HEADING = "## k-shot episodes: a digits run's evaluation"
REPS = 5


def latents(method: str, ds) -> dict:
    torch.manual_seed(0)
    model = registry.create(method, config.method_config(method, {"latent_dim": 64}), ds.shape)
    model.prepare(ds.x_train)  # PCA's fit on the training images (uint8, as training hands them)
    return {s: evaluate.extract(model, getattr(ds, f"x_{s}"), torch.device("cpu")) for s in evaluate.SPLITS}


def evaluation(z: dict, y: dict, cfg, skip: str | None) -> None:
    ctx = Context(evaluate.standardize(z), z, y, 10, cfg, 0)
    for e in evaluators.all():
        if e.name != skip and not e.needs_model:
            ctx.reader = e.name
            e(ctx)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tools.speed_fewshot")
    p.add_argument("--out", default="results/speed.md")
    args = p.parse_args(argv)
    ds = data.load(config.DataConfig())
    y = {s: getattr(ds, f"y_{s}") for s in evaluate.SPLITS}
    cfg = config.EvalConfig()
    rows = []
    for method in ("pca", "random"):
        z = latents(method, ds)
        evaluation(z, y, cfg, None)  # warm-up: imports, first-call costs
        with_, without = alternate(
            lambda z=z: evaluation(z, y, cfg, None), lambda z=z: evaluation(z, y, cfg, "fewshot"), REPS
        )
        rows.append(
            f"| {method}, d = 64 | {without:.2f} s | {with_:.2f} s | +{with_ - without:.2f} s "
            f"| {with_ / without:.2f}x |"
        )
    machine = env.device_name(torch.device("cpu"))
    text = "\n".join(
        [
            HEADING,
            "",
            f"The whole latent evaluation of a digits run (every evaluator but reconstruction, which runs "
            f"the model) with and without k-shot episodes (k = {', '.join(map(str, cfg.fewshot_ks))}, "
            f"{cfg.fewshot_episodes} episodes each, linear probe and kNN): medians of {REPS} alternating "
            f"repetitions on {machine}, {env.cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), "
            f"{torch.get_num_threads()} threads, latents of the untrained d = 64 runs. The rule: under 2x. "
            "Made by `make bench-fewshot-speed`.",
            "",
            "| latents | without k-shot | with k-shot | added | ratio |",
            "|:--|--:|--:|--:|--:|",
            *rows,
            "",
        ]
    )
    replace_section(Path(args.out), text, HEADING)
    print(text)


if __name__ == "__main__":
    main()
