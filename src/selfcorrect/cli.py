"""The `selfcorrect` command: demo, compare, train, eval."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path

import yaml

from .config import load_yaml, read_yaml
from .errors import SelfCorrectError


def _embedded_config(path, quick: bool, device: str | None = None):
    """The experiment config on the embedded task: from a file, --quick, or the defaults; --device overrides."""
    from .experiment import QUICK, ExperimentConfig

    config = load_yaml(ExperimentConfig, path) if path else (QUICK if quick else ExperimentConfig())
    if device:
        try:
            config = dataclasses.replace(config, device=device)
        except SelfCorrectError as e:
            raise SelfCorrectError(f"--{e}") from None
    return config


def _experiment(args):
    from .experiment import METHOD_NAMES, SUITES

    config = _embedded_config(args.config, args.quick, getattr(args, "device", None))
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise SelfCorrectError("--seeds: must be >= 1")
        config = dataclasses.replace(config, seeds=args.seeds)
    if hasattr(args, "suite"):  # compare: --suite, else the config file's methods, else the paper suite
        suite = args.suite or (None if args.config and "methods" in read_yaml(args.config) else "paper")
        if suite:
            config = dataclasses.replace(config, methods=SUITES[suite])
    if getattr(args, "methods", None) is not None:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        unknown = [m for m in methods if m not in METHOD_NAMES or m == "self_refine"]
        if unknown or not methods:
            raise SelfCorrectError(f"--methods: {'unknown method ' + repr(unknown[0]) if unknown else 'empty'}; "
                                   f"choose from {', '.join(m for m in METHOD_NAMES if m != 'self_refine')}")
        try:
            config = dataclasses.replace(config, methods=methods)
        except SelfCorrectError as e:
            raise SelfCorrectError(f"--{e}") from None
    return config


def _out_folder(path) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise SelfCorrectError(f"{out}: exists and is not a folder (--out)")
    return out


def _setup(path, args, split: str):
    """(config, task, base model, dialogue) for a config file: a recipe (a pretrained model on
    a real task, see recipe.py) or an experiment on the embedded task (the default). A recipe's
    `split` is read first, so that a bad data file is reported before a model loads."""
    from .recipe import Recipe, is_recipe

    if path is not None and is_recipe(read_yaml(path)):
        from .dialogue import make_dialogue
        from .models.hf import load_model

        if getattr(args, "quick", False):
            raise SelfCorrectError(f"--quick: only for the embedded task; {path} is a recipe (set its train: budget)")
        if getattr(args, "cache_dir", None):
            raise SelfCorrectError(f"--cache-dir: only for the embedded task's base model; {path} is a recipe, whose "
                                   "model comes from the Hugging Face cache (HF_HOME)")
        recipe = load_yaml(Recipe, path)
        spec, task = recipe.model, recipe.task()
        try:
            task.problems(split)
            model, tokenizer = load_model(spec.name, dtype=spec.dtype, device=getattr(args, "device", None) or spec.device,
                                          lora=spec.lora)
        except SelfCorrectError as e:
            raise SelfCorrectError(f"{path}: {e}") from None
        return recipe, task, model, make_dialogue(tokenizer)

    from .dialogue import PlainDialogue
    from .models import load_or_pretrain
    from .tasks import ModRootTask

    config = _embedded_config(path, getattr(args, "quick", False), getattr(args, "device", None))
    task = ModRootTask(config.task)
    model, tokenizer = load_or_pretrain(task, config.model, args.cache_dir, progress=not getattr(args, "no_progress", False),
                                        device=config.device)
    return config, task, model, PlainDialogue(tokenizer)


def cmd_demo(args) -> None:
    from .experiment import run_experiment

    workers = args.workers
    if workers < 1:
        raise SelfCorrectError("--workers: must be >= 1")
    run_experiment(_experiment(args), _out_folder(args.out), args.cache_dir, progress=not args.no_progress,
                   workers=workers)


def cmd_train(args) -> None:
    from .report import write_text_atomic
    from .trainer import train

    out = _out_folder(args.out)
    saved = out / "config.yaml"
    if args.resume and not saved.exists():
        raise SelfCorrectError(f"{saved}: no run to resume here")
    if args.resume and args.config:
        raise SelfCorrectError(f"--config: not with --resume, which continues with {saved}")
    if not args.resume and (out / "checkpoint.pt").exists():
        raise SelfCorrectError(f"{out}: holds a run; continue it with --resume, or train into a new --out")
    config, task, model, dialogue = _setup(saved if args.resume else args.config, args, "train")
    if args.resume and not (out / "checkpoint.pt").exists():
        print(f"{out}: no checkpoint yet, training from step 0", file=sys.stderr)
    main = os.environ.get("RANK", "0") == "0"  # under `accelerate launch`, one process writes
    if main and not args.resume:  # (a resumed run keeps the file it was made with)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(saved, yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    train(model, dialogue, task, config.train, out, resume=args.resume, progress=not args.no_progress)
    if main:
        print(f"trained {config.train.method}: weights in {out}/best.pt (best) and {out}/checkpoint.pt (last)")


REAL_TASKS = ("math500", "gsm8k", "mbpp", "humaneval", "mbpp-r")


def real_task(name: str):
    """The task behind a `--task` name of `selfcorrect eval --model`."""
    from .tasks import CodeTask, CodeTaskConfig, MathTask, MathTaskConfig

    return {"math500": lambda: MathTask(MathTaskConfig(dataset="math")),
            "gsm8k": lambda: MathTask(MathTaskConfig(dataset="gsm8k")),
            "mbpp": CodeTask, "mbpp-r": CodeTask,
            "humaneval": lambda: CodeTask(CodeTaskConfig(dataset="humaneval"))}[name]()


def _eval_model(args) -> None:
    """`selfcorrect eval --model M --task T`: a pretrained model with the instruction (the Self-Refine row)."""
    import json

    from .dialogue import make_dialogue
    from .evaluate import evaluate, self_consistency
    from .models.hf import load_model
    from .report import markdown_table, plot_scaling, write_json, write_text_atomic
    from .rollout import GREEDY, SamplingConfig
    from .tasks import evaluate_repair, mbpp_repair

    if args.task is None:
        raise SelfCorrectError(f"--task: required with --model; choose from {', '.join(REAL_TASKS)}")
    if args.task == "mbpp-r" and (args.scaling or args.attempts != 2):
        raise SelfCorrectError(f"--{'scaling' if args.scaling else 'attempts'}: not with mbpp-r, whose attempt 1 "
                               "is given and attempt 2 is scored")
    budgets = _budgets(args.scaling) if args.scaling else None
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    dialogue, task = make_dialogue(tokenizer), real_task(args.task)
    greedy = dataclasses.replace(GREEDY, max_new_tokens=args.max_new_tokens)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "mbpp-r":
        result = evaluate_repair(model, dialogue, task, mbpp_repair(task, args.limit), greedy, args.batch_size)
        responses = result.pop("responses")
        print(f"MBPP-R: attempt 2 repairs {100 * result['repaired']:.1f}% of {result['n']} wrong first attempts "
              f"[{100 * result['repaired_ci'][0]:.1f}, {100 * result['repaired_ci'][1]:.1f}]")
        write_json(out / "results.json", {"model": args.model, "task": args.task, "metrics": result})
        write_text_atomic(out / "transcripts.jsonl", "".join(json.dumps({"attempt_2": r}) + "\n" for r in responses))
        return
    problems = task.problems("test", args.limit)
    ev = evaluate(model, dialogue, task, problems, args.attempts, greedy, batch_size=args.batch_size, progress=True)
    print(markdown_table({f"{args.model} + instruction (Self-Refine)": [ev.metrics]}))
    summary = {"model": args.model, "task": args.task, "metrics": ev.metrics}
    if budgets:
        sampling = SamplingConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
        summary["scaling"] = self_consistency(model, dialogue, task, problems, budgets, sampling,
                                              batch_size=args.batch_size, progress=True)
        plot_scaling(summary["scaling"], out / "scaling.png", f"{args.model} on {args.task}")
        print("budget  parallel  sequential")
        for b, par, seq in zip(*(summary["scaling"][k] for k in ("budgets", "parallel", "sequential"))):
            print(f"{b:6d}  {100 * par:8.1f}  " + (f"{100 * seq:10.1f}" if seq is not None else "         –"))
    write_json(out / "results.json", summary)
    write_text_atomic(out / "transcripts.jsonl", "".join(
        json.dumps({"id": p.id, "prompt": p.prompt, "gold": p.answer if args.task in ("math500", "gsm8k") else None,
                    "attempts": r, "rewards": w}) + "\n"
        for p, r, w in zip(ev.problems, ev.responses, ev.rewards.tolist())))
    print(f"wrote {out}/results.json and transcripts.jsonl")


def _budgets(text: str) -> list[int]:
    try:
        budgets = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SelfCorrectError(f"--scaling: expected comma-separated sample budgets like 1,2,4,8, got {text!r}") from None
    if not budgets or min(budgets) < 1:
        raise SelfCorrectError("--scaling: budgets must be >= 1")
    return sorted(set(budgets))


def cmd_eval(args) -> None:
    from .evaluate import evaluate
    from .report import markdown_table
    from .rollout import GREEDY
    from .trainer import load_weights

    if args.model:
        return _eval_model(args)
    if args.run is None:
        raise SelfCorrectError("eval: give a run folder (from `selfcorrect train`) or --model")
    run = Path(args.run)
    weights = run / ("best.pt" if args.checkpoint == "best" else "checkpoint.pt")
    if not weights.exists():
        raise SelfCorrectError(f"{weights}: no such checkpoint (train first)")
    config, task, base, dialogue = _setup(run / "config.yaml", args, "test")
    greedy = dataclasses.replace(GREEDY, max_new_tokens=config.train.sampling.max_new_tokens)
    problems = task.problems("test", args.limit)
    score = lambda model: [evaluate(model, dialogue, task, problems, args.attempts, greedy, progress=True).metrics]
    trained = load_weights(copy.deepcopy(base), weights)  # before any work: a damaged file fails at once
    rows = {"base + instruction (Self-Refine)": score(base)}
    rows[f"{config.train.method} ({args.checkpoint})"] = score(trained)
    print(markdown_table(rows))


def _at_least(low, kind=int):
    """An argparse type: a number >= low (argparse turns the error into a one-line usage error)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value
    return parse


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
        p.add_argument("--device", help="cpu, cuda, cuda:1, ...: where models train and evaluate (overrides the "
                                        "config's device; its default: cpu on the embedded task, else cuda when "
                                        "available)")

    demo = sub.add_parser("demo", help="base vs naive RL vs SCoRe on the embedded task; table, JSON, report, plot")
    common(demo, "runs/demo")
    demo.add_argument("--seeds", type=int, help="number of RL seeds (mean ± std)")
    demo.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="runs trained at once, one process and one thread each (default: CPU count; "
                           "1 shows a per-step progress bar)")
    demo.set_defaults(func=cmd_demo)

    cmp = sub.add_parser("compare", help="baselines, SCoRe and its ablations on one budget; table, JSON, plots; "
                                         "resumes an interrupted suite")
    common(cmp, "runs/compare")
    cmp.add_argument("--suite", choices=["paper", "demo"],
                     help="the methods to run (default: the config file's methods if it names them, else paper)")
    cmp.add_argument("--methods", help="comma-separated subset, e.g. naive,score,star (overrides --suite)")
    cmp.add_argument("--task", choices=["modroot"], default="modroot", help="the task (the embedded default)")
    cmp.add_argument("--seeds", type=int, help="number of seeds (mean ± std)")
    cmp.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="runs trained at once, one process and one thread each (default: CPU count)")
    cmp.set_defaults(func=cmd_demo)

    tr = sub.add_parser("train", help="train one method (train.method in the config): on the embedded task, or a "
                                      "pretrained model on a real task with a recipe config (a math: or code: section)")
    common(tr, "runs/train")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="a trained run against its base, or a pretrained model (--model) on a "
                                     "real task, on held-out problems")
    ev.add_argument("run", nargs="?", help="a folder written by `selfcorrect train`")
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--limit", type=_at_least(1), help="number of test problems (default: all)")
    ev.add_argument("--attempts", type=_at_least(1), default=2)
    ev.add_argument("--cache-dir", help="where the base model is cached")
    ev.add_argument("--model", help="a hub id, a local folder, a .gguf file, or the alias smollm2")
    ev.add_argument("--task", choices=REAL_TASKS, help="with --model: the benchmark")
    ev.add_argument("--dtype", help="with --model: bf16, fp16, fp32 or auto (default: bf16 on CUDA, fp32 on CPU)")
    ev.add_argument("--device", help="cpu, cuda, cuda:1, ...: where the model runs (default: with --model, cuda when "
                                     "available; for a run folder, its config's device)")
    ev.add_argument("--max-new-tokens", type=_at_least(1), default=512, help="with --model: per attempt")
    ev.add_argument("--batch-size", type=_at_least(1), default=16, help="with --model: problems per generation batch")
    ev.add_argument("--scaling", help="with --model: sample budgets, e.g. 1,2,4,8,16,32: parallel self-consistency "
                                      "against sequential self-correction")
    ev.add_argument("--temperature", type=_at_least(0.0, float), default=0.7,
                    help="with --scaling: sampling temperature")
    ev.add_argument("--out", default="runs/eval", help="with --model: output folder (default runs/eval)")
    ev.set_defaults(func=cmd_eval)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`), stopped as Ctrl-C is: runs end between writes, with the resume hint."""


def _terminated(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    on_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        from .models.hf import transformers_bars

        with transformers_bars(not getattr(args, "no_progress", False)):
            args.func(args)
    except SelfCorrectError as e:
        print(f"selfcorrect: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        resume = {"train": "`selfcorrect train --resume`", "demo": "the same `selfcorrect demo` command",
                  "compare": "the same `selfcorrect compare` command"}.get(args.command)
        print(f"selfcorrect: {'terminated' if isinstance(e, _Terminated) else 'interrupted'}"
              + (f"; {resume} continues from the last checkpoint" if resume else ""), file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
    return 0


if __name__ == "__main__":
    sys.exit(main())
