"""Real math: MATH (MATH500 test) and GSM8K, graded by the final answer with math-verify.

    prompt:    <the paper's MATH prompt>\\n\\nProblem:\\n<problem>\\n\\nSolution:
    response:  ... Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.
    reward:    1.0 iff the extracted "\\frac{1}{2}" is equivalent to the gold answer

Only the extracted final answer is graded, never the whole response: math-verify run
over a whole response picks up expressions restated from the question and rewards
wrong answers. Equivalence checks run in a separate worker
process that is killed when a check overruns its timeout (see `grade`), so a
pathological answer costs a timeout, never a stalled or crashed trainer.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import inspect
import json
import os
import queue
import re
import select
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

from ..config import check
from ..errors import SelfCorrectError
from .base import Problem
from .math_data import Record, load_records, split_records

# Paper, Appendix C, verbatim.
MATH_PROMPT = (
    "You are a math expert. When you respond, respond only with the Solution of the final Problem, "
    "thinking step by step. At the end of the Solution, when you give your final answer, write it in "
    'the form "Final Answer: The final answer is $answer$. I hope it is correct."'
)
INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final solution! At the "
    "end of the Solution, when you give your final answer, write it in the form \"Final Answer: The final "
    'answer is $answer$. I hope it is correct."'
)
# The paper's few-shot MATH prompts lay problems out as "Problem:" / "Solution:" blocks.
PROMPT_TEMPLATE = MATH_PROMPT + "\n\nProblem:\n{problem}\n\nSolution:"

DEFAULT_TIMEOUT = 5.0  # seconds per equivalence check
MAX_ANSWER_CHARS = 500  # the longest gold answer in MATH is 159 characters


# ---------------------------------------------------------------- answer extraction

_VERDICT = r"(?!\s*(?:correct|right|wrong|incorrect|not)\b)"  # "the final answer is correct" is prose
_FINAL = re.compile(r"\bfinal answer\s*(?:is|:)" + _VERDICT, re.IGNORECASE)  # the paper's "The final answer is"
_ANSWER = re.compile(r"\banswer\s*(?:is|:)" + _VERDICT, re.IGNORECASE)  # weaker: a marker only when no other is
_HOPE = re.compile(r"I hope it is correct", re.IGNORECASE)
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$((?:\\\$|[^$\n])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
# GSM8K's "#### 18", not a markdown heading ("#### Check", "#### 1. Check")
_HASHES = re.compile(r"####[ \t]*(?=[-−+$*\\\d.(])(?!\d+\.\s+[A-Za-z])([^\n]*)")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|[\s,;:—–-]*\s(?:since|because)\s")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _last_boxed(text: str) -> tuple[int, str | None]:
    """Position and content of the last \\boxed{...} (or \\fbox{...}), braces matched."""
    boxes = list(_BOXED.finditer(text))
    if not boxes:
        return -1, None
    start, i = boxes[-1].start(), boxes[-1].end()
    if not text.startswith("{", i):  # "\boxed 5"
        word = re.match(r"[^\s$]+", text[i:])
        return start, word.group() if word else None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return start, text[i + 1:j]
    return start, None  # unbalanced: a response cut off inside the box


def _after_anchor(text: str) -> str:
    """The answer stated right after "answer is" (on its line or the next): its first math
    span, else its sentence up to a reason ("12, since ...")."""
    text = _HOPE.split(text.lstrip(" *:\t\r\n"))[0]
    span = _MATH_SPAN.match(text)
    if span:
        return next(g for g in span.groups() if g is not None)
    # No closed $...$: a lone "$" is a currency sign ("The answer is $18.").
    return _SENTENCE_END.split(text.split("\n")[0])[0]


def _last_anchor(pattern: re.Pattern, text: str) -> tuple[int, str | None]:
    anchors = list(pattern.finditer(text))
    return (anchors[-1].start(), _after_anchor(text[anchors[-1].end():])) if anchors else (-1, None)


def extract_answer(response: str) -> str | None:
    """The final answer a response states, as written (None when it states none).

    The last of these markers wins: "final answer is ..." / "Final Answer: ..." (the
    paper's format), \\boxed{X}, and GSM8K's "#### X". Without them, "answer is ..." /
    "Answer: ..."; without that either, the last number: the usual GSM8K fallback, so a
    weak model that computes the right number but ignores the format still gets
    credit, while a number restated from the question counts only when the response
    ends on it.
    """
    hashes = list(_HASHES.finditer(response))
    markers = [_last_anchor(_FINAL, response), _last_boxed(response),
               (hashes[-1].start(), hashes[-1].group(1)) if hashes else (-1, None)]
    at, answer = max(markers, key=lambda m: m[0])
    if at < 0:
        at, answer = _last_anchor(_ANSWER, response)
    if at < 0:
        numbers = _NUMBER.findall(response)
        return numbers[-1].rstrip(",") if numbers else None
    if answer is None:  # a marker, but cut off inside its \\boxed{
        return None
    inner = _last_boxed(answer)[1]  # "The final answer is $\\boxed{5}$"
    answer = (inner if inner is not None else answer).strip()
    return answer or None


# ---------------------------------------------------------------- normalisation

_SPACING = re.compile(r"(?<!\\)\\[,;: ]|~")  # LaTeX thin/medium spaces, not the "\\" of a matrix
_NEGATIVE_SPACE = re.compile(r"\s*(?<!\\)\\!\s*")  # "11,\\! 111": joins, the comma stays a thousands one
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACE = re.compile(r"\s+")
_SPACE_NEXT_TO_NON_LETTER = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")  # keeps "\pi r"
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_MIXED = re.compile(r"(?<![\d.,/])(-?)(\d+) (\d+/\d+)(?![\d/])")  # "-2 1/2" is -(2+1/2), not -21/2
# "5 dollars": a number followed by plain words (math-verify reads "dollars" as a product
# of symbols); words that are maths themselves keep the answer as it is.
_PLAIN_UNITS = re.compile(r"(-?(?:\(\d+\+\d+/\d+\)|\d[\d,]*(?:\.\d+)?(?:/\d+)?)) ((?:[A-Za-z]{2,} ?)+)")
_MATH_WORDS = {"pi", "sqrt", "times", "over", "plus", "minus", "mod", "and", "or", "to",
               "dozen", "hundred", "thousand", "million", "billion", "trillion"}  # scale words are not units


def normalise(answer: str) -> str:
    """A presentation-free form: equal forms are equal answers (unequal forms may be too)."""
    s = _LEFT_RIGHT.sub("", _SPACING.sub(" ", _NEGATIVE_SPACE.sub("", answer)))
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "").replace("$", "")
    s = _SPACE.sub(" ", s).strip(" *").rstrip(".").strip(" *")  # "*": markdown bold, "**18**."
    s = _MIXED.sub(r"\1(\2+\3)", s)
    units = _PLAIN_UNITS.fullmatch(s)
    if units and not _MATH_WORDS & set(units.group(2).lower().split()):
        s = units.group(1)
    # ", " separates a list's items, and stays, so that math-verify reads "81, 256" as a list, not as 81256
    items = [_SPACE_NEXT_TO_NON_LETTER.sub("", item) for item in s.split(", ")]
    if len(items) == 1 and _THOUSANDS.fullmatch(items[0]):
        return items[0].replace(",", "")
    return ", ".join(items)


# ---------------------------------------------------------------- grading worker


def _serve() -> None:
    """Worker loop: one JSON [answer, gold, timeout] per stdin line, "1"/"0" per stdout line.

    Runs as `python -c <this function's source>` so the worker imports math-verify and
    sympy only (not selfcorrect, torch). math-verify's own SIGALRM timeouts are off:
    this loop sets one timer for the whole check, which the parent backs with a kill
    for hangs that a signal cannot interrupt (big-integer arithmetic in C).
    """
    import functools
    import json
    import logging
    import signal
    import sys

    from math_verify import parse, verify

    logging.disable(logging.CRITICAL)

    class Timeout(BaseException):  # BaseException: math-verify swallows Exception
        pass

    def on_alarm(signum, frame):
        raise Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    # Replies go to the real stdout only; anything a library prints goes to stderr (discarded),
    # so it can never be read as a verdict.
    replies, sys.stdout = sys.stdout, sys.stderr

    def read(latex):
        return parse("\\boxed{" + latex + "}", parsing_timeout=None)

    read_gold = functools.lru_cache(maxsize=4096)(read)  # golds repeat: n samples per problem
    print("ready", file=replies, flush=True)
    for line in iter(sys.stdin.readline, ""):
        answer, gold, timeout = json.loads(line)
        ok = False
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            ok = bool(verify(read_gold(gold), read(answer), timeout_seconds=None))
        except (Exception, Timeout):
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        print(int(ok), file=replies, flush=True)


class _Worker:
    """One grading process, used by one thread at a time (the pool hands it out)."""

    START_TIMEOUT = 120.0  # importing sympy on a busy 2-core machine
    KILL_GRACE = 1.0  # after the worker's own timer, before the parent kills it

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._pid = None  # the process that started the worker: a fork must start its own
        atexit.register(self.stop)

    def _start(self) -> None:
        if importlib.util.find_spec("math_verify") is None:
            raise SelfCorrectError("math grading needs math-verify: pip install 'math-verify[antlr4_13_2]'")
        code = textwrap.dedent(inspect.getsource(_serve)) + "\n_serve()\n"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)
        self._pid = os.getpid()
        if self._read_line(self.START_TIMEOUT) != "ready":
            self.stop()
            raise SelfCorrectError("math grading worker did not start (is math-verify importable?)")

    def _read_line(self, timeout: float) -> str:
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        return self._proc.stdout.readline().strip() if ready else ""

    def stop(self) -> None:
        if self._proc is not None and self._pid == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def check(self, answer: str, gold: str, timeout: float) -> bool:
        if self._proc is None or self._pid != os.getpid() or self._proc.poll() is not None:
            self._start()
        try:
            self._proc.stdin.write(json.dumps([answer, gold, timeout]) + "\n")
            self._proc.stdin.flush()
            reply = self._read_line(timeout + self.KILL_GRACE)
        except OSError:  # the worker died mid-call
            reply = ""
        if reply not in ("0", "1"):
            self.stop()  # hung or crashed: the next call starts a fresh worker
        return reply == "1"


class _Pool:
    """Workers for concurrent callers; each starts on first use, so one thread starts one."""

    def __init__(self, size: int):
        self.size = size
        self._free: queue.LifoQueue[_Worker] = queue.LifoQueue()  # LIFO: a lone caller reuses one worker
        for _ in range(size):
            self._free.put(_Worker())

    def check(self, answer: str, gold: str, timeout: float) -> bool:
        worker = self._free.get()
        try:
            return worker.check(answer, gold, timeout)
        finally:
            self._free.put(worker)


_POOL = _Pool(min(8, os.cpu_count() or 1))


@functools.lru_cache(maxsize=65536)  # attempt 2 often repeats attempt 1's answer
def _equivalent(answer: str, gold: str, timeout: float) -> bool:
    return _POOL.check(answer, gold, timeout)


_BASE = re.compile(r"_\{?(\d+)\}?$")  # "52_8": math-verify drops the base


def grade(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the response's final answer (see `extract_answer`) is equivalent to `gold`.

    Identical normalised strings are right without a check; otherwise math-verify decides
    (parse + verify of both, each read as the content of a \\boxed{}) in the worker
    process. A check that takes longer than `timeout` seconds, or crashes, counts as
    wrong. Safe from any thread (concurrent calls use separate workers) and in forked
    children.
    """
    answer = extract_answer(response)
    if answer is None:
        return False
    answer, gold = normalise(answer), normalise(gold)
    return bool(answer) and _same_value(answer, gold, timeout)


def _same_value(answer: str, gold: str, timeout: float) -> bool:
    """Two normalised answers: identical, or equal by math-verify (an overlong answer: identical only)."""
    if answer == gold:
        return True
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    bases = _BASE.search(answer), _BASE.search(gold)
    if all(bases) and bases[0].group(1) != bases[1].group(1):
        return False
    return _equivalent(answer, gold, timeout)


def grade_many(responses: Sequence[str], golds: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> list[bool]:
    """`grade` over pairs, checked in parallel by up to min(8, CPU count) workers."""
    with ThreadPoolExecutor(_POOL.size) as pool:
        return list(pool.map(grade, responses, golds, [timeout] * len(responses)))


# ---------------------------------------------------------------- the task


@dataclass(frozen=True)
class MathTaskConfig:
    """Which problems, how to read them, and the prompts.

    `dataset: custom` reads local JSONL/JSON files (`train_path`, `test_path`); the field
    names default to the dataset's own (math: problem/answer/unique_id; gsm8k:
    question/answer, gold after "####"; custom: problem/answer, no id field).
    `extract_gold` reads the gold answer out of a solution text (its "####", \\boxed{}
    or "answer is"), for files that have no separate answer field.
    """

    dataset: Literal["math", "gsm8k", "custom"] = "math"
    train_path: str | None = None
    test_path: str | None = None
    problem_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    extract_gold: bool | None = None
    val_fraction: float = 0.05  # of train, chosen by a hash of the problem text
    prompt_template: str = PROMPT_TEMPLATE
    instruction: str = INSTRUCTION
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self):
        custom = self.dataset == "custom"
        check(custom or self.train_path is None, "train_path", "only with dataset: custom")
        check(custom or self.test_path is None, "test_path", "only with dataset: custom")
        check(not custom or bool(self.train_path or self.test_path), "dataset",
              "custom needs train_path or test_path")
        check("{problem}" in self.prompt_template, "prompt_template", "must contain {problem}")
        check(bool(self.instruction.strip()), "instruction", "must not be empty")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        check(self.timeout > 0, "timeout", "must be positive")


_DATASET_FIELDS = {  # problem, answer, id, extract_gold
    "math": ("problem", "answer", "unique_id", False),
    "gsm8k": ("question", "answer", None, True),
    "custom": ("problem", "answer", None, False),
}


class MathTask:
    """The Task protocol over MATH, GSM8K or local files; reward by `grade`."""

    def __init__(self, config: MathTaskConfig | None = None):
        self.config = config or MathTaskConfig()
        self.name = self.config.dataset
        self.instruction = self.config.instruction
        self._records: dict[str, list[Record]] = {}

    def _load(self, split: str) -> list[Record]:
        if split not in self._records:
            c = self.config
            problem, answer, id_, extract = _DATASET_FIELDS[c.dataset]
            path = {"train": c.train_path, "test": c.test_path}[split]
            if c.dataset == "custom" and path is None:
                raise SelfCorrectError(f"{split}_path: no file for the {split} split of dataset: custom")
            self._records[split] = load_records(
                c.dataset, split, path,
                problem_field=c.problem_field or problem,
                answer_field=c.answer_field or answer,
                id_field=c.id_field or id_,
                gold=extract_answer if (extract if c.extract_gold is None else c.extract_gold) else None,
            )
        return self._records[split]

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        """Problems in file order; "val" is a fixed share of train (never of test)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}")
        if split == "test":
            records = self._load("test")
        else:
            records = split_records(self._load("train"), self.config.val_fraction)[split]
        template = self.config.prompt_template
        # str.replace, not str.format: problems and templates are full of LaTeX braces.
        return [Problem(id=r.id, prompt=template.replace("{problem}", r.problem), answer=r.answer)
                for r in records[:limit]]

    def answer(self, response: str) -> str | None:
        answer = extract_answer(response)
        return (normalise(answer) or None) if answer is not None else None

    def answers_agree(self, a: str, b: str) -> bool:
        """Whether two stated answers (as `answer` gives them) are one value ("0.5" and
        "\\frac{1}{2}"): majority voting counts them together."""
        if a == b:
            return True
        if _PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(b):  # most answers: no math-verify call
            return float(a) == float(b)
        # either way round: math-verify reads its first argument as the gold, more leniently
        return max(len(a), len(b)) <= MAX_ANSWER_CHARS and (
            _same_value(a, b, self.config.timeout) or _same_value(b, a, self.config.timeout))

    def reward(self, problem: Problem, response: str) -> float:
        return float(grade(response, problem.answer, self.config.timeout))

    def rewards(self, problems: Sequence[Problem], responses: Sequence[str]) -> list[float]:
        """Rewards of a batch, the equivalence checks spread over the grading workers."""
        verdicts = grade_many(responses, [p.answer for p in problems], self.config.timeout)
        return [float(v) for v in verdicts]
