"""Figures: confusion matrix and reconstruction grid per run, comparison plots per dataset.
Every PNG is rendered in memory and written atomically; `dataset_figures` picks what a
dataset's page shows."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench import store  # noqa: E402
from bench.report.drawn import once  # noqa: E402
from bench.report.tables import LOSSLESS_DB  # noqa: E402


def dataset_figures(slug: str, title: str, runs: list[dict], df, summary) -> dict:
    """Write the dataset's plots; returns {kind: file name} of those written."""
    if summary.empty:
        return {}
    out, figs = store.results_dir(), {"latent": f"{slug}-accuracy-vs-latent.png"}
    styles = palette(summary["learner"])  # a learner looks the same in every figure of the page
    plain = summary[~summary["variant"]]  # the ablations have their own table
    # each figure gets the columns it draws, no more: a run redone with the same numbers (its
    # times differ) leaves them as they were, and @once skips drawing them again
    shown = ["learner", "method", "latent_dim", "linear_mean", "linear_std"]
    accuracy_vs_latent_png(out / figs["latent"], plain[shown], title, styles)
    if summary["psnr_mean"].notna().any():
        figs["psnr"] = f"{slug}-accuracy-vs-psnr.png"
        accuracy_vs_psnr_png(out / figs["psnr"], summary, title, styles)
    from bench.evaluators.label_efficiency import fractions

    if fractions(summary) and plain[f"linear@{fractions(summary)[0]}_mean"].notna().any():
        figs["labels"] = f"{slug}-label-efficiency.png"
        fracs = fractions(summary)
        at = [f"linear@{f}_{m}" for f in fracs for m in ("mean", "std")]
        counts = df[[f"labels@{f}" for f in fracs]]
        label_efficiency_png(out / figs["labels"], plain[shown + at], counts, fracs, title, styles)
    rows = _recon_rows(df[df["status"] == "ok"])
    if len(rows) > 1:
        figs["recon"] = f"{slug}-reconstructions.png"
        recon_grid_png(out / figs["recon"], rows, f"{title}: the same test images")
    candidates = summary[summary["kind"] != "reference"]  # a labelled ceiling is never "the best"
    best = (candidates if len(candidates) else summary).sort_values("linear_mean").iloc[-1]
    pick = df[
        (df["learner"] == best.learner) & (df["latent_dim"] == best.latent_dim) & (df["status"] == "ok")
    ]
    run = next(r for r in runs if r["key"] == pick.sort_values("seed")["key"].iloc[0])
    figs["confusion"] = f"{slug}-confusion-best.png"
    conf = run["metrics"]["confusion"]
    confusion_png(
        out / figs["confusion"],
        conf,
        class_names(run["config"], len(conf)),
        f"{title}\nbest: {best.learner} d={int(best.latent_dim)} seed={run['config']['seed']}",
    )
    return figs


def run_figures(
    run_dir: Path, spec: dict, confusion: list[list[int]] | None, title: str, train: dict | None = None
) -> None:
    """A run's confusion matrix (none for a study's trial), its training curves (`train`: the
    run's train info) and, if it stored reconstructions, its reconstruction grid."""
    if confusion:
        confusion_png(run_dir / "confusion.png", confusion, class_names(spec, len(confusion)), title)
    if train and train.get("loss_per_epoch"):
        loss_png(run_dir / "loss.png", train, title)
    grid = _load_grid(run_dir)
    if grid is not None:
        recon_grid_png(run_dir / "recon.png", {"input": grid["input"], spec["method"]: grid["recon"]}, title)


def _load_grid(run_dir: Path) -> dict | None:
    """A run's stored reconstruction grid, or None if it has none or it cannot be used (warned:
    the figure is skipped, the run's numbers stand)."""
    return store.load_artifact(run_dir, "recon")


def class_names(spec: dict, n: int) -> list[str]:
    return spec["dataset"].get("classes") or [str(i) for i in range(n)]


def _recon_rows(df) -> dict:
    """Inputs and one row per plain learner that reconstructs, on the same test images, at the
    latent size most of them share (lowest seed)."""
    has = df[[(store.run_dir(k) / "recon.npz").is_file() for k in df["key"]]]
    has = has[~has["variant"]]
    if has.empty:
        return {}
    dim = has["latent_dim"].mode().iloc[0]
    rows = {}
    for learner, g in has[has["latent_dim"] == dim].groupby("learner", sort=True):
        grid = _load_grid(store.run_dir(g.sort_values("seed")["key"].iloc[0]))
        if grid is not None:
            rows.setdefault("input", grid["input"])
            rows[f"{learner} d={int(dim)}"] = grid["recon"]
    return rows


