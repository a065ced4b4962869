"""The `selfcorrect` command: demo, compare, train, eval."""

from __future__ import annotations

import argparse
import copy
import os
import dataclasses
import sys
from pathlib import Path

import yaml

from .config import load_yaml
from .errors import SelfCorrectError


def _experiment(args):
    from .experiment import METHOD_NAMES, QUICK, SUITES, ExperimentConfig

    config = load_yaml(ExperimentConfig, args.config) if args.config else (QUICK if args.quick else ExperimentConfig())
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise SelfCorrectError("--seeds: must be >= 1")
        config = dataclasses.replace(config, seeds=args.seeds)
    if getattr(args, "suite", None):
        config = dataclasses.replace(config, methods=SUITES[args.suite])
    if getattr(args, "methods", None):
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        unknown = [m for m in methods if m not in METHOD_NAMES or m == "self_refine"]
        if unknown or not methods:
            raise SelfCorrectError(f"--methods: unknown method {unknown[0] if unknown else args.methods!r}; "
                                   f"choose from {', '.join(m for m in METHOD_NAMES if m != 'self_refine')}")
        config = dataclasses.replace(config, methods=methods)
    return config


def _load_run(run_dir: Path, cache_dir: str | None):
    """The base model and config of a run folder written by `selfcorrect train`."""
    from .experiment import ExperimentConfig
    from .dialogue import PlainDialogue
    from .models import load_or_pretrain
    from .tasks import ModRootTask

    config = load_yaml(ExperimentConfig, run_dir / "config.yaml")
    task = ModRootTask(config.task)
    model, tokenizer = load_or_pretrain(task, config.model, cache_dir)
    return config, task, model, PlainDialogue(tokenizer)


def cmd_demo(args) -> None:
    from .experiment import run_experiment

    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise SelfCorrectError("--workers: must be >= 1")
    run_experiment(_experiment(args), args.out, args.cache_dir, progress=not args.no_progress, workers=workers)


def cmd_train(args) -> None:
    from .dialogue import PlainDialogue
    from .models import load_or_pretrain
    from .tasks import ModRootTask
    from .trainer import train

    config = _experiment(args)
    out = Path(args.out)
    saved = out / "config.yaml"
    if args.resume and saved.exists():
        config = load_yaml(type(config), saved)
    elif args.resume:
        raise SelfCorrectError(f"{saved}: no run to resume here")
    task = ModRootTask(config.task)
    model, tokenizer = load_or_pretrain(task, config.model, args.cache_dir, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    train(model, PlainDialogue(tokenizer), task, config.train, out, resume=args.resume, progress=not args.no_progress)
    print(f"trained {config.train.method}: weights in {out}/best.pt (best) and {out}/checkpoint.pt (last)")


def cmd_eval(args) -> None:
    from .evaluate import evaluate
    from .report import markdown_table
    from .trainer import load_weights

    run = Path(args.run)
    weights = run / ("best.pt" if args.checkpoint == "best" else "checkpoint.pt")
    if not weights.exists():
        raise SelfCorrectError(f"{weights}: no such checkpoint (train first)")
    config, task, base, dialogue = _load_run(run, args.cache_dir)
    problems = task.problems("test", args.limit)
    rows = {"base + instruction (Self-Refine)": [evaluate(base, dialogue, task, problems, args.attempts).metrics]}
    model = load_weights(copy.deepcopy(base), weights)
    rows[f"{config.train.method} ({args.checkpoint})"] = [evaluate(model, dialogue, task, problems, args.attempts).metrics]
    print(markdown_table(rows))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfcorrect", description="Train language models to self-correct (SCoRe).")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, out):
        p.add_argument("--config", help="experiment YAML (see configs/)")
        p.add_argument("--quick", action="store_true", help="a tiny budget, for smoke tests")
        p.add_argument("--out", default=out, help=f"output folder (default {out})")
        p.add_argument("--cache-dir", help="where the pretrained base model is cached "
                                           "(default $SELFCORRECT_CACHE or ~/.cache/selfcorrect)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    demo = sub.add_parser("demo", help="base vs naive RL vs SCoRe on the embedded task; table, JSON, report, plot")
    common(demo, "runs/demo")
    demo.add_argument("--seeds", type=int, help="number of RL seeds (mean ± std)")
    demo.set_defaults(func=cmd_demo)

    cmp = sub.add_parser("compare", help="baselines, SCoRe and its ablations on one budget; table, JSON, plots; "
                                         "resumes an interrupted suite")
    common(cmp, "runs/compare")
    cmp.add_argument("--suite", choices=["paper", "demo"], default="paper")
    cmp.add_argument("--methods", help="comma-separated subset, e.g. naive,score,star (overrides --suite)")
    cmp.add_argument("--task", choices=["modroot"], default="modroot", help="the task (the embedded default)")
    cmp.add_argument("--seeds", type=int, help="number of seeds (mean ± std)")
    cmp.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="runs trained at once, one process and one thread each (default: CPU count)")
    cmp.set_defaults(func=cmd_demo)

    tr = sub.add_parser("train", help="train one method (train.method in the config) on the embedded task")
    common(tr, "runs/train")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained run against its base on held-out problems")
    ev.add_argument("run", help="a folder written by `selfcorrect train`")
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--limit", type=int, default=1000, help="number of test problems")
    ev.add_argument("--attempts", type=int, default=2)
    ev.add_argument("--cache-dir", help="where the base model is cached")
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SelfCorrectError as e:
        print(f"selfcorrect: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfcorrect: interrupted; `selfcorrect train --resume` continues from the last checkpoint",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
