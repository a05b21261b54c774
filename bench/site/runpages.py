"""A run's page: what it is, its numbers (every evaluator's columns, from the registry), per-class
accuracy and confusion matrix, loss curve, reconstructions, latent map, protocol card,
provenance, the command that reproduces it, its config, and a link to every table row it is on."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bench import evaluators, store
from bench.report import card, plots
from bench.report.tables import pm
from bench.site import charts
from bench.site.html import esc, table

RECON_PX = 28  # a reconstruction tile is drawn at least this many pixels wide


def body(run: dict, title: str, appears: list[tuple[str, str]]) -> str:
    """The page's body; `appears`: (link text, href) of every table row that shows the run."""
    m, c, key = run["metrics"], run["config"], run["key"]
    env = m.get("env") or {}
    train = m.get("train") or {}
    out = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="lede">run <code>{key}</code> · status {esc(m.get("status"))}</p>',
    ]
    if appears:
        out.append("<p>On: " + " · ".join(f'<a href="{h}">{esc(t)}</a>' for t, h in appears) + "</p>")
    facts = {
        "learner": c["method"],
        "dataset": c["dataset"].get("title", c["dataset"]["name"]),
        "latent dim": m.get("latent_dim"),
        "seed": c["seed"],
        "parameters": f"{m['params']:,}" if m.get("params") is not None else "-",
        "training": f"{train.get('epochs', '-')} epochs, {pm(train.get('time_s'), None, 1, 1)} s, "
        f"{pm(train.get('images_per_s'), None, 1, 0)} img/s"
        if train
        else "not trained",
        "peak memory": f"{env.get('peak_memory_mb', '-')} MB ({env.get('peak_memory_kind', 'process peak')})",
    }
    out.append(_facts(facts))
    out.append(
        "<h2>Reproduce</h2><p>Retrain exactly this run from its stored config and compare every number: "
        f"<code>python -m bench verify {key}</code>. Made by: <code>{esc(c.get('command') or '-')}</code> "
        "(which skips runs already stored).</p>"
    )
    if m.get("status") == "ok":
        out += _numbers(m) + _classes(run) + _figures(run, train)
    out += _protocol(run) + _provenance(m, env)
    out.append(
        "<h2>Config</h2><details><summary>config.json</summary><pre>"
        + esc(json.dumps(c, indent=1, sort_keys=True))
        + "</pre></details>"
    )
    return "\n".join(out)


def _facts(facts: dict) -> str:
    return (
        "<dl class=facts>"
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items())
        + "</dl>"
    )


def _numbers(m: dict) -> list[str]:
    rows = []
    for e in evaluators.all():
        cells = e.cells(m)
        for col in e.columns:
            value = cells.get(col.key)
            if value is None or isinstance(value, (list, dict)):
                continue
            if not isinstance(value, (int, float)):
                shown = str(value)
            else:  # a table's column as the table prints it; a CSV-only one with 4 significant digits
                shown = pm(value, None, col.scale, col.digits) if col.header else f"{value:.4g}"
            rows.append(
                {"evaluator": esc(e.name), "measure": esc(col.header or col.key), "value": esc(shown)}
            )
    return ["<h2>Numbers</h2>", table("numbers", ["evaluator", "measure", "value"], rows, numeric={"value"})]


def _classes(run: dict) -> list[str]:
    conf = np.asarray(run["metrics"].get("confusion") or [])
    if conf.ndim != 2 or not conf.size:
        return []
    names = plots.class_names(run["config"], len(conf))
    totals = conf.sum(1)
    per = [
        {"class": esc(n), "test images": f"{t:,}", "accuracy %": f"{100 * conf[i, i] / t:.2f}" if t else "-"}
        for i, (n, t) in enumerate(zip(names, totals))
    ]
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    body = []
    for i, row in enumerate(conf):
        tds = "".join(
            f'<td style="background:rgba(36,88,179,{v / max(totals[i], 1):.2f})">{v}</td>' for v in row
        )
        body.append(f"<tr><th>{esc(names[i])}</th>{tds}</tr>")
    return [
        "<h2>Per-class accuracy</h2>",
        table("classes", ["class", "test images", "accuracy %"], per, numeric={"test images", "accuracy %"}),
        "<h2>Confusion matrix</h2><p class=muted>Linear probe on the test split; rows: true class, "
        "columns: predicted.</p>",
        f'<div class="scroll"><table class="confusion"><tr><th></th>{head}</tr>{"".join(body)}</table></div>',
    ]


def _figures(run: dict, train: dict) -> list[str]:
    out = []
    losses = train.get("loss_per_epoch") or []
    if len(losses) > 1:
        out += ["<h2>Training loss</h2>", charts.line(losses, "Loss per epoch", "epoch", "loss")]
    if (store.run_dir(run["key"]) / "recon.npz").is_file():
        out += [
            "<h2>Reconstructions</h2><p class=muted>Top: test images (the first of each class); bottom: "
            "the learner's reconstructions.</p>",
            f'<img src="{run["key"]}/recon.png" alt="reconstructions" class="pixels">',
        ]
    lm = store.load_artifact(store.run_dir(run["key"]), "latent_map")
    if lm is not None:
        names = plots.class_names(run["config"], int(np.max(lm["y"])) + 1)
        out += ["<h2>Latent map</h2>", charts.latent_map(lm["xy"], lm["y"], names, "t-SNE of test latents")]
    return out


def images(run: dict, folder) -> list[str]:
    """Write the run's images into `folder` (its own folder of the site); the names written."""
    recon = store.load_artifact(store.run_dir(run["key"]), "recon")
    if recon is None:
        return []
    grid = np.concatenate([_strip(recon["input"]), _strip(recon["recon"])], 0)
    img = Image.fromarray(grid.squeeze(-1) if grid.shape[-1] == 1 else grid)
    scale = max(1, -(-RECON_PX // recon["input"].shape[-1]))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    folder.mkdir(parents=True, exist_ok=True)
    img.save(folder / "recon.png", optimize=True)
    return ["recon.png"]


def _strip(batch: np.ndarray) -> np.ndarray:
    """N x C x H x W uint8 -> one row H x (N W) x C."""
    return np.concatenate(list(np.asarray(batch).transpose(0, 2, 3, 1)), 1)


def _protocol(run: dict) -> list[str]:
    rows = card.of_run(run)
    if not rows:
        return []
    headers = ["measure", "chooses", "over", "on", "scored", "reads"]
    cells = [{h: esc(r.get(h, "")) for h in headers} for r in rows]
    return ["<h2>Protocol card</h2>", table("protocol", headers, cells, numeric={"reads"})]


def _provenance(m: dict, env: dict) -> list[str]:
    facts = {
        "git commit": env.get("git_sha"),
        "CPU": f"{env.get('cpu_model', '-')} ({env.get('cpu_capability', '-')}), "
        f"{env.get('cpu_count', '-')} cores",
        "device": env.get("device"),
        "torch": env.get("torch"),
        "threads": env.get("threads"),
        "python": env.get("python"),
        "wall time": f"{pm(m.get('wall_time_s'), None, 1, 1)} s",
        "load (1 min)": env.get("load_avg_1min", "-"),
        "from checkpoint": m.get("from_checkpoint", "-"),
    }
    return ["<h2>Provenance</h2>", _facts({k: v if v is not None else "-" for k, v in facts.items()})]
