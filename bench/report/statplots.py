"""Figures of a page's statistics: which differences are real (a pairwise heat map), what the
latents look like (latent maps side by side) and whether label-free measures follow the labels
(one scatter per measure). Drawn from stored numbers and artifacts only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import ticker

from bench.report.drawn import once
from bench.report.plots import plt, save
from bench.report.significance import Interval

FAMILY_COLOURS = {
    "autoencoders": "tab:blue",
    "views": "tab:orange",
    "baselines": "tab:gray",
    "reference": "tab:green",
    "other": "tab:purple",
}


@once
def pairwise_png(path: Path, names: list[str], cells: list[list[Interval | None]], title: str) -> None:
    """cells[i][j]: row learner minus column learner, in points; a difference whose 95% interval
    contains zero is shown grey (not a real difference), hatched where it carries no verdict
    (a single seed)."""
    names = [short(n) for n in names]
    k = len(names)
    diff = np.array([[np.nan if c is None else c.diff * 100 for c in row] for row in cells])
    lim = max(1.0, float(np.nanmax(np.abs(diff)))) if k > 1 else 1.0
    fig, ax = plt.subplots(figsize=(2.5 + 0.62 * k, 1.8 + 0.55 * k))
    im = ax.imshow(np.ma.masked_invalid(diff), cmap="RdBu", vmin=-lim, vmax=lim)
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c is None:
                continue
            if not c.real:
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor="0.88",
                        edgecolor="0.6",
                        hatch="///" if not c.tested else "",
                        lw=0.5,
                    )
                )
            text = f"{c.diff * 100:+.1f}" if not math.isnan(c.diff) else ""
            strong = c.real and abs(c.diff * 100) > 0.6 * lim
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if strong else "black" if c.real else "0.45",
            )
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_title(
        f"{title}\nrow minus column, linear probe (points); grey: 95% interval contains 0, "
        "hatched: one seed, no verdict",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, label="Δ test accuracy (points)")
    save(fig, path)


def short(name: str) -> str:
    """A learner's label for a figure's axis: the supervised reference's note shortened."""
    return name.replace("reference: trained with labels", "ref.")


@once
def latent_maps_png(path: Path, panels: list[dict], classes: list[str], title: str) -> None:
    """Small multiples: one t-SNE map per learner (`panels`: name, acc, xy, y; xy None = missing),
    one colour per class, the same limits on every panel."""
    n = len(panels)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.9 * rows + 0.6), squeeze=False)
    k = len(classes)
    cmap = plt.cm.tab10 if k <= 10 else plt.cm.tab20 if k <= 20 else plt.cm.turbo
    colour = (lambda c: cmap(c)) if k <= 20 else (lambda c: cmap(c / max(1, k - 1)))
    drawn = [
        np.abs(np.asarray(p["xy"], np.float32)).max() for p in panels if p["xy"] is not None and len(p["xy"])
    ]
    lim = 1.05 * max(drawn, default=1.0)  # the same limits on every panel
    for ax, p in zip(axes.flat, panels):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        acc = "" if p["acc"] is None else f"\nlinear {p['acc'] * 100:.2f}%"
        ax.set_title(f"{short(p['name'])}{acc}", fontsize=8)
        if p["xy"] is None:
            ax.text(0, 0, "no latents stored\nor cached", ha="center", va="center", fontsize=7, color="0.4")
            continue
        xy = np.asarray(p["xy"], np.float32)
        size = min(12.0, max(2.0, 4000 / max(1, len(xy))))  # 2,000 points: 2; digits' 360: 11
        ax.scatter(xy[:, 0], xy[:, 1], c=[colour(int(c)) for c in p["y"]], s=size, lw=0, rasterized=True)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if k <= 20:
        handles = [
            plt.Line2D([], [], ls="", marker="o", ms=4, color=colour(c), label=name)
            for c, name in enumerate(classes)
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(k, 10),
            fontsize=7,
            frameon=False,
            bbox_to_anchor=(0.5, 0),
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if k <= 20 else 0, 1, 0.97))
    save(fig, path)


