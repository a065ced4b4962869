"""Reports: the paper-style table (Markdown), results.json and plots."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Mapping, Sequence

COLUMNS = [("acc_t1", "Acc@t1"), ("acc_t2", "Acc@t2"), ("delta", "Δ(t1,t2)"),
           ("delta_i2c", "Δ i→c"), ("delta_c2i", "Δ c→i"), ("same_answer", "same answer"),
           ("edit_ratio", "edit ratio")]


def _cell(runs: Sequence[Mapping], key: str) -> str:
    values = [100 * r[key] for r in runs if key in r]
    if not values:
        return "–"
    if len(values) == 1:
        ci = runs[0].get(f"{key}_ci")
        return f"{values[0]:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def markdown_table(results: Mapping[str, Sequence[Mapping]]) -> str:
    """One row per method; a cell is mean ± std over seeds, or value [95% interval] for one seed."""
    head = "| Method | " + " | ".join(name for _, name in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    rows = [f"| {method} | " + " | ".join(_cell(runs, key) for key, _ in COLUMNS) + " |"
            for method, runs in results.items()]
    return "\n".join([head, rule, *rows])


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def plot_curves(curves: Mapping[str, Sequence[Sequence[Mapping]]], path: Path, title: str) -> None:
    """Acc@t1 (dashed) and Acc@t2 (solid) against training step, mean over seeds, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (method, seeds) in enumerate(curves.items()):
        color = f"C{i}"
        steps = [point["step"] for point in seeds[0]]
        for key, style in (("acc_t1", "--"), ("acc_t2", "-")):
            mean = [statistics.mean(run[j][key] for run in seeds) * 100 for j in range(len(steps))]
            ax.plot(steps, mean, style, color=color, marker=".", label=f"{method} {key[-2:]}")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy on validation problems (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