def save(fig, path: Path) -> None:
    """Render `fig` as a PNG in memory, close it, and write it atomically (every figure here)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    store.atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


@once
def confusion_png(path: Path, conf: list[list[int]], classes: list[str], title: str) -> None:
    """Row-normalised confusion matrix (rows: true class) with per-class recall on the diagonal."""
    m = np.asarray(conf, dtype=float)
    norm = m / m.sum(1, keepdims=True).clip(min=1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(min(3 + 0.45 * k, 14), min(2.5 + 0.45 * k, 13)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 20:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        int(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title}\nlinear probe, test accuracy {acc:.2%}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    save(fig, path)


@once
def recon_grid_png(path: Path, rows: dict[str, np.ndarray], title: str) -> None:
    """One row per entry (e.g. 'input', then one per learner) of uint8 images (N, C, H, W)."""
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.15 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            img = np.asarray(imgs[c]).transpose(1, 2, 0)
            axes[r][c].imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


@once
def accuracy_vs_latent_png(path: Path, df, title: str, styles: dict | None = None) -> None:
    """Linear-probe accuracy against latent size, one line per learner (mean +- std over seeds)."""
    styles = styles or palette(df["learner"])
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for label, g in df.groupby("learner", sort=True):
        g = g.sort_values("latent_dim")
        if not takes_latent_dim(g["method"].iloc[0]):  # one point at the image size: a line reads better
            ax.axhline(
                g["linear_mean"].iloc[0],
                color="gray",
                ls="--",
                lw=1,
                label=f"{label} (d={int(g['latent_dim'].iloc[0])})",
            )
            continue
        ax.errorbar(
            g["latent_dim"],
            g["linear_mean"],
            yerr=g["linear_std"].fillna(0),
            capsize=3,
            label=label,
            **styles[label],
        )
    ax.set_xscale("log", base=2)
    ax.set(xlabel="latent dimension", ylabel="linear probe test accuracy", title=title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a store of ablations only has no plain line to name
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


@once
def label_efficiency_png(
    path: Path, summary, df, fracs: list[str], title: str, styles: dict | None = None
) -> None:
    """Linear-probe accuracy against the number of labelled training images, one line per learner
    at the latent size most learners share (baselines without a latent size at theirs)."""
    have = summary[summary[f"linear@{fracs[0]}_mean"].notna()]
    dims = have.loc[[takes_latent_dim(m) for m in have["method"]], "latent_dim"]
    dim = dims.mode().max() if len(dims) else None  # ties: the largest size
    counts = [int(df[f"labels@{f}"].dropna().iloc[0]) for f in fracs]
    full = int(round(counts[-1] / float(fracs[-1])))
    styles = styles or palette(summary["learner"])
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    shown = have[[not takes_latent_dim(m) or d == dim for m, d in zip(have["method"], have["latent_dim"])]]
    for _, s in shown.iterrows():
        y = [s[f"linear@{f}_mean"] for f in fracs] + [s["linear_mean"]]
        err = [s[f"linear@{f}_std"] for f in fracs] + [s["linear_std"]]
        ax.errorbar(
            counts + [full], y, yerr=np.nan_to_num(err), capsize=3, label=s["learner"], **styles[s["learner"]]
        )
    ax.set_xscale("log")
    ax.set(xlabel="labelled training images", ylabel="linear probe test accuracy")
    ax.set_title(f"{title}: label efficiency" + (f" (d={int(dim)})" if dim else ""))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


MARKERS = "osD^vP*Xh<>p"


def palette(learners) -> dict[str, dict]:
    """One colour and marker per learner of a page, the same in every figure of it (13 and more
    learners outrun the 10-colour cycle: tab20 and a marker each)."""
    return {
        name: {"color": plt.cm.tab20(i % 20), "marker": MARKERS[i % len(MARKERS)], "ls": "-"}
        for i, name in enumerate(sorted(set(learners)))
    }


def takes_latent_dim(method: str) -> bool:
    from bench import registry

    return registry.trait(method, "takes_latent_dim", True)


@once
def loss_png(path: Path, train: dict, title: str) -> None:
    """The training loss and every loss term the learner logged, per epoch, one panel each
    (the terms live on different scales)."""
    curves = {"loss": train["loss_per_epoch"], **train.get("terms_per_epoch", {})}
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items()):
        ax.plot(range(1, len(values) + 1), values, "o-", ms=3)
        ax.set(xlabel="epoch", title=name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: training", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # the figure's title above the panels' titles, not on them
    save(fig, path)


@once
def accuracy_vs_psnr_png(path: Path, df, title: str, styles: dict | None = None) -> None:
    """Does reconstruction quality predict class information? One point per learner and size."""
    styles = styles or palette(df["learner"])
    df = df.dropna(subset=["psnr_mean"])
    lossless = df[df["psnr_mean"] >= LOSSLESS_DB]  # PSNR is capped at 100 dB: off any useful scale
    df = df[df["psnr_mean"] < LOSSLESS_DB]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if len(lossless):
        names = ", ".join(f"{r.learner} d={int(r.latent_dim)}" for r in lossless.itertuples())
        ax.text(0.01, 0.01, f"not shown, lossless: {names}", transform=ax.transAxes, fontsize=7)
    for label, g in df.groupby("learner", sort=True):
        style = styles[label]
        ax.scatter(
            g["psnr_mean"], g["linear_mean"], label=label, color=style["color"], marker=style["marker"]
        )
        for _, row in g.iterrows():
            ax.annotate(
                str(int(row["latent_dim"])),
                (row["psnr_mean"], row["linear_mean"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set(xlabel="test PSNR (dB)", ylabel="linear probe test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


@once
def pareto_png(path: Path, trials, pareto: list[int], names: list[str], title: str) -> None:
    """Every complete trial of a two-objective study; the Pareto-optimal ones highlighted."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    front = [t for t in trials if t.number in pareto]
    rest = [t for t in trials if t.number not in pareto]
    ax.scatter([t.values[1] for t in rest], [t.values[0] for t in rest], c="lightgray", label="trials")
    front.sort(key=lambda t: t.values[1])
    ax.plot([t.values[1] for t in front], [t.values[0] for t in front], "o-", c="C3", label="Pareto front")
    ax.set(xlabel=names[1], ylabel=names[0], title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
