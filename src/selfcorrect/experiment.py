"""`selfcorrect demo` and `selfcorrect compare`: methods side by side on the embedded task.

base (cached) -> Self-Refine row -> every method trained on the same budget of sampled
episodes, for each seed -> greedy evaluation on the same held-out problems -> table,
results.json, report.md and plots. Each (method, seed) run keeps its own folder, so an
interrupted suite resumes: finished runs are read back, unfinished ones resume from
their last checkpoint. SCoRe variants that begin with the same Stage I (the ablations)
train it once per seed and each continues from its checkpoint: the same runs, less work.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from .config import check
from .dialogue import PlainDialogue
from .errors import SelfCorrectError
from .evaluate import evaluate
from .models import TinyModelConfig, load_or_pretrain
from .models.hf import resolve_device
from .models.tiny import one_thread
from .report import markdown_table, per_seed_table, plot_comparison, plot_curves, write_json, write_text_atomic
from .rollout import GREEDY, SamplingConfig
from .tasks import ModRootConfig, ModRootTask
from .trainer import TrainConfig, check_fits, continues, load_weights, read_checkpoint, stages, train

METHOD_NAMES = {
    "self_refine": "Self-Refine (base + instruction)", "star": "STaR (D_STaR)", "star_plus": "STaR (D+_STaR)",
    "pair_sft": "Pair-SFT (D_SFT)", "pair_sft_plus": "Pair-SFT (D+_SFT)", "naive": "naive multi-turn RL",
    "single_turn": "single-turn RL", "score": "SCoRe (Stage I + II)", "no_stage1": "SCoRe w/o Stage I",
    "no_shaping": "SCoRe w/o reward shaping", "score_star": "SCoRe w/ STaR in Stage II",
    "score_offline": "SCoRe + base first attempts as offline prompts",
    "stage1_only": "SCoRe Stage I only",
}
FIRST_STAGE = "first_stage"  # a job: a seed's Stage I, shared by the SCoRe variants that begin with it
SUITES = {
    "demo": ("naive", "score"),
    "paper": ("star", "star_plus", "pair_sft", "pair_sft_plus", "naive", "single_turn", "score", "no_stage1",
              "no_shaping", "score_star", "score_offline"),
}


@dataclass(frozen=True)
class ExperimentConfig:
    """A comparison on the embedded task: `demo`/`compare` run `methods`, `train` runs `train.method`."""

    task: ModRootConfig = field(default_factory=ModRootConfig)
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: tuple[str, ...] = SUITES["demo"]
    seeds: int = 1
    test_problems: int = 1000
    val_problems: int = 200  # for the training curves only
    device: str = "cpu"  # where pretraining, training and evaluation run: cpu, cuda, cuda:1, ...

    def __post_init__(self):
        check(len(self.methods) > 0, "methods", "empty: name at least one method")
        for m in self.methods:
            check(m in METHOD_NAMES and m != "self_refine", "methods", f"unknown method {m!r}")
            check(self.methods.count(m) == 1, "methods", f"{m!r} is listed twice")
        check(self.seeds >= 1, "seeds", "must be >= 1")
        check(self.test_problems >= 1, "test_problems", "must be >= 1")
        check(self.val_problems >= 1, "val_problems", "must be >= 1")
        check_fits(self.train, len(ModRootTask(self.task).problems("train")))  # before a base is pretrained
        resolve_device(self.device)


QUICK = ExperimentConfig(
    model=TinyModelConfig(hidden_size=32, layers=2, intermediate_size=64, pretrain_steps=40, batch_size=32),
    train=TrainConfig(steps=6, stage1_steps=3, problems_per_step=4, samples_per_problem=2, checkpoint_every=3,
                      star_round_steps=3),
    test_problems=40, val_problems=20,
)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel ends a worker when the suite's process (`parent`) dies, however it dies.

    Without it, a suite killed by SIGTERM leaves its workers training to the end of their runs.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died while this worker was still importing: the signal came too late
        os._exit(1)


def _terminate(pool: ProcessPoolExecutor) -> None:
    for process in list(pool._processes.values()):  # no public way before Python 3.14's terminate_workers
        process.terminate()


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, (list, tuple))}


def _transcripts(method: str, ev, limit: int = 50) -> list[dict]:
    return [{"method": method, "problem": p.prompt, "answer": p.answer, "attempts": responses, "rewards": rewards}
            for p, responses, rewards in list(zip(ev.problems, ev.responses, ev.rewards.tolist()))[:limit]]


def _greedy(config: ExperimentConfig) -> SamplingConfig:
    """Evaluation decoding: greedy, with the token limit that training samples with."""
    return dataclasses.replace(GREEDY, max_new_tokens=config.train.sampling.max_new_tokens)


def _first_stage(train: TrainConfig, seed: int) -> TrainConfig:
    """Stage I on its own: the run that SCoRe's variants share."""
    return dataclasses.replace(train, method="stage1_only", steps=train.stage1_steps, seed=seed)


