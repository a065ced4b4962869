"""The training loop: rollout -> reward -> advantage -> update, read top to bottom.

A run is a list of stages, each an `Objective` for some steps (SCoRe: Stage I then
Stage II; the baselines: one stage). Checkpoints are atomic and hold everything needed
for an exact resume (weights, optimizer, both random streams, best-so-far).
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
from tqdm.auto import tqdm

from .config import check
from .dialogue import Dialogue
from .evaluate import collapse_metrics
from .objectives import (Objective, naive_multi_turn, policy_loss, rloo_advantages, shaped_returns,
                         single_turn, stage_one, stage_two)
from .rollout import SamplingConfig, rollout, token_logprobs
from .tasks import Task

Method = Literal["score", "naive", "single_turn", "stage1_only", "no_stage1", "no_shaping"]


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "score"
    steps: int = 200  # total update steps, all stages together
    stage1_steps: int = 100  # SCoRe's Stage I share of `steps`
    problems_per_step: int = 32
    samples_per_problem: int = 4  # n >= 2 for the leave-one-out baseline
    micro_batch: int = 128  # episodes per forward/backward (gradient accumulation)
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

    def __post_init__(self):
        for name in ("steps", "problems_per_step", "micro_batch", "checkpoint_every", "best_window"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.samples_per_problem >= 2, "samples_per_problem", "must be >= 2 (leave-one-out baseline)")
        check(0 <= self.stage1_steps <= self.steps, "stage1_steps", "must be between 0 and steps")
        check(self.lr > 0, "lr", "must be > 0")
        check(self.grad_clip > 0, "grad_clip", "must be > 0")
        for name in ("alpha", "beta1", "beta2", "weight_decay"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(self.attempts >= (1 if self.method == "single_turn" else 2), "attempts",
              "must be >= 2 for multi-turn methods")

    @property
    def episodes_per_step(self) -> int:
        return self.problems_per_step * self.samples_per_problem


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
    }
    return [(obj, n) for obj, n in plans[c.method]() if n > 0]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop metric lines after the checkpointed step (they will be produced again)."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= last_step]
        path.write_text("".join(ln + "\n" for ln in lines))


def train(model, dialogue: Dialogue, task: Task, config: TrainConfig, out_dir: str | Path, resume: bool = False,
          on_checkpoint: Callable[[int, object], None] | None = None, progress: bool = True):
    """Train `model` in place; returns it. The frozen reference is a copy of its weights at entry.

    Writes under out_dir: metrics.jsonl (one line a step), checkpoint.pt (latest, for
    --resume) and best.pt (weights with the best windowed training reward of the final
    attempt). `on_checkpoint(step, model)` runs at each checkpoint (plots, evals).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, best_path, log_path = out / "checkpoint.pt", out / "best.pt", out / "metrics.jsonl"
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = torch.Generator().manual_seed(config.seed)
    picker = random.Random(config.seed)
    train_problems = task.problems("train")
    plan = stages(config)
    schedule = [obj for obj, n in plan for _ in range(n)]
    step, best, window = 0, float("-inf"), deque(maxlen=config.best_window)

    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state["config"] != asdict(config):
            raise ValueError(f"{ckpt_path}: checkpoint was written with a different config; cannot resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        picker.setstate(state["picker"])
        step, best, window = state["step"], state["best"], deque(state["window"], maxlen=config.best_window)
        _truncate_log(log_path, step)
    elif log_path.exists():
        log_path.unlink()

    bar = tqdm(total=len(schedule), initial=step, desc=config.method, disable=not progress, unit="step")
    n = config.samples_per_problem
    while step < len(schedule):
        objective = schedule[step]
        started = time.perf_counter()
        # 1. Rollout: n samples of each problem, contiguous (the leave-one-out groups).
        problems = [p for p in picker.sample(train_problems, config.problems_per_step) for _ in range(n)]
        model.eval()
        episodes = rollout(model, dialogue, task, problems, objective.num_attempts, config.sampling, sampler)
        rollout_time = time.perf_counter() - started
        # 2. Reward -> per-attempt returns -> leave-one-out advantages.
        advantages = rloo_advantages(shaped_returns(episodes.rewards, objective.alpha), n)
        # 3. Update, accumulated over micro-batches.
        model.train()
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for start in range(0, len(episodes), config.micro_batch):
            part = slice(start, start + config.micro_batch)
            micro = episodes.select(part)
            with torch.no_grad():
                ref_logp = token_logprobs(reference, micro)
            loss, stats = policy_loss(token_logprobs(model, micro), ref_logp, micro.attempt_mask.to(ref_logp.device),
                                      advantages[part].to(ref_logp.device), objective, num_episodes=len(episodes))
            loss.backward()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0) + value.cpu()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1

        # 4. Log.
        rewards = episodes.rewards.mean(0)
        elapsed = time.perf_counter() - started
        generated = int(episodes.attempt_mask.sum())
        record = {
            "step": step, "stage": objective.name,
            **{f"reward_t{t + 1}": rewards[t].item() for t in range(len(rewards))},
            "delta": (rewards[-1] - rewards[0]).item(),
            **{f"kl_t{t + 1}": totals["kl"][t].item() for t in range(len(rewards))},
            **(collapse_metrics(episodes.attempts, episodes.answers) if len(rewards) > 1 else {}),
            "pg_loss": totals["pg_loss"].item(), "kl_loss": totals["kl_loss"].item(),
            "grad_norm": grad_norm.item(), "generated_tokens_per_s": generated / rollout_time,
            "tokens_per_s": int(episodes.attention_mask.sum()) / elapsed, "seconds": elapsed,
        }
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        window.append(rewards[-1].item())
        bar.update(1)
        bar.set_postfix(stage=objective.name, r1=f"{rewards[0]:.2f}", rK=f"{rewards[-1]:.2f}")

        # 5. Checkpoint (atomic), and keep the best weights by windowed training reward.
        if step % config.checkpoint_every == 0 or step == len(schedule):
            score = sum(window) / len(window)
            if score > best:
                best = score
                _atomic_save({"model": model.state_dict(), "step": step, "train_reward": best}, best_path)
            _atomic_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "sampler": sampler.get_state(),
                "picker": picker.getstate(), "step": step, "best": best, "window": list(window),
                "config": asdict(config),
            }, ckpt_path)
            if on_checkpoint:
                on_checkpoint(step, model)
    bar.close()
    model.eval()
    return model


def load_weights(model, path: str | Path):
    """Load weights saved by `train` (best.pt or checkpoint.pt) into `model`."""
    model.load_state_dict(torch.load(path, weights_only=False)["model"])
    return model.eval()
