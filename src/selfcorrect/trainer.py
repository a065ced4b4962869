"""The training loop: rollout -> reward -> advantage -> update, read top to bottom.

A run is a list of stages, each an `Objective` for some steps (SCoRe: Stage I then
Stage II; the baselines: one stage). Checkpoints are atomic and hold everything needed
for an exact resume (weights, optimizer, both random streams, best-so-far).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .config import check
from .dialogue import Dialogue
from .distributed import full_state, full_weights, load_full_state, make_accelerator, whole_weights
from .errors import SelfCorrectError
from .evaluate import collapse_metrics
from .models.hf import frozen_reference, needs_reference_copy
from .objectives import (Objective, naive_multi_turn, pair_sft, pair_sft_pairs, policy_loss, rloo_advantages,
                         sft_loss, shaped_returns, single_turn, stage_one, stage_two, star, star_keep)
from .report import write_text_atomic
from .rollout import Episodes, SamplingConfig, micro_batches, pack, rollout, token_logprobs
from .tasks import Task

Method = Literal["score", "naive", "single_turn", "stage1_only", "no_stage1", "no_shaping", "score_star",
                 "score_offline", "star", "star_plus", "pair_sft", "pair_sft_plus"]


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "score"
    steps: int = 200  # total update steps, all stages together
    stage1_steps: int = 100  # SCoRe's Stage I share of `steps`
    problems_per_step: int = 32
    samples_per_problem: int = 4  # n >= 2 for the leave-one-out baseline
    micro_batch: int = 128  # at most this many episodes per forward/backward (gradient accumulation)
    micro_batch_tokens: int = 0  # and at most this many padded tokens (0: no token budget)
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    alpha: float = 10.0
    beta1: float = 0.01
    beta2: float = 0.1
    attempts: int = 2
    # top_p < 1 keeps rare junk tokens out of the samples; at temperature 1 on the tiny
    # model they made the policy drift (see docs/embedded-task.md).
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(top_p=0.9))
    seed: int = 0
    checkpoint_every: int = 25
    best_window: int = 10  # steps averaged for "best checkpoint by training reward"
    star_round_steps: int = 25  # STaR: steps per round (its traces come from the policy at the round's start)

    def __post_init__(self):
        for name in ("steps", "problems_per_step", "micro_batch", "checkpoint_every", "best_window", "star_round_steps"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.micro_batch_tokens >= 0, "micro_batch_tokens", "must be >= 0")
        check(self.samples_per_problem >= 2, "samples_per_problem", "must be >= 2 (leave-one-out baseline)")
        check(0 <= self.stage1_steps <= self.steps, "stage1_steps", "must be between 0 and steps")
        check(self.lr > 0, "lr", "must be > 0")
        check(self.grad_clip > 0, "grad_clip", "must be > 0")
        for name in ("alpha", "beta1", "beta2", "weight_decay"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(self.attempts >= (1 if self.method == "single_turn" else 2), "attempts",
              "must be >= 2 for multi-turn methods")
        check(self.attempts == 2 or not self.method.startswith("pair_sft"), "attempts", "Pair-SFT pairs two attempts")

    @property
    def episodes_per_step(self) -> int:
        return self.problems_per_step * self.samples_per_problem


def check_fits(config: TrainConfig, train_problems: int) -> None:
    """A step draws `problems_per_step` distinct problems from the training problems."""
    check(config.problems_per_step <= train_problems, "train.problems_per_step",
          f"{config.problems_per_step} is more than the {train_problems} training problems")


def stages(config: TrainConfig) -> list[tuple[Objective, int]]:
    """The method as (objective, steps) stages: every method spends the same `steps`."""
    c, k = config, config.attempts
    two_stage = lambda second: [(stage_one(c.beta1, c.beta2, k), c.stage1_steps), (second, c.steps - c.stage1_steps)]
    plans = {
        "score": lambda: two_stage(stage_two(c.beta1, c.alpha, k)),
        "no_shaping": lambda: two_stage(stage_two(c.beta1, 0.0, k)),
        "no_stage1": lambda: [(stage_two(c.beta1, c.alpha, k), c.steps)],
        "stage1_only": lambda: [(stage_one(c.beta1, c.beta2, k), c.steps)],
        "naive": lambda: [(naive_multi_turn(c.beta1, k), c.steps)],
        "single_turn": lambda: [(single_turn(c.beta1), c.steps)],
        "score_star": lambda: two_stage(star(k, plus=True, train_first=True)),
        "score_offline": lambda: two_stage(stage_two(c.beta1, c.alpha, k, offline_firsts=True)),
        "star": lambda: [(star(k), c.steps)],
        "star_plus": lambda: [(star(k, plus=True), c.steps)],
        "pair_sft": lambda: [(pair_sft(), c.steps)],
        "pair_sft_plus": lambda: [(pair_sft(plus=True), c.steps)],
    }
    return [(obj, n) for obj, n in plans[c.method]() if n > 0]


def schedule(config: TrainConfig) -> list[tuple[Objective, int]]:
    """(objective, first step of its stage) for every step of the run."""
    plan = stages(config)
    return [(obj, sum(m for _, m in plan[:i])) for i, (obj, n_steps) in enumerate(plan) for _ in range(n_steps)]


def checkpoint_due(per_step: list[tuple[Objective, int]], step: int, every: int) -> bool:
    """After `step` steps: every `every` steps, and at the end of each stage (where a run
    sharing this one's first stage continues from)."""
    return step % every == 0 or step == len(per_step) or per_step[step][1] != per_step[step - 1][1]


def continues(saved: dict, config: TrainConfig, step: int) -> bool:
    """Whether a checkpoint written at `step` by a run with config `saved` is a point of a run with `config`.

    True for the same config, and for a run that differs only in method and length but whose
    first `step` steps are this run's and which checkpoints at `step` too, so that it keeps the
    same best weights (SCoRe variants share Stage I: `selfcorrect compare` trains it once and
    continues each variant from its checkpoint).
    """
    if saved == asdict(config):
        return True
    try:
        other = replace(config, method=saved["method"], steps=saved["steps"])
    except (KeyError, SelfCorrectError):
        return False
    mine = schedule(config)
    return (asdict(other) == saved and 0 < step <= len(mine) and schedule(other)[:step] == mine[:step]
            and checkpoint_due(mine, step, config.checkpoint_every))


class _Clock:
    """Seconds per phase of a step; splits wait for the GPU so each phase owns its time."""

    def __init__(self, device: torch.device):
        self.device, self.last, self.seconds = device, time.perf_counter(), {}

    def split(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.last
        self.last = now


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")  # a line torn by a kill mid-write: after the checkpoint, so dropped


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop metric lines after the checkpointed step (they will be produced again)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln and _step_of(ln) <= last_step]
        write_text_atomic(path, "".join(ln + "\n" for ln in lines))


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint.pt or best.pt written by `train`; a damaged file is a one-line error."""
    try:
        state = torch.load(path, weights_only=False)
    except Exception as e:  # truncated, empty, not a torch file: torch raises many kinds
        raise SelfCorrectError(f"{path}: not a readable checkpoint ({type(e).__name__}); train again or "
                               "use the other checkpoint") from None
    if not isinstance(state, dict) or "model" not in state:
        raise SelfCorrectError(f"{path}: not a selfcorrect checkpoint")
    return state


def _sample(model, frozen: Callable, dialogue: Dialogue, task: Task, problems: list, objective: Objective,
            config: TrainConfig, sampler: torch.Generator, pairing: random.Random, shard: slice,
            offline: bool = False) -> tuple[Episodes, Episodes]:
    """Sampled episodes (for the log) and the batch the update trains on.

    `frozen()` enters the frozen reference (for a LoRA model: the policy with its adapter
    off, so the policy itself is only sampled outside that block). RL samples from the
    policy and trains on every episode; with `offline`, attempt 1 comes from the base
    (the reference) and only the later attempts are trained. STaR samples from the
    round's policy (kept in the reference) and keeps the traces `star_keep` selects.
    Pair-SFT samples first attempts from the base and pairs them (`pair_sft_pairs`).
    """
    sampling, k = config.sampling, objective.num_attempts
    if objective.supervised == "pair":
        with frozen() as ref:
            firsts = rollout(ref, dialogue, task, problems, 1, sampling, sampler, shard)
        pairs = pair_sft_pairs(firsts.rewards[:, 0], config.samples_per_problem, objective.plus, pairing)
        if not pairs:
            return firsts, firsts.select(torch.arange(0))
        problems = problems[shard]
        batch = pack(dialogue, [problems[i].prompt for i, _ in pairs],
                     [[firsts.attempts[i][0], firsts.attempts[j][0]] for i, j in pairs], task.instruction,
                     torch.stack([firsts.rewards[[i, j], 0] for i, j in pairs]))
        return firsts, batch
    if objective.supervised == "star":
        with frozen() as ref:
            episodes = rollout(ref, dialogue, task, problems, k, sampling, sampler, shard)
        return episodes, episodes.select(star_keep(episodes.rewards, objective.plus).nonzero().squeeze(-1))
    if offline:
        with frozen() as ref:
            firsts = rollout(ref, dialogue, task, problems, 1, sampling, sampler, shard)
        episodes = rollout(model, dialogue, task, problems, k, sampling, sampler, shard, given=firsts.attempts)
        return episodes, episodes.without_attempt(0)
    episodes = rollout(model, dialogue, task, problems, k, sampling, sampler, shard)
    return episodes, episodes


def train(model, dialogue: Dialogue, task: Task, config: TrainConfig, out_dir: str | Path, resume: bool = False,
          on_checkpoint: Callable[[int, object], None] | None = None, progress: bool = True):
    """Train `model` in place; returns it.

    The frozen reference is a copy of the weights at entry; for a LoRA (peft) model it is
    the same model with its adapter disabled, so no second copy of the weights is kept.

    Runs in one process, or in several under `accelerate launch` (DDP, FSDP2 or DeepSpeed
    ZeRO-2): each process samples and trains on its share of the problems (all n samples of a
    problem on one process, so the leave-one-out baseline is exact), gradients are averaged,
    metrics are gathered, and the main process writes the files, with full weights. Under FSDP
    each process gathers the whole weights once per step to sample; the reference stays a
    whole copy on each process, and the returned model is still sharded. Under ZeRO-2 each
    process keeps the whole weights and its partition of the optimizer state, which the
    checkpoint holds as one entry per process (resume on as many processes).

    Writes under out_dir: metrics.jsonl (one line a step), checkpoint.pt (latest, for
    --resume) and best.pt (weights with the best windowed training reward of the final
    attempt; in a supervised stage, whose rewards other weights sampled, the latest).
    `on_checkpoint(step, model)` runs at each checkpoint (plots, evals).
    """
    accelerator = make_accelerator(model, config.grad_clip)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if config.problems_per_step % world:
        raise SelfCorrectError(f"train.problems_per_step: {config.problems_per_step} does not split over {world} "
                               "processes")
    n = config.samples_per_problem
    rows = config.problems_per_step // world * n
    shard = slice(rank * rows, (rank + 1) * rows)  # this process's episodes of each step
    out = Path(out_dir)
    ckpt_path, best_path, log_path = out / "checkpoint.pt", out / "best.pt", out / "metrics.jsonl"
    per_step = schedule(config)
    keep_reference = any(obj.supervised == "star" for obj, _ in per_step)  # it holds the STaR round's sampler
    copied = keep_reference or needs_reference_copy(model)
    # copied before `prepare`, so FSDP never shards it (every process starts from the same weights)
    reference = copy.deepcopy(model).eval().requires_grad_(False) if copied else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)  # FSDP2 needs both at once
    policy = accelerator.unwrap_model(model)  # samples; `model` (DDP, FSDP-sharded in place, DeepSpeed engine) trains
    frozen = lambda: contextlib.nullcontext(reference) if copied else frozen_reference(policy)
    sampler = torch.Generator().manual_seed(config.seed)
    picker = random.Random(config.seed)
    train_problems = task.problems("train")
    check_fits(config, len(train_problems))
    step, best, window = 0, float("-inf"), deque(maxlen=config.best_window)

    if resume and ckpt_path.exists():
        state = read_checkpoint(ckpt_path)
        if not continues(state["config"], config, state["step"]):
            raise SelfCorrectError(f"{ckpt_path}: this checkpoint was made with another config; resume with that "
                                   "config or start in a new folder")
        load_full_state(accelerator, model, optimizer, state["model"], state["optimizer"])
        if keep_reference and "reference" in state:  # (absent: a shared stage before any STaR round)
            reference.load_state_dict(state["reference"])
        sampler.set_state(state["sampler"])
        picker.setstate(state["picker"])
        step, best, window = state["step"], state["best"], deque(state["window"], maxlen=config.best_window)
        if main:
            _truncate_log(log_path, step)
    elif main and log_path.exists():
        log_path.unlink()
    if main:
        out.mkdir(parents=True, exist_ok=True)

    bar = tqdm(total=len(per_step), initial=step, desc=config.method, disable=not (progress and main), unit="step")
    while step < len(per_step):
        objective, stage_start = per_step[step]
        started, clock = time.perf_counter(), _Clock(accelerator.device)
        if objective.supervised == "star" and (step - stage_start) % config.star_round_steps == 0:
            # a new STaR round samples from the current policy
            reference.load_state_dict(full_weights(policy))
        # 1. Rollout: n samples of each problem, contiguous (the leave-one-out groups); this process's shard.
        problems = [p for p in picker.sample(train_problems, config.problems_per_step) for _ in range(n)]
        pairing = random.Random(f"{config.seed}/{step}/{rank}")  # Pair-SFT's choice of partners
        model.eval()
        offline = objective.offline_firsts and (step - stage_start) % 2 == 1  # every other step of the stage
        with whole_weights(accelerator, policy):
            episodes, batch = _sample(policy, frozen, dialogue, task, problems, objective, config, sampler, pairing,
                                      shard, offline)
        clock.split("generate")
        # 2. Reward -> per-attempt returns -> leave-one-out advantages (RL objectives).
        if not objective.supervised:
            advantages = rloo_advantages(shaped_returns(episodes.rewards, objective.alpha), n)
            num_tokens = None
        else:
            local = batch.attempt_mask[:, torch.tensor(objective.train)].sum() if len(batch) else torch.tensor(0)
            # each process divides by the global count; DDP then averages over processes
            num_tokens = accelerator.reduce(local.to(accelerator.device), "sum").item() / world
        trained = int(accelerator.reduce(torch.tensor(len(batch), device=accelerator.device), "sum"))
        # 3. Update, accumulated over micro-batches of similar length; gradients sync on the last one.
        model.train()
        optimizer.zero_grad(set_to_none=True)
        parts = micro_batches(batch.attention_mask.sum(-1), config.micro_batch, config.micro_batch_tokens)
        # every process makes as many forward/backward calls (FSDP gathers weights in each, DDP syncs in
        # the last): the extra ones, and those of a process whose selection kept nothing, have a zero loss
        count = int(accelerator.gather(torch.tensor([len(parts)], device=accelerator.device)).max())
        parts += [None] * (count - len(parts))
        totals: dict[str, torch.Tensor] = {}
        for i, part in enumerate(parts):
            rows = part if part is not None else torch.arange(1)
            micro = (batch if part is not None else episodes).select(rows)
            last = i == len(parts) - 1
            accelerator.sync_gradients = last  # accelerate's DeepSpeed `backward` steps when this is set
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                logp = token_logprobs(model, micro)
                mask = micro.attempt_mask.to(logp.device)
                if not objective.supervised:
                    clock.split("forward_backward")
                    # on the zero-loss calls too: a LoRA reference is the policy, which FSDP gathers for
                    with torch.no_grad(), frozen() as ref:
                        ref_logp = token_logprobs(ref, micro)
                    clock.split("reference")
                if part is None:
                    loss, stats = (logp * 0).sum(), {}
                elif objective.supervised:
                    loss, stats = sft_loss(logp, mask, objective.train, num_tokens), {}
                else:
                    loss, stats = policy_loss(logp, ref_logp, mask, advantages[rows].to(logp.device), objective,
                                              num_episodes=len(batch))
                accelerator.backward(loss)
                clock.split("forward_backward")
            stats["loss"] = loss.detach()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0) + value.cpu()
        grad_norm = 0.0
        if trained:  # (under DeepSpeed, `backward` has clipped and stepped: this reads its norm, the step is a no-op)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        clock.split("optimizer")
        step += 1

        # 4. Log (gathered over processes).
        all_rewards = accelerator.gather(episodes.rewards.to(accelerator.device)).cpu()
        rewards = all_rewards.mean(0)
        totals = {k: accelerator.reduce(v.to(accelerator.device), "mean").cpu() for k, v in sorted(totals.items())}
        elapsed = time.perf_counter() - started
        generated = int(accelerator.reduce(episodes.attempt_mask.sum().to(accelerator.device), "sum"))
        seen = int(accelerator.reduce(episodes.attention_mask.sum().to(accelerator.device), "sum"))
        attempts, answers = gather_object(episodes.attempts), gather_object(episodes.answers)
        record = {
            "step": step, "stage": objective.name, **({"offline_firsts": True} if offline else {}),
            **{f"reward_t{t + 1}": rewards[t].item() for t in range(len(rewards))},
            "delta": (rewards[-1] - rewards[0]).item(),
            **({f"kl_t{t + 1}": totals["kl"][t].item() for t in range(len(rewards))} if "kl" in totals else {}),
            **(collapse_metrics(attempts, answers) if len(rewards) > 1 else {}),
            **{key: totals[key].item() for key in ("loss", "pg_loss", "kl_loss") if key in totals},
            "trained_episodes": trained, "grad_norm": float(grad_norm), "generated_tokens_per_s": generated / clock.seconds["generate"],
            "tokens_per_s": seen / elapsed, "seconds": elapsed, **{f"time_{k}": v for k, v in clock.seconds.items()},
            **({"peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30} if accelerator.device.type == "cuda" else {}),
        }
        if main:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        window.append(rewards[-1].item())
        bar.update(1)
        bar.set_postfix(stage=objective.name, r1=f"{rewards[0]:.2f}", rK=f"{rewards[-1]:.2f}")

        # 5. Checkpoint (atomic, main process), and keep the best weights by windowed training reward.
        if checkpoint_due(per_step, step, config.checkpoint_every):
            score = sum(window) / len(window)
            # RL rewards were sampled by the weights saved here; a supervised stage's were not (Pair-SFT
            # samples the base, STaR the round's snapshot), so there the latest weights are kept.
            on_policy = objective.supervised is None
            weights, optimizer_state = full_state(accelerator, model, optimizer)  # the main process gets them
            if main and (score > best or not on_policy):
                _atomic_save({"model": weights, "step": step, "train_reward": score}, best_path)
            best = max(best, score) if on_policy else score
            if main:
                _atomic_save({
                    "model": weights, "optimizer": optimizer_state, "sampler": sampler.get_state(),
                    "picker": picker.getstate(), "step": step, "best": best, "window": list(window),
                    "config": asdict(config), **({"reference": reference.state_dict()} if keep_reference else {}),
                }, ckpt_path)
            if on_checkpoint:
                with whole_weights(accelerator, policy):
                    if main:
                        on_checkpoint(step, policy)
            accelerator.wait_for_everyone()
    bar.close()
    policy.eval()
    return policy


def load_weights(model, path: str | Path):
    """Load weights saved by `train` (best.pt or checkpoint.pt) into `model`."""
    try:
        model.load_state_dict(read_checkpoint(path)["model"])
    except RuntimeError as e:  # shapes or names of another model
        raise SelfCorrectError(f"{path}: its weights do not fit this model ({str(e).splitlines()[0]})") from None
    return model.eval()
