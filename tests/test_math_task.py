import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from selfcorrect.errors import SelfCorrectError
from selfcorrect.evaluate import _vote
from selfcorrect.tasks import math as mt
from selfcorrect.tasks.math import MathTask, MathTaskConfig, extract_answer, grade, grade_many

# The curated cases live in the report script, so docs/verifier.md and these tests agree.
_spec = importlib.util.spec_from_file_location("verifier_report", Path(__file__).parent.parent / "scripts" / "verifier_report.py")
report = sys.modules["verifier_report"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.note, marks=[pytest.mark.xfail(reason="known limitation, docs/verifier.md")] if c.limitation else [])
    for c in report.CASES
])
def test_curated_case(case):
    assert grade(case.response, case.gold) == case.expected


@pytest.mark.parametrize("response, answer", [
    ("so x = 2.\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
    ("The final answer is $$x^2$$", "x^2"),
    ("Answer: \\(\\sqrt{2}\\)", "\\sqrt{2}"),
    ("hence \\boxed{\\frac{\\sqrt{3}}{\\sqrt{4}}} and done", "\\frac{\\sqrt{3}}{\\sqrt{4}}"),
    ("so \\boxed 7 it is", "7"),
    ("$<<9*2=18>>18 every day.\n#### 18", "18"),
    ("The answer is $18.", "$18"),
    ("16 - 3 - 4 = 9, 9 * 2 = 18", "18"),
    ("cut off: \\boxed{\\frac{1}{2", None),
    ("no numbers here", None),
])
def test_extract_answer(response, answer):
    assert extract_answer(response) == answer


def test_answer_is_normalised():
    task = MathTask()
    assert task.answer("The final answer is $\\left( 1,\\! 2 \\right)$.") == "(1,2)"
    assert task.answer("The final answer is $11,\\! 111,\\! 100$.") == "11111100"  # "\\!" joins
    assert task.answer("The final answer is $81, 256$.") == "81, 256"  # a list keeps its ", "
    assert task.answer("The final answer is **-2 1/2**.") == "-(2+1/2)"
    assert task.answer("The answer is $.") is None
    assert task.answer("#### 1,200") == "1200"
    assert task.answer("nothing") is None


def test_majority_vote_counts_one_value_written_two_ways_once():
    task = MathTask()
    assert task.answers_agree("0.5", "\\frac{1}{2}") and task.answers_agree("x^2", "x^2")
    assert not task.answers_agree("2", "3") and not task.answers_agree("(1,2)", "(2,1)")
    # math-verify is lenient with its first argument (the gold): the vote must not depend on order
    assert task.answers_agree("x<0", "(-\\infty,0)") and task.answers_agree("(-\\infty,0)", "x<0")
    answers, rewards = ["3", "0.5", "\\frac{1}{2}", None], [0.0, 1.0, 1.0, 0.0]
    assert _vote(answers, rewards) == 0.0  # as strings: a three-way tie, which "3" wins
    assert _vote(answers, rewards, task.answers_agree) == 1.0
    # a class is scored by its members' rewards, not its first member's: agreeing is looser than grading
    assert _vote(["x<0", "(-\\infty,0)", "(-\\infty,0)"], [0.0, 1.0, 1.0], task.answers_agree) == 1.0


def test_a_check_that_overruns_its_timeout_is_wrong_and_the_next_one_works():
    start = time.monotonic()
    assert grade("\\boxed{9^{9^{9}}}", "1", timeout=0.3) is False  # sympy builds a 370-million-digit integer
    assert time.monotonic() - start < 10
    assert grade("\\boxed{0.5}", "\\frac{1}{2}") is True


def _serve():  # a worker that never answers a check, like one stuck in C arithmetic
    import sys
    import time

    print("ready", flush=True)
    sys.stdin.readline()
    time.sleep(600)


def test_a_hung_worker_is_killed_and_the_check_counts_as_wrong(monkeypatch):
    monkeypatch.setattr(mt, "_serve", _serve)
    worker = mt._Worker()
    worker.check("1", "1", 0.2)  # the first check also pays for starting the worker
    start = time.monotonic()
    assert worker.check("1", "1", 0.2) is False
    assert time.monotonic() - start < 0.2 + worker.KILL_GRACE + 2
    assert worker._proc is None  # killed; the next check starts a fresh one


def test_grade_works_from_other_threads():
    results = {}

    def run(i):
        results[i] = grade(f"The final answer is $\\dfrac{{{i}}}{{2}}$.", str(i / 2))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {1: True, 2: True, 3: True, 4: True}


def test_grade_many_matches_grade():
    responses = ["\\boxed{0.25}", "\\boxed{3}", "#### 7", "nothing"]
    golds = ["\\frac14", "4", "7", "1"]
    assert grade_many(responses, golds) == [grade(r, g) for r, g in zip(responses, golds)] == [True, False, True, False]


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def math_task():
    return MathTask()


@pytest.fixture(scope="module")
def gsm8k_task():
    return MathTask(MathTaskConfig(dataset="gsm8k"))


def test_shipped_split_sizes(math_task, gsm8k_task):
    assert len(math_task.problems("test")) == 500
    assert len(math_task.problems("train")) + len(math_task.problems("val")) == 11_998  # 12,000 less 2 unboxed
    assert len(gsm8k_task.problems("test")) == 1319
    assert len(gsm8k_task.problems("train")) + len(gsm8k_task.problems("val")) == 7473
    assert 0.03 < len(gsm8k_task.problems("val")) / 7473 < 0.07


def test_val_is_carved_from_train_deterministically(math_task):
    train, val, test = (math_task.problems(s) for s in ("train", "val", "test"))
    assert not {p.id for p in val} & {p.id for p in train}
    assert not {p.prompt for p in val} & {p.prompt for p in test}
    assert MathTask().problems("val", 20) == val[:20]


def test_prompts_and_gold_answers(math_task, gsm8k_task):
    p = math_task.problems("test", 1)[0]
    assert p.id == "test/precalculus/807.json" and p.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert p.prompt.startswith(mt.MATH_PROMPT + "\n\nProblem:\nConvert the point $(0,3)$")
    assert p.prompt.endswith("\n\nSolution:")
    g = gsm8k_task.problems("test", 1)[0]
    assert g.answer == "18" and g.id == "gsm8k/test/1"
    assert math_task.reward(p, "Final Answer: The final answer is $(3, \\pi/2)$. I hope it is correct.") == 1.0
    assert gsm8k_task.reward(g, "The final answer is $\\$19$.") == 0.0
    assert math_task.instruction == mt.INSTRUCTION and math_task.instruction.startswith("There might be an error")


def test_custom_files_with_a_field_mapping(tmp_path):
    rows = [{"q": "1+1?", "sol": "1+1=2\n#### 2", "key": "a"}, {"q": "2+2?", "sol": "so \\boxed{4}", "key": "b"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "test.json").write_text(json.dumps(rows))
    config = MathTaskConfig(dataset="custom", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "test.json"),
                            problem_field="q", answer_field="sol", id_field="key", extract_gold=True,
                            val_fraction=0.0, prompt_template="Q: {problem}\nA:")
    task = MathTask(config)
    test = task.problems("test")
    assert [(p.id, p.prompt, p.answer) for p in test] == [("a", "Q: 1+1?\nA:", "2"), ("b", "Q: 2+2?\nA:", "4")]
    assert task.problems("train") == test and task.problems("val") == []
    plain = MathTask(MathTaskConfig(dataset="custom", test_path=str(tmp_path / "test.json"),
                                    problem_field="q", answer_field="key"))
    assert [(p.id, p.answer) for p in plain.problems("test")] == [("test.json:1", "a"), ("test.json:2", "b")]


def _custom(path, **kw):
    return MathTask(MathTaskConfig(dataset="custom", test_path=str(path), **kw)).problems("test")


def test_bad_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n')
    with pytest.raises(SelfCorrectError, match=r"bad.jsonl: line 2: no field 'answer'"):
        _custom(bad)
    bad.write_text('{"problem": "a", "answer": "1"}\n{"problem": \n')
    with pytest.raises(SelfCorrectError, match=r"bad.jsonl: line 2: invalid JSON"):
        _custom(bad)
    bad.write_text('{"problem": "a", "answer": "no final answer here"}\n')
    with pytest.raises(SelfCorrectError, match=r"bad.jsonl: line 1: no final answer in field 'answer'"):
        _custom(bad, extract_gold=True)
    with pytest.raises(SelfCorrectError, match=r"missing.jsonl: cannot read"):
        _custom(tmp_path / "missing.jsonl")
    with pytest.raises(SelfCorrectError, match=r"train_path: no file for the train split"):
        MathTask(MathTaskConfig(dataset="custom", test_path=str(bad))).problems("train")


@pytest.mark.parametrize("fields, message", [
    ({"prompt_template": "Solve it."}, r"prompt_template: must contain \{problem\}"),
    ({"train_path": "x.jsonl"}, r"train_path: only with dataset: custom"),
    ({"dataset": "custom"}, r"dataset: custom needs train_path or test_path"),
    ({"val_fraction": 1.5}, r"val_fraction: must be in \[0, 1\)"),
    ({"timeout": 0}, r"timeout: must be positive"),
])
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(SelfCorrectError, match=message):
        MathTaskConfig(**fields)
