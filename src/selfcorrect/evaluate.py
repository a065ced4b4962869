"""Self-correction metrics (Acc@t1, Acc@t2, Delta, Delta_i->c, Delta_c->i) with 95% intervals."""

from __future__ import annotations

import difflib
import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .dialogue import Dialogue
from .rollout import GREEDY, SamplingConfig, rollout
from .tasks import Problem, Task

Z95 = 1.959964


def wilson(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_interval(diffs: torch.Tensor) -> tuple[float, float]:
    """95% normal interval for the mean of paired differences (Delta = mean(r_K - r_1))."""
    n = diffs.numel()
    mean = diffs.float().mean().item()
    if n < 2:
        return (mean, mean)
    half = Z95 * diffs.float().std().item() / math.sqrt(n)
    return (mean - half, mean + half)


def correction_metrics(rewards: torch.Tensor) -> dict:
    """Metrics from per-problem rewards [N, K] in {0, 1} (first vs last attempt for Delta)."""
    rewards = rewards.float()
    n, k = rewards.shape
    first, last = rewards[:, 0], rewards[:, -1]
    out: dict = {"n": n}
    for t in range(k):
        acc = rewards[:, t].mean().item()
        out[f"acc_t{t + 1}"] = acc
        out[f"acc_t{t + 1}_ci"] = wilson(rewards[:, t].sum().item(), n)
    i2c = ((first == 0) & (last == 1)).float()
    c2i = ((first == 1) & (last == 0)).float()
    out["delta"] = (last - first).mean().item()
    out["delta_ci"] = paired_interval(last - first)
    out["delta_i2c"], out["delta_i2c_ci"] = i2c.mean().item(), wilson(i2c.sum().item(), n)
    out["delta_c2i"], out["delta_c2i_ci"] = c2i.mean().item(), wilson(c2i.sum().item(), n)
    # Holds exactly in counts: every change between first and last attempt is a flip.
    assert int((last - first).sum()) == int(i2c.sum()) - int(c2i.sum())
    return out


def edit_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """Similarity of two attempts' tokens in [0, 1] (1 = identical), standing for the paper's
    edit-distance ratio: difflib's ratio, 2 x matched tokens / all tokens (Ratcliff-Obershelp
    matching, not a Levenshtein distance)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def collapse_metrics(attempts: Sequence[Sequence[Sequence[int]]],
                     answers: Sequence[Sequence[str | None]] | None = None) -> dict:
    """The paper's collapse diagnostic: how close the last attempt stays to the first.

    edit_ratio and identical compare tokens; same_answer compares the final answers
    (a rewrite that keeps the answer is a collapse too, whatever its wording).
    """
    pairs = [(a[0], a[-1]) for a in attempts]
    out = {
        "edit_ratio": sum(edit_ratio(x, y) for x, y in pairs) / len(pairs),
        "identical": sum(list(x) == list(y) for x, y in pairs) / len(pairs),
    }
    if answers is not None:
        out["same_answer"] = sum(a[0] is not None and a[0] == a[-1] for a in answers) / len(answers)
    return out


@dataclass
class Evaluation:
    problems: list[Problem]
    rewards: torch.Tensor  # [N, K]
    responses: list[list[str]]  # [N][K]
    metrics: dict
    edit_ratios: list[float]  # per problem, first vs last attempt (the collapse histogram)


@torch.no_grad()
def evaluate(model, dialogue: Dialogue, task: Task, problems: Sequence[Problem], attempts: int = 2,
             sampling: SamplingConfig = GREEDY, batch_size: int = 256, progress: bool = False) -> Evaluation:
    """Greedy K-attempt evaluation of `problems`."""
    rewards, responses, token_attempts, answers = [], [], [], []
    for start in tqdm(range(0, len(problems), batch_size), desc="evaluating", unit="batch", disable=not progress):
        episodes = rollout(model, dialogue, task, problems[start:start + batch_size], attempts, sampling)
        rewards.append(episodes.rewards)
        token_attempts += episodes.attempts
        answers += episodes.answers
        responses += [[dialogue.decode(a) for a in atts] for atts in episodes.attempts]
    rewards_t = torch.cat(rewards)
    metrics = correction_metrics(rewards_t)
    if attempts > 1:
        metrics |= collapse_metrics(token_attempts, answers)
    ratios = [edit_ratio(a[0], a[-1]) for a in token_attempts]
    return Evaluation(list(problems), rewards_t, responses, metrics, ratios)


def _vote(answers: Sequence[str | None], rewards: Sequence[float],
          same: Callable[[str, str], bool] = operator.eq) -> float:
    """Reward of the majority answer; answers `same` calls equal count together (ties: the
    class seen first). A class's reward is its members' most common one (ties: its first
    member's): `same` may be looser than the reward's own check. 0 when no answer was given."""
    classes: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is not None:
            home = next((c for c in classes if same(answers[c[0]], answer)), None)
            if home is None:
                classes.append([i])
            else:
                home.append(i)
    if not classes:
        return 0.0
    return Counter(rewards[i] for i in max(classes, key=len)).most_common(1)[0][0]


@torch.no_grad()
def self_consistency(model, dialogue: Dialogue, task: Task, problems: Sequence[Problem], budgets: Sequence[int],
                     sampling: SamplingConfig, batch_size: int = 64, progress: bool = False) -> dict:
    """Inference-time compute at equal sample budgets B (the paper's Figure 1 right).

    parallel:   B sampled first attempts, majority vote over their final answers (answers
                the task's `answers_agree` calls equal vote together, else equal strings);
    sequential: floor(B/2) sampled first attempts, each corrected once, majority vote over
                the second attempts (none for B = 1). Each reads a prefix of its own
                samples (drawn once for the largest budget), so its budgets nest.
    Returns {"budgets": [...], "n": N, "parallel": [acc...], "sequential": [acc or None...]}.
    """
    if not budgets or min(budgets) < 1:
        raise ValueError("budgets must be >= 1")
    top = max(budgets)
    same = getattr(task, "answers_agree", operator.eq)
    parallel = {b: 0.0 for b in budgets}
    sequential = {b: 0.0 for b in budgets if b >= 2}
    for start in tqdm(range(0, len(problems), batch_size), desc="self-consistency", disable=not progress):
        chunk = problems[start:start + batch_size]
        firsts = rollout(model, dialogue, task, [p for p in chunk for _ in range(top)], 1, sampling)
        chains = rollout(model, dialogue, task, [p for p in chunk for _ in range(max(top // 2, 1))], 2, sampling)
        for i in range(len(chunk)):
            one = slice(i * top, (i + 1) * top)
            two = slice(i * max(top // 2, 1), (i + 1) * max(top // 2, 1))
            first_answers = [a[0] for a in firsts.answers[one]]
            first_rewards = firsts.rewards[one, 0].tolist()
            second_answers = [a[1] for a in chains.answers[two]]
            second_rewards = chains.rewards[two, 1].tolist()
            for b in budgets:
                parallel[b] += _vote(first_answers[:b], first_rewards[:b], same)
                if b in sequential:
                    sequential[b] += _vote(second_answers[:b // 2], second_rewards[:b // 2], same)
    n = len(problems)
    return {"budgets": list(budgets), "n": n, "parallel": [parallel[b] / n for b in budgets],
            "sequential": [sequential[b] / n if b in sequential else None for b in budgets]}
