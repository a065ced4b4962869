"""`selfcorrect demo`: the paper's story on the embedded default, end to end on a CPU.

base (cached) -> Self-Refine row -> naive multi-turn RL and SCoRe on the same budget of
sampled episodes -> greedy evaluation on the same held-out problems -> table, JSON,
Markdown report and a plot of Acc@t1 / Acc@t2 over training.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import check
from .dialogue import PlainDialogue
from .evaluate import evaluate
from .models import TinyModelConfig, load_or_pretrain
from .report import markdown_table, plot_curves, write_json, write_text_atomic
from .tasks import ModRootConfig, ModRootTask
from .trainer import TrainConfig, load_weights, train

METHOD_NAMES = {"self_refine": "Self-Refine (base + instruction)", "naive": "naive multi-turn RL",
                "score": "SCoRe (Stage I + II)", "single_turn": "single-turn RL", "no_stage1": "SCoRe w/o Stage I",
                "no_shaping": "SCoRe w/o reward shaping", "stage1_only": "SCoRe Stage I only"}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run on the embedded task needs: `demo` runs `methods`, `train` runs `train.method`."""

    task: ModRootConfig = field(default_factory=ModRootConfig)
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = ("naive", "score")
    seeds: int = 1
    test_problems: int = 1000
    val_problems: int = 200  # for the training curves only

    def __post_init__(self):
        for m in self.methods:
            check(m in METHOD_NAMES and m != "self_refine", "methods", f"unknown method {m!r}")
        check(self.seeds >= 1, "seeds", "must be >= 1")
        check(self.test_problems >= 1, "test_problems", "must be >= 1")
        check(self.val_problems >= 1, "val_problems", "must be >= 1")


QUICK = ExperimentConfig(
    model=TinyModelConfig(hidden_size=32, layers=2, intermediate_size=64, pretrain_steps=40, batch_size=32),
    train=TrainConfig(steps=6, stage1_steps=3, problems_per_step=4, samples_per_problem=2, checkpoint_every=3),
    test_problems=40, val_problems=20,
)


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, (list, tuple))}


def run_demo(config: ExperimentConfig, out_dir: str | Path, cache_dir: str | Path | None = None,
             progress: bool = True, log=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    task = ModRootTask(config.task)
    base, tokenizer = load_or_pretrain(task, config.model, cache_dir, progress)
    log(f"base model ready ({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters)"
        f" after {time.perf_counter() - started:.0f}s")
    dialogue = PlainDialogue(tokenizer)
    test = task.problems("test", config.test_problems)
    val = task.problems("val", config.val_problems)
    attempts = config.train.attempts

    base_eval = evaluate(base, dialogue, task, test, attempts)
    results = {"self_refine": [base_eval.metrics]}
    curves: dict[str, list[list[dict]]] = {}
    base_point = {"step": 0, **_numbers(evaluate(base, dialogue, task, val, attempts).metrics)}
    transcripts = {"self_refine": base_eval}

    for seed in range(config.seeds):
        for method in config.methods:
            train_config = dataclasses.replace(config.train, method=method, seed=seed)
            model = copy.deepcopy(base)
            curve = [base_point]

            def on_checkpoint(step, m, curve=curve):
                curve.append({"step": step, **_numbers(evaluate(m, dialogue, task, val, attempts).metrics)})

            run_dir = out / "runs" / f"{method}-seed{seed}"
            train(model, dialogue, task, train_config, run_dir, on_checkpoint=on_checkpoint, progress=progress)
            final = evaluate(load_weights(model, run_dir / "best.pt"), dialogue, task, test, attempts)
            results.setdefault(method, []).append(final.metrics)
            curves.setdefault(method, []).append(curve)
            transcripts.setdefault(method, final)
            log(f"{METHOD_NAMES[method]} seed {seed}: Acc@t1 {final.metrics['acc_t1']:.3f}  "
                f"Acc@t2 {final.metrics['acc_t2']:.3f}  Delta {final.metrics['delta']:+.3f}")

    table = markdown_table({METHOD_NAMES[m]: runs for m, runs in results.items()})
    elapsed = time.perf_counter() - started
    summary = {
        "config": dataclasses.asdict(config), "seconds": elapsed,
        "results": {m: runs for m, runs in results.items()},
        "mean": {m: {k: statistics.mean(r[k] for r in runs) for k in _numbers(runs[0])} for m, runs in results.items()},
        "curves": curves,
    }
    write_json(out / "results.json", summary)
    with (out / ".transcripts.jsonl.tmp").open("w") as f:
        for method, ev in transcripts.items():
            for problem, responses, rewards in list(zip(ev.problems, ev.responses, ev.rewards.tolist()))[:50]:
                f.write(json.dumps({"method": method, "problem": problem.prompt, "answer": problem.answer,
                                    "attempts": responses, "rewards": rewards}) + "\n")
    (out / ".transcripts.jsonl.tmp").replace(out / "transcripts.jsonl")
    plot_curves(curves, out / "training_curves.png", "embedded task: Acc@t1 (dashed) and Acc@t2 (solid)")
    seeds = f"{config.seeds} seed{'s' if config.seeds > 1 else ''}"
    spread = "mean ± std over seeds" if config.seeds > 1 else "value [95% interval]"
    report = (f"# selfcorrect demo\n\nEmbedded task `modroot`, {len(test)} held-out problems, greedy decoding, "
              f"{seeds}; cells are % ({spread}).\nEvery method trains on "
              f"{config.train.steps * config.train.episodes_per_step} sampled episodes.\n\n{table}\n\n"
              f"![training curves](training_curves.png)\n\nWall time: {elapsed:.0f}s.\n")
    write_text_atomic(out / "report.md", report)
    log("\n" + table + f"\n\nwrote {out}/report.md, results.json, training_curves.png ({elapsed:.0f}s)")
    return summary
