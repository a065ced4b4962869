"""The embedded default task: pick the root of a congruence from a list of candidates.

    problem:  7 x + 2 = 5 mod 10 . x is 3 or 8 or 5 .
    attempt:  x = 8 ; 7 * 8 = 6 ; 6 + 2 = 8 ; 8 != 5     (a guess, its written check, a verdict)

Exactly one candidate satisfies a*x + b = c (mod m). Checking a candidate is one
forward evaluation, which the base model learns reliably; producing the root means
evaluating every candidate (or inverting a mod m), which it is never taught. So
the base guesses, writes a correct check of its guess, and then, told "there might be
an error", mostly copies itself: accuracy about 1/k at both attempts. Like the paper's
base models, it abandons a right first answer more often than a wrong one (so its second
attempt already depends on its check, in the wrong direction). A real correction
strategy exists to be found by RL: read your own check, and if it does not give c,
answer another candidate. Copying is in the base's repertoire too, which is what naive
multi-turn RL can collapse to. The reward asks for the right root with its check
written right: the check is what the next attempt reads. See docs/embedded-task.md.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from dataclasses import dataclass
from functools import cached_property

from ..config import check
from .base import Problem

INSTRUCTION = (
    "there might be an error in the solution above because of lack of understanding "
    "of the question . please correct the error , if any , and rewrite the solution ."
)

_SPLIT_BUCKETS = {"test": (0,), "val": (1,), "train": tuple(range(2, 10))}
_SOLUTION = re.compile(r"x = (\d+) ; \d+ \* \d+ = \d+ ; \d+ \+ \d+ = \d+ ; \d+ !?= \d+")
_PROMPT = re.compile(r"(\d+) x \+ (\d+) = (\d+) mod")


@dataclass(frozen=True)
class ModRootConfig:
    modulus: int = 10
    candidates: int = 2
    copy_prob: float = 0.7  # in the base's corpus, how often attempt 2 copies a wrong attempt 1
    copy_prob_right: float = 0.4  # and a right one: the base abandons right answers more often

    def __post_init__(self):
        check(2 <= self.modulus <= 50, "modulus", "must be between 2 and 50")
        check(2 <= self.candidates <= self.modulus, "candidates", "must be between 2 and modulus")
        check(0.0 <= self.copy_prob <= 1.0, "copy_prob", "must be in [0, 1]")
        check(0.0 <= self.copy_prob_right <= 1.0, "copy_prob_right", "must be in [0, 1]")
        empty = [split for split in _SPLIT_BUCKETS if not _split_size(self, split)]
        check(not empty, "modulus", f"{self.modulus} leaves no {' and no '.join(empty)} problems; use 3 or more")


@functools.cache  # a few hundred equations, drawn hundreds of thousands of times
def _split_of(key: str) -> str:
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10
    return next(s for s, b in _SPLIT_BUCKETS.items() if bucket in b)


class ModRootTask:
    name = "modroot"
    instruction = INSTRUCTION

    def __init__(self, config: ModRootConfig | None = None):
        self.config = config or ModRootConfig()

    @cached_property
    def units(self) -> list[int]:
        m = self.config.modulus
        return [a for a in range(1, m) if math.gcd(a, m) == 1]

    def prompt(self, a: int, b: int, c: int, options: list[int]) -> str:
        return f"{a} x + {b} = {c} mod {self.config.modulus} . x is " + " or ".join(map(str, options)) + " ."

    def attempt(self, a: int, b: int, c: int, x: int) -> str:
        """A solution: the guess, its check a*x + b (mod m) in two steps, and the verdict."""
        m = self.config.modulus
        value = (a * x + b) % m
        verdict = "=" if value == c else "!="
        return f"x = {x} ; {a} * {x} = {a * x % m} ; {a * x % m} + {b} = {value} ; {value} {verdict} {c}"

    def random_problem(self, rng: random.Random) -> tuple[Problem, int, int, int, list[int]]:
        m, k = self.config.modulus, self.config.candidates
        a, b, root = rng.choice(self.units), rng.randrange(m), rng.randrange(m)
        c = (a * root + b) % m
        options = rng.sample([x for x in range(m) if x != root], k - 1) + [root]
        rng.shuffle(options)
        prompt = self.prompt(a, b, c, options)
        return Problem(id=prompt, prompt=prompt, answer=str(root)), a, b, c, options

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """Distinct problems of a split, drawn in a fixed order.

        Splits are disjoint by equation (a, b, c), not only by prompt: a test problem's
        equation never appears in training, whatever its candidates.
        """
        if split not in _SPLIT_BUCKETS:
            raise ValueError(f"unknown split {split!r}")
        return list(_draw(self.config, split, limit or 2000))

    def answer(self, response: str) -> str | None:
        """The guess of a complete solution (None for anything else, such as a cut-off one)."""
        match = _SOLUTION.fullmatch(response.strip())
        return match.group(1) if match else None

    def reward(self, problem: Problem, response: str) -> float:
        """1 for the right root with its check written right: the check is the working the
        next attempt reads, and a reward blind to it lets RL turn it into noise."""
        a, b, c = map(int, _PROMPT.match(problem.prompt).groups())
        return float(response.strip() == self.attempt(a, b, c, int(problem.answer)))

    def demonstration(self, rng: random.Random) -> tuple[str, list[str]]:
        """One base-model dialogue for pretraining: (prompt, [attempt 1, attempt 2]).

        The guess is uniform over the candidates (the base cannot solve), the check is
        always right (the base can verify), and attempt 2 copies attempt 1 with
        probability copy_prob (copy_prob_right when attempt 1 is right), else guesses
        afresh: no correction is ever shown, and right answers are dropped more often.
        """
        problem, a, b, c, options = self.random_problem(rng)
        while _split_of(f"{a} {b} {c}") != "train":
            problem, a, b, c, options = self.random_problem(rng)
        first = rng.choice(options)
        copy = self.config.copy_prob_right if first == int(problem.answer) else self.config.copy_prob
        second = first if rng.random() < copy else rng.choice(options)
        return problem.prompt, [self.attempt(a, b, c, first), self.attempt(a, b, c, second)]


@functools.lru_cache(maxsize=16)  # a suite's runs ask for the same splits (a split short of `want` costs seconds)
def _draw(config: ModRootConfig, split: str, want: int) -> tuple[Problem, ...]:
    task, rng = ModRootTask(config), random.Random(f"modroot-{split}")
    want = min(want, _split_size(config, split))
    seen: dict[str, Problem] = {}
    for _ in range(200 * want):
        problem, a, b, c, _ = task.random_problem(rng)
        if _split_of(f"{a} {b} {c}") == split:
            seen.setdefault(problem.id, problem)
            if len(seen) == want:
                break
    return tuple(seen.values())


@functools.cache
def _split_size(config: ModRootConfig, split: str) -> int:
    """Distinct problems of a split: its equations times the orderings of k candidates holding the root."""
    m, k = config.modulus, config.candidates
    equations = sum(_split_of(f"{a} {b} {c}") == split
                    for a in ModRootTask(config).units for b in range(m) for c in range(m))
    return equations * math.comb(m - 1, k - 1) * math.factorial(k)
