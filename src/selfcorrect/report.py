"""Reports: the paper-style table (Markdown), results.json and plots."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Mapping, Sequence

FLIPS = [("delta_i2c", "Δ i→c"), ("delta_c2i", "Δ c→i"), ("same_answer", "same answer"),
         ("edit_ratio", "edit ratio")]


def _columns(results: Mapping[str, Sequence[Mapping]]) -> list[tuple[str, str]]:
    """Acc@t for every attempt any run has (two in the paper), Δ between the first and the last, flips."""
    k = max((int(key[5:]) for runs in results.values() for r in runs for key in r
             if key.startswith("acc_t") and key[5:].isdigit()), default=2)
    return [(f"acc_t{t}", f"Acc@t{t}") for t in range(1, k + 1)] + [("delta", f"Δ(t1,t{k})")] + FLIPS


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
    columns = _columns(results)
    head = "| Method | " + " | ".join(name for _, name in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [f"| {method} | " + " | ".join(_cell(runs, key) for key, _ in columns) + " |"
            for method, runs in results.items()]
    return "\n".join([head, rule, *rows])


def per_seed_table(results: Mapping[str, Sequence[Mapping]]) -> str:
    """Δ per seed, with Δ i→c / Δ c→i, in %: the spread that a mean ± std summarises."""
    seeds = max(len(runs) for runs in results.values())
    head = "| Method | " + " | ".join(f"Δ seed {s}" for s in range(seeds)) + " | Δ i→c / c→i per seed |"
    rule = "|---" * (seeds + 2) + "|"
    rows = [f"| {method} | " + " | ".join(f"{100 * r['delta']:+.1f}" for r in runs) + " | "
            + ", ".join(f"{100 * r['delta_i2c']:.1f} / {100 * r['delta_c2i']:.1f}" for r in runs) + " |"
            for method, runs in results.items() if len(runs) == seeds]
    return "\n".join([head, rule, *rows])


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(i: int):
    """The i-th method's colour: 20 distinct ones (matplotlib's default cycle repeats after 10,
    and the paper suite has 12 rows)."""
    return _pyplot().get_cmap("tab20")((2 * i + i // 10) % 20)


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    _pyplot().close(fig)
    os.replace(tmp, path)


def plot_curves(curves: Mapping[str, Sequence[Sequence[Mapping]]], path: Path, title: str) -> None:
    """Acc@t1 (dashed) and Acc@t2 (solid) against training step, mean over seeds, per method."""
    fig, ax = _pyplot().subplots(figsize=(7, 4.2))
    for i, (method, seeds) in enumerate(curves.items()):
        color = _color(i)
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
    _save(fig, path)


def plot_comparison(runs: Mapping[str, Sequence[Mapping]], path: Path) -> None:
    """Per method: accuracy per attempt, flips (i->c, c->i), and the histogram of edit ratios.

    `runs` maps a method to its seeds' results, each {"metrics": ..., "edit_ratios": [...]}.
    """
    fig, (acc, flips, hist) = _pyplot().subplots(1, 3, figsize=(15, 4.5))
    names = list(runs)
    mean = lambda method, key: statistics.mean(100 * r["metrics"][key] for r in runs[method])
    x = range(len(names))
    for offset, key, label in ((-0.2, "acc_t1", "Acc@t1"), (0.2, "acc_t2", "Acc@t2")):
        acc.bar([i + offset for i in x], [mean(m, key) for m in names], width=0.4, label=label)
    for offset, key, label in ((-0.2, "delta_i2c", "Δ i→c"), (0.2, "delta_c2i", "Δ c→i")):
        flips.bar([i + offset for i in x], [mean(m, key) for m in names], width=0.4, label=label)
    for ax, title in ((acc, "accuracy per attempt (%)"), (flips, "flips between attempts (% of problems)")):
        ax.set_xticks(list(x), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    bins = [i / 20 for i in range(21)]
    for i, method in enumerate(names):
        ratios = [v for r in runs[method] for v in r["edit_ratios"]]
        hist.hist(ratios, bins=bins, histtype="step", density=True, label=method, color=_color(i))
    hist.set_title("edit ratio between attempts (1 = identical)")
    hist.set_xlabel("edit ratio")
    hist.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def plot_scaling(scaling: Mapping, path: Path, title: str) -> None:
    """Accuracy against sample budget: parallel self-consistency vs sequential self-correction."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    budgets = scaling["budgets"]
    ax.plot(budgets, [100 * a for a in scaling["parallel"]], marker="o", label="parallel (B first attempts)")
    seq = [(b, 100 * a) for b, a in zip(budgets, scaling["sequential"]) if a is not None]
    ax.plot([b for b, _ in seq], [a for _, a in seq], marker="s", label="sequential (B/2 corrected once)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem (B)")
    ax.set_ylabel("majority-vote accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
