"""`bench evaluate RUN`: one stored run's measures, per-class accuracy and training curves, and
its figures (confusion matrix, loss curves, reconstruction grid, latent map) drawn into its folder.
Nothing is retrained or re-measured: `bench verify RUN --adopt` does that."""

from __future__ import annotations

from bench import BenchError, evaluators, store
from bench.report import labelfree, labels, plots, statplots


def add(p) -> None:
    p.add_argument("key", help="run key or a unique prefix of it")


def main(args, argv) -> None:
    show(args.key)


def show(prefix: str) -> None:
    """A stored run's measures, per-class accuracy, training curves, and its
    figures (confusion matrix, loss curves, reconstruction grid, latent map) written into its folder."""
    key = store.find(prefix)
    run = store.run_dir(key)
    stored = store.read_run(run)  # unreadable or failing the schema: warned, counts as unfinished
    if stored is None:
        raise BenchError(
            f"run {key} is not finished (or its files are unreadable): rerun the command that made it"
        )
    spec, m = stored
    print(f"run {key}: {labels.run(spec)} on {spec['dataset']['name']}")
    if m["status"] != "ok":
        raise BenchError(f"run {key} has status {m['status']}: {m.get('error', '')}")
    for col in evaluators.columns("header"):
        if (value := col.get(m)) is not None:
            print(f"  {col.header:<8} {value * col.scale:.{col.digits}f}")
    free = {
        name: m.get(key) if key == "rankme" else (m.get("spectrum") or {}).get(key)
        for key, name in labelfree.MEASURES.items()
    }
    if any(v is not None for v in free.values()):
        print("  label-free: " + ", ".join(f"{k} {v:.3g}" for k, v in free.items() if v is not None))
    if m.get("steer_only"):
        print("  a study's trial: measured only by what steers its study (the linear probe)")
    else:
        classes = plots.class_names(spec, len(m["confusion"]))
        print("  per-class accuracy (linear probe, test):")
        for i, (name, row) in enumerate(zip(classes, m["confusion"])):
            print(f"    {name:<12} {row[i] / max(1, sum(row)):.2%}  ({sum(row)} images)")
    cal = m.get("calibration")
    if isinstance(cal, dict) and "ece" in cal:
        print(
            f"  calibration (linear probe, test): ECE {cal['ece']:.2%} -> {cal['ece_ts']:.2%}, NLL "
            f"{cal['nll']:.3f} -> {cal['nll_ts']:.3f}, Brier {cal['brier']:.4f} -> {cal['brier_ts']:.4f} "
            f"with temperature {cal['temperature']:.2f} (fitted on validation)"
        )
        statplots.reliability_png(run / "reliability.png", cal, labels.title(spec, m.get("latent_dim")))
    bad = m.get("corruptions")
    if isinstance(bad, dict) and bad.get("accuracy"):
        print(
            f"  corruptions ({bad.get('suite', 'CIFAR-10-C')}, {bad['images']} test images, clean "
            f"{bad['clean_acc']:.2%}): mean "
            f"{bad['mean_acc']:.2%}, drop {bad['drop'] * 100:.2f} points; accuracy by severity:"
        )
        for name, by in bad["accuracy"].items():
            cells = (f"{'once' if s == '-' else s}: {a:.2%}" for s, a in by.items())  # "-": one form
            print(f"    {name:<15} " + "  ".join(cells))
    train = m.get("train") or {}
    for term, values in {"loss": train.get("loss_per_epoch"), **train.get("terms_per_epoch", {})}.items():
        if values:
            print(f"  train {term:<12} epoch 1 {values[0]:.4g} -> epoch {len(values)} {values[-1]:.4g}")
    plots.run_figures(run, spec, m["confusion"], labels.title(spec, m.get("latent_dim")), train)
    latent = store.load_artifact(run, "latent_map")
    if latent is not None:
        classes = plots.class_names(spec, int(latent["y"].max()) + 1 if len(latent["y"]) else 0)
        panel = {"name": labels.title(spec, m.get("latent_dim")), "acc": m["linear"]["test_acc"], **latent}
        statplots.latent_maps_png(
            run / "latent_map.png", [panel], classes, f"t-SNE of {len(latent['y'])} test latents"
        )
    elif not m.get("steer_only"):
        print(
            f"  no latent map: the run predates it (`python -m bench verify {key[:8]} --adopt` "
            "re-measures it)"
        )
    for path in sorted(run.glob("*.png")):
        print(f"wrote {path}")