def _sharing_first_stage(config: ExperimentConfig) -> set[str]:
    """The methods of `config` that begin with the same Stage I, when two or more do (trained once a seed)."""
    if not config.train.stage1_steps:
        return set()
    prefix = dataclasses.asdict(_first_stage(config.train, 0))
    methods = {m for m in config.methods
               if continues(prefix, dataclasses.replace(config.train, method=m, seed=0), config.train.stage1_steps)}
    return methods if len(methods) > 1 else set()


def _cost(config: ExperimentConfig, method: str, shared: bool) -> int:
    """Attempts a run samples per problem, after the Stage I it shares: to start the longest runs first."""
    plan = stages(dataclasses.replace(config.train, method=method))[1 if shared else 0:]
    return sum(n * (1 if objective.supervised == "pair" else objective.num_attempts) for objective, n in plan)


def _continue_from(stage_dir: Path, run_dir: Path) -> None:
    """Start run_dir at the end of a shared first stage: its log, curve, best and last checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "curve.jsonl", "best.pt"):
        shutil.copyfile(stage_dir / name, run_dir / name)
    shutil.copyfile(stage_dir / "checkpoint.pt", run_dir / "checkpoint.pt.tmp")
    os.replace(run_dir / "checkpoint.pt.tmp", run_dir / "checkpoint.pt")  # last: its presence means "resume"


def _setup(config: ExperimentConfig, train_config: TrainConfig) -> dict:
    """What a run's folder was made with (as JSON reads it back)."""
    return json.loads(json.dumps({"task": dataclasses.asdict(config.task), "model": dataclasses.asdict(config.model),
                                  "train": dataclasses.asdict(train_config), "test_problems": config.test_problems,
                                  "val_problems": config.val_problems}))


def _read_json(path: Path, lines: bool = False):
    """A run's JSON file (or JSON-lines file); a damaged one is a one-line error naming it."""
    try:
        text = path.read_text()
        return [json.loads(x) for x in text.splitlines()] if lines else json.loads(text)
    except (OSError, ValueError) as e:
        raise SelfCorrectError(f"{path}: unreadable ({e}); delete its run folder to train that run again") from None


def _check_setup(path: Path, setup: dict) -> dict:
    """The run file at `path` (setup.json, result.json), refused when another config made it."""
    saved = _read_json(path)
    if not isinstance(saved, dict) or "setup" not in saved:
        raise SelfCorrectError(f"{path}: not a selfcorrect run file; delete its run folder to train that run again")
    if saved["setup"] != setup:
        raise SelfCorrectError(f"{path}: this run was made with another config; use a new --out folder")
    return saved


def _train_run(config: ExperimentConfig, train_config: TrainConfig, run_dir: Path, cache_dir, progress: bool):
    """Train from the cached base, resuming from run_dir's checkpoint, with a validation curve.

    Self-contained (it loads the base itself) so that it can run in a worker process.
    """
    # a folder belongs to one setup: claimed when its run begins, checked when it is resumed
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "setup.json").exists():
        _check_setup(run_dir / "setup.json", _setup(config, train_config))
    else:
        write_json(run_dir / "setup.json", {"setup": _setup(config, train_config)})
    task = ModRootTask(config.task)
    base, tokenizer = load_or_pretrain(task, config.model, cache_dir, progress=False, device=config.device)
    dialogue, attempts = PlainDialogue(tokenizer), config.train.attempts
    val = task.problems("val", config.val_problems)
    curve_path = run_dir / "curve.jsonl"
    resume = (run_dir / "checkpoint.pt").exists()
    curve = _read_json(curve_path, lines=True) if resume and curve_path.exists() else []

    def on_checkpoint(step, model):
        point = {"step": step, **_numbers(evaluate(model, dialogue, task, val, attempts, _greedy(config)).metrics)}
        curve[:] = [p for p in curve if p["step"] < step] + [point]
        write_text_atomic(curve_path, "".join(json.dumps(p) + "\n" for p in curve))

    if resume:  # a run stopped between a checkpoint and its curve point gets the point now
        state = read_checkpoint(run_dir / "checkpoint.pt")
        if all(p["step"] != state["step"] for p in curve):
            stopped = copy.deepcopy(base)
            stopped.load_state_dict(state["model"])
            on_checkpoint(state["step"], stopped.eval())
        del state  # not held through training
    model = train(base, dialogue, task, train_config, run_dir, resume=resume, on_checkpoint=on_checkpoint,
                  progress=progress)
    return model, dialogue, task, curve


