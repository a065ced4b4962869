"""What a task is: problems with a verifiable answer, prompts, and a reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str  # the first-turn text shown to the model
    answer: str  # the gold answer, in the task's own notation


class Task(Protocol):
    """Optional besides: `rewards(problems, responses)`, a batched `reward`, and
    `answers_agree(a, b)`, whether two stated answers are one value (majority voting; else
    equal strings)."""

    name: str
    instruction: str  # the self-correction instruction appended after each attempt

    def problems(self, split: str, limit: int | None = None) -> Sequence[Problem]:
        """Problems of a split ("train", "val", "test"), in a fixed order."""

    def answer(self, response: str) -> str | None:
        """The final answer a response states, normalised (None when it states none)."""

    def reward(self, problem: Problem, response: str) -> float:
        """1.0 when the response's final answer is right, else 0.0."""


def batch_rewards(task: Task, problems: Sequence[Problem], responses: Sequence[str]) -> list[float]:
    """Rewards of many responses: through the task's own parallel `rewards` when it has one."""
    if hasattr(task, "rewards"):
        return list(task.rewards(problems, responses))
    return [task.reward(p, r) for p, r in zip(problems, responses)]