@once
def label_free_png(path: Path, df, corr, title: str) -> None:
    """One scatter per label-free measure against linear accuracy, every run a point, coloured
    by family; each panel's title has the Spearman rho over the counted families."""
    measures = [r for r in corr.itertuples() if r.key in df and df[r.key].notna().any()]
    if not measures:
        return
    fig, axes = plt.subplots(1, len(measures), figsize=(3.2 * len(measures), 3.2), squeeze=False)
    for ax, r in zip(axes.flat, measures):
        have = df[df[r.key].notna() & df["linear"].notna()]
        for family, g in have.groupby("family"):
            ax.scatter(
                g[r.key],
                g["linear"] * 100,
                s=12,
                alpha=0.8,
                label=family,
                color=FAMILY_COLOURS.get(family, "tab:purple"),
            )
        rho = "-" if math.isnan(r.rho) else f"{r.rho:+.2f}"
        ax.set(xlabel=r.measure, title=f"{r.measure}: ρ {rho} ({r.runs} runs)")
        if r.key != "alpha_req" and (have[r.key] > 0).all():  # ranks span decades: 1 to the latent size
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("test linear accuracy (%)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)


@once
def fewshot_png(path: Path, lines: dict[str, list[tuple]], styles: dict, title: str) -> None:
    """Linear-probe accuracy against k labelled images a class, one line per learner:
    lines[learner] = [(k, mean, half-width of the 95% interval), ...]."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ks = sorted({k for points in lines.values() for k, _, _ in points})
    for learner, points in lines.items():
        k, mean, half = zip(*points)
        err = np.nan_to_num(np.asarray(half, float) * 100)
        ax.errorbar(k, np.asarray(mean) * 100, yerr=err, capsize=3, label=learner, **styles[learner])
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set(xlabel="labelled training images per class (k)", ylabel="linear probe test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


@once
def frontier_png(path: Path, points: list[tuple], styles: dict, title: str) -> None:
    """Linear accuracy against total training FLOPs, one point per learner: points =
    [(learner, FLOPs or 0 for an untrained baseline, accuracy, on the frontier)]. Untrained
    baselines sit at the left edge; the Pareto frontier (no cheaper point is as accurate) is a line."""
    trained = [p[1] for p in points if p[1] > 0]
    floor = min(trained) / 10 if trained else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for learner, flops, acc, _ in points:
        style = {k: v for k, v in styles[learner].items() if k != "ls"}
        ax.scatter(flops or floor, acc * 100, label=learner, s=36, **style)
    front = sorted((flops or floor, acc * 100) for _, flops, acc, on in points if on)
    if front:
        ax.plot(*zip(*front), color="0.3", lw=1, ls="--", zorder=0, label="Pareto frontier")
    ax.set_xscale("log")
    ax.axvline(floor * 3, color="0.8", lw=0.8)
    if len(trained) < len(points):  # the untrained baselines' strip, named
        ax.text(
            floor * 1.5,
            0.02,
            "untrained",
            transform=ax.get_xaxis_transform(),
            ha="center",
            fontsize=7,
            color="0.4",
        )
    ax.set(
        xlabel="training FLOPs (total; untrained baselines at the left)",
        ylabel="linear probe test accuracy (%)",
    )
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


def reliability_png(path: Path, calibration: dict, title: str) -> None:
    """A run's reliability diagram (bench/evaluators/calibration.py): each confidence bin's
    accuracy against its mean confidence, raw and temperature-scaled; the diagonal is calibrated."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharey=True)
    bins = calibration["bins"]
    width = 1 / bins
    for ax, suffix, name in zip(axes, ("", "_ts"), ("probe", f"T = {calibration['temperature']:.2f}")):
        r = calibration[f"reliability{suffix}"]
        left = np.arange(bins) * width
        acc = np.where(np.asarray(r["count"]) > 0, r["accuracy"], np.nan)
        ax.bar(left, acc, width=width, align="edge", edgecolor="black", linewidth=0.5, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name}: ECE {calibration[f'ece{suffix}'] * 100:.2f}%", fontsize=9)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=9)
    save(fig, path)


@once
def severity_png(path: Path, lines: dict[str, list[tuple]], styles: dict, title: str) -> None:
    """Linear accuracy against corruption severity (0: the same images clean), mean over the
    corruptions, one line per learner: lines[learner] = [(severity, accuracy), ...]."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for learner, points in lines.items():
        sev, acc = zip(*points)
        ax.plot(sev, np.asarray(acc) * 100, label=learner, **styles[learner])
    ax.set_xticks(range(6), ["clean", "1", "2", "3", "4", "5"])
    ax.set(xlabel="corruption severity", ylabel="linear probe test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


@once
def corruption_heat_png(
    path: Path, learners: list[str], names: list[str], acc: np.ndarray, title: str
) -> None:
    """Linear accuracy (%) of each learner (rows) under each corruption (columns), mean over
    severities and seeds."""
    fig, ax = plt.subplots(figsize=(2.5 + 0.62 * len(names), 1.6 + 0.38 * len(learners)))
    im = ax.imshow(acc * 100, cmap="viridis", aspect="auto")
    for i in range(len(learners)):
        for j in range(len(names)):
            light = (acc[i, j] - acc.min()) > 0.6 * (acc.max() - acc.min())  # dark text on the bright cells
            ax.text(
                j,
                i,
                f"{acc[i, j] * 100:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if light else "white",
            )
    ax.set_xticks(
        range(len(names)), [n.replace("_", " ") for n in names], rotation=40, ha="right", fontsize=7
    )
    ax.set_yticks(range(len(learners)), [short(n) for n in learners], fontsize=7)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    ax.set_title(title, fontsize=9)
    save(fig, path)