@one_thread()
def _run_first_stage(config: ExperimentConfig, seed: int, stage_dir: Path, cache_dir, progress: bool) -> None:
    """A seed's shared Stage I (resumed when interrupted, skipped when done)."""
    train_config = _first_stage(config.train, seed)
    if (stage_dir / "done").exists():
        _check_setup(stage_dir / "setup.json", _setup(config, train_config))
    else:
        _train_run(config, train_config, stage_dir, cache_dir, progress)
        (stage_dir / "done").touch()


@one_thread()
def _run_method(config: ExperimentConfig, method: str, seed: int, run_dir: Path, base_point: dict,
                cache_dir, progress: bool, first_stage: Path | None = None) -> dict:
    """Train one (method, seed) and evaluate its best checkpoint on the test problems.

    The result is cached in run_dir/result.json; an unfinished run resumes from its checkpoint.
    With `first_stage` (a finished shared Stage I), a new run starts where that one ended.
    """
    done = run_dir / "result.json"
    train_config = dataclasses.replace(config.train, method=method, seed=seed)
    setup = _setup(config, train_config)
    if done.exists():
        return _check_setup(done, setup)
    if first_stage and not (run_dir / "checkpoint.pt").exists():
        _continue_from(first_stage, run_dir)
    model, dialogue, task, curve = _train_run(config, train_config, run_dir, cache_dir, progress)
    final = evaluate(load_weights(model, run_dir / "best.pt"), dialogue, task,
                     task.problems("test", config.test_problems), config.train.attempts, _greedy(config))
    result = {"setup": setup, "metrics": final.metrics, "edit_ratios": final.edit_ratios, "curve": [base_point] + curve,
              "transcripts": _transcripts(method, final)}
    write_json(done, result)
    return result


@one_thread()  # so a run's result does not depend on --workers or the machine's core count
def run_experiment(config: ExperimentConfig, out_dir: str | Path, cache_dir: str | Path | None = None,
                   progress: bool = True, workers: int = 1, log=print) -> dict:
    """Every (method, seed) of `config`, `workers` runs at a time (separate processes, one thread each)."""
    out = Path(out_dir)
    started = time.perf_counter()
    task = ModRootTask(config.task)
    base, tokenizer = load_or_pretrain(task, config.model, cache_dir, progress, device=config.device)
    out.mkdir(parents=True, exist_ok=True)  # after the base: a bad device or task leaves no folder behind
    log(f"base model ready ({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters)"
        f" after {time.perf_counter() - started:.0f}s")
    dialogue = PlainDialogue(tokenizer)
    test = task.problems("test", config.test_problems)
    attempts = config.train.attempts
    base_eval = evaluate(base, dialogue, task, test, attempts, _greedy(config))
    base_point = {"step": 0, **_numbers(evaluate(base, dialogue, task, task.problems("val", config.val_problems),
                                                 attempts, _greedy(config)).metrics)}
    runs = {"self_refine": [{"metrics": base_eval.metrics, "edit_ratios": base_eval.edit_ratios,
                             "transcripts": _transcripts("self_refine", base_eval)}]}

    # SCoRe variants of a seed wait for that seed's shared Stage I, which goes first ("first stage").
    sharing = _sharing_first_stage(config)
    jobs = [(method, seed) for seed in range(config.seeds) for method in config.methods]
    # longest first: two workers then finish close together, instead of one running the last long job alone
    longest_first = sorted(jobs, key=lambda job: -_cost(config, job[0], job[0] in sharing))
    stage_dir = lambda seed: out / "runs" / f"stage1-shared-seed{seed}"
    begun = lambda m, seed: any((out / "runs" / f"{m}-seed{seed}" / f).exists() for f in ("result.json", "checkpoint.pt"))
    # a seed whose variants have all begun needs no shared Stage I (its folder may be gone)
    order = [(FIRST_STAGE, seed) for seed in range(config.seeds) if not all(begun(m, seed) for m in sharing)] + longest_first

    def call(job, progress):
        method, seed = job
        if method == FIRST_STAGE:
            return partial(_run_first_stage, config, seed, stage_dir(seed), cache_dir, progress)
        return partial(_run_method, config, method, seed, out / "runs" / f"{method}-seed{seed}", base_point,
                       cache_dir, progress, stage_dir(seed) if method in sharing else None)

    def report(method, seed, result):
        m = result["metrics"]
        with tqdm.external_write_mode():  # on its own line, not after the suite's progress bar
            log(f"{METHOD_NAMES[method]} seed {seed}: Acc@t1 {m['acc_t1']:.3f}  Acc@t2 {m['acc_t2']:.3f}  "
                f"Delta {m['delta']:+.3f}")

    finished, running = {}, {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                       initializer=_die_with_parent, initargs=(os.getpid(),))) if workers > 1 else None
        bar = stack.enter_context(tqdm(total=len(order), desc="runs", disable=not (progress and pool)))
        if pool:  # on an error, end the other runs now, not when they finish (a rerun resumes them)
            stack.push(lambda exc_type, *_: _terminate(pool) if exc_type else None)
        while order or running:
            unfinished = order + list(running.values())
            ready = [job for job in order if job[0] not in sharing or (FIRST_STAGE, job[1]) not in unfinished]
            for job in ready[:workers - len(running)]:
                order.remove(job)
                if pool:
                    running[pool.submit(call(job, False))] = job
                else:  # in this process, with its progress bars
                    running[future := Future()] = job
                    future.set_result(call(job, progress)())
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                job = running.pop(future)
                finished[job] = future.result()
                bar.update(1)
                if job[0] != FIRST_STAGE:
                    report(*job, finished[job])
    for method, seed in jobs:
        runs.setdefault(method, []).append(finished[method, seed])

    results = {method: [r["metrics"] for r in rs] for method, rs in runs.items()}
    named = {METHOD_NAMES[m]: rs for m, rs in results.items()}
    table = markdown_table(named)
    if config.seeds > 1:
        table += "\n\nPer seed, in %:\n\n" + per_seed_table(named)
    elapsed = time.perf_counter() - started
    summary = {
        "config": dataclasses.asdict(config), "seconds": elapsed, "results": results,
        "mean": {m: {k: statistics.mean(r[k] for r in rs) for k in _numbers(rs[0])} for m, rs in results.items()},
        "curves": {m: [r["curve"] for r in rs] for m, rs in runs.items() if m != "self_refine"},
    }
    write_json(out / "results.json", summary)
    write_text_atomic(out / "transcripts.jsonl", "".join(json.dumps(t) + "\n" for rs in runs.values()
                                                         for t in rs[0]["transcripts"]))
    plot_curves(summary["curves"], out / "training_curves.png", "embedded task: Acc@t1 (dashed) and Acc@t2 (solid)")
    plot_comparison({METHOD_NAMES[m]: rs for m, rs in runs.items()}, out / "comparison.png")
    seeds = f"{config.seeds} seed{'s' if config.seeds > 1 else ''}"
    spread = "mean ± std over seeds" if config.seeds > 1 else "value [95% interval]"
    report = (f"# selfcorrect: {', '.join(config.methods)}\n\nEmbedded task `modroot`, {len(test)} held-out problems, "
              f"greedy decoding, {seeds}; cells are % ({spread}).\nEvery trained method samples "
              f"{config.train.steps * config.train.episodes_per_step} episodes.\n\n{table}\n\n"
              f"![training curves](training_curves.png)\n\n![comparison](comparison.png)\n\n"
              f"Wall time: {elapsed:.0f}s.\n")
    write_text_atomic(out / "report.md", report)
    log("\n" + table + f"\n\nwrote {out}/report.md, results.json, transcripts.jsonl, training_curves.png, "
        f"comparison.png ({elapsed:.0f}s)")
    return summary
