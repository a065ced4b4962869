"""Bad input: one line naming the field or file, exit code 2, nothing written. And the demo end to end."""

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selfcorrect.cli import main
from selfcorrect.config import from_dict, load_yaml, read_yaml
from selfcorrect.experiment import ExperimentConfig
from selfcorrect.recipe import Recipe, is_recipe
from selfcorrect.trainer import TrainConfig


@pytest.mark.parametrize("text, needle", [
    ("train:\n  lrr: 0.1\n", "train.lrr: unknown key"),
    ("train:\n  lr: fast\n", "train.lr: expected a number"),
    ("train:\n  lr: -1\n", "train.lr: must be > 0"),
    ("train:\n  samples_per_problem: 1\n", "train.samples_per_problem"),
    ("train:\n  sampling:\n    top_p: 2\n", "train.sampling.top_p"),
    ("methods: [naive, bogus]\n", "methods: unknown method 'bogus'"),
    ("methods: [naive, score, naive]\n", "methods: 'naive' is listed twice"),
    ("task:\n  candidates: 99\n", "task.candidates"),
    ("seeds: [1\n", "line"),
    ("device: gpu0\n", "device: 'gpu0' is not a device"),
    ("train:\n  micro_batch_tokens: -5\n", "train.micro_batch_tokens: must be >= 0"),
    ("methods: []\n", "methods: empty"),
    ("train:\n  lr: 1e-4x\n", "train.lr: expected a number"),
    ("task:\n  modulus: 2\n", "task.modulus: 2 leaves no"),
    ("train:\n  problems_per_step: 3000\n", "train.problems_per_step: 3000 is more than the 2000 training"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(cfg) in err
    assert not out.exists()


def test_a_config_that_is_not_utf8_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(b"\xff\xfe bad: 1\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert f"{cfg}: not UTF-8 text" in capsys.readouterr().err


def test_numbers_yaml_reads_as_strings_are_numbers():
    assert from_dict(TrainConfig, {"lr": "1e-4", "alpha": "2.5E+1"}).lr == 1e-4


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.yaml: cannot read config" in capsys.readouterr().err


def test_eval_without_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "best.pt: no such checkpoint" in capsys.readouterr().err


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"self_refine", "naive", "score"}
    for runs in results["results"].values():
        m = runs[0]
        assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
        assert m["n"] == 40
    assert (out / "training_curves.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "SCoRe (Stage I + II)" in report and "naive multi-turn RL" in report
    assert "SCoRe (Stage I + II)" in capsys.readouterr().out
    # second run reuses the cached base model
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_quick_train_resume_and_eval(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["train", "--quick", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert main(["train", "--resume", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert main(["eval", str(out), "--limit", "10", "--cache-dir", str(cache)]) == 0
    table = capsys.readouterr().out
    assert "Self-Refine" in table and "score (best)" in table


def test_a_run_folder_is_not_overwritten_and_damaged_files_are_named(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(["train", "--quick", *common]) == 0
    capsys.readouterr()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    other = tmp_path / "other.yaml"
    other.write_text("train:\n  steps: 4\n  stage1_steps: 2\n  problems_per_step: 4\n")
    for argv, needle in [(["train", "--config", str(other)], "holds a run; continue it with --resume"),
                         (["train", "--quick"], "holds a run"),
                         (["train", "--resume", "--config", str(other)], "--config: not with --resume")]:
        assert main([*argv, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # nothing rewritten
    # a kill mid-append leaves a torn last line in the log: resuming drops it
    (out / "metrics.jsonl").write_text((out / "metrics.jsonl").read_text() + '{"step": 7, "rew')
    assert main(["train", "--resume", *common]) == 0
    capsys.readouterr()
    assert all(json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines())
    assert (out / "config.yaml").read_bytes() == files["config.yaml"]  # a resume keeps the run's config
    (out / "best.pt").write_bytes(files["best.pt"][:100])  # truncated
    assert main(["eval", str(out), "--limit", "4", "--cache-dir", str(cache)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (after transformers' loading bar)
    assert last.startswith("selfcorrect: error: ") and f"{out / 'best.pt'}: not a readable checkpoint" in last


@pytest.mark.parametrize("argv, needle", [
    (["train", "--quick"], "exists and is not a folder"),
    (["compare", "--quick", "--methods", ""], "--methods: empty"),
    (["compare", "--quick", "--methods", "score,score"], "--methods: 'score' is listed twice"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    out = tmp_path / "file"
    out.write_text("mine")
    assert main([*argv, "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and out.read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_is_one_line_exit_2(tmp_path, capsys):
    assert main(["demo", "--quick", "--device", "cuda", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device: cuda is not available here" in err
    assert not (tmp_path / "o").exists()


def test_quick_compare_writes_plots_and_resumes_a_suite(tmp_path, capsys):
    out, cache = tmp_path / "cmp", tmp_path / "cache"
    args = ["compare", "--quick", "--methods", "star,pair_sft_plus", "--workers", "2", "--out", str(out), "--cache-dir", str(cache),
            "--no-progress"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"self_refine", "star", "pair_sft_plus"}
    assert (out / "comparison.png").stat().st_size > 0 and (out / "training_curves.png").stat().st_size > 0
    assert "STaR (D_STaR)" in (out / "report.md").read_text()
    # interrupted suite: one run finished, the other lost its result; rerunning redoes only that one
    finished = out / "runs" / "star-seed0" / "result.json"
    stamp = finished.stat().st_mtime_ns
    (out / "runs" / "pair_sft_plus-seed0" / "result.json").unlink()
    curve = out / "runs" / "pair_sft_plus-seed0" / "curve.jsonl"
    points = curve.read_text()
    curve.write_text("".join(points.splitlines(keepends=True)[:-1]))  # stopped before its last point
    assert main(args) == 0
    assert finished.stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["results"] == results["results"]
    assert curve.read_text() == points


def test_score_variants_share_stage_one_and_end_as_if_trained_alone(tmp_path):
    cache = tmp_path / "cache"
    run = lambda methods, out: main(["compare", "--quick", "--methods", methods, "--workers", "2", "--out",
                                     str(tmp_path / out), "--cache-dir", str(cache), "--no-progress"])
    assert run("score,no_shaping,score_star", "shared") == 0
    assert run("no_shaping", "alone") == 0 and run("score_star", "alone") == 0  # one method: nothing shared
    shared, alone = tmp_path / "shared" / "runs", tmp_path / "alone" / "runs"
    assert (shared / "stage1-shared-seed0" / "checkpoint.pt").exists() and not (alone / "stage1-shared-seed0").exists()
    strip = lambda path: [{k: v for k, v in json.loads(x).items() if "per_s" not in k and k != "seconds"
                           and not k.startswith("time_")} for x in path.read_text().splitlines()]
    for method in ("no_shaping", "score_star"):
        a, b = shared / f"{method}-seed0", alone / f"{method}-seed0"
        assert json.loads((a / "result.json").read_text())["metrics"] == json.loads((b / "result.json").read_text())["metrics"]
        assert strip(a / "metrics.jsonl") == strip(b / "metrics.jsonl")
        stages = [x["stage"] for x in strip(a / "metrics.jsonl")]
        assert stages[:3] == ["stage1"] * 3 and len(stages) == 6 and "stage1" not in stages[3:]
        weights = [torch.load(d / "best.pt", weights_only=False)["model"] for d in (a, b)]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    shutil.rmtree(shared / "stage1-shared-seed0")  # every variant has finished: nothing is trained again
    assert run("score,no_shaping,score_star", "shared") == 0 and not (shared / "stage1-shared-seed0").exists()


def test_demo_rejects_a_bad_device(tmp_path, capsys):
    assert main(["demo", "--quick", "--device", "gpu0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--device: 'gpu0' is not a device" in err and not (tmp_path / "o").exists()


def test_compare_rejects_unknown_methods(tmp_path, capsys):
    assert main(["compare", "--methods", "score,magic", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--methods: unknown method 'magic'" in err and not (tmp_path / "o").exists()
    # twice the same method would be two "seeds" of one run, or two processes training one folder
    assert main(["compare", "--methods", "naive,naive", "--out", str(tmp_path / "o")]) == 2
    assert "'naive' is listed twice" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value", [("--limit", "0"), ("--limit", "-1"), ("--attempts", "0"),
                                         ("--batch-size", "0"), ("--max-new-tokens", "0"),
                                         ("--temperature", "-0.5"), ("--attempts", "two")])
def test_eval_rejects_bad_numbers_before_any_work(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", str(tmp_path), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and flag in err[-1] and value in err[-1]


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("configs/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_yaml(Recipe if is_recipe(read_yaml(path)) else ExperimentConfig, path)
    if path.name == "demo.yaml":  # it documents the defaults, so it must equal them and name every key
        assert config == ExperimentConfig()

        def keys(data, where=""):
            return {k2 for k, v in data.items() for k2 in [where + k, *(keys(v, where + k + ".") if isinstance(v, dict) else ())]}
        assert keys(read_yaml(path)) == keys(dataclasses.asdict(ExperimentConfig()))


def test_a_partial_section_keeps_the_other_defaults_of_its_field():
    config = from_dict(ExperimentConfig, {"train": {"sampling": {"max_new_tokens": 64}}})
    assert config.train.sampling == dataclasses.replace(TrainConfig().sampling, max_new_tokens=64)
    assert config.train.sampling.top_p == 0.9  # the training default, not SamplingConfig's own 1.0


@pytest.mark.parametrize("text, args, needle", [
    ("math: {dataset: gsm8k}\n", [], "model: required key missing"),
    ("model: {dtype: bf16}\nmath: {dataset: gsm8k}\n", [], "model.name: required key missing"),
    ("model: {name: smollm2}\nmath: {dataset: gsm8k}\n", ["--quick"], "--quick: only for the embedded task"),
    ("model: {name: smollm2}\nmath: {dataset: gsm8k}\n", ["--cache-dir", "c"], "--cache-dir: only for the embedded"),
])
def test_bad_recipe_is_one_line_exit_2(tmp_path, capsys, text, args, needle):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert main(["train", "--config", str(cfg), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(cfg) in err
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--scaling", "1,2"], ["--attempts", "3"]])
def test_mbpp_r_refuses_options_it_cannot_use(tmp_path, capsys, flag):
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--task", "mbpp-r", *flag]) == 2
    assert flag[0] in capsys.readouterr().err


def test_compare_refuses_to_mix_runs_made_with_another_config(tmp_path, capsys):
    out, cache = tmp_path / "cmp", tmp_path / "cache"
    args = ["--quick", "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(["compare", "--methods", "naive,score,no_shaping", *args]) == 0
    (out / "runs" / "naive-seed0" / "result.json").unlink()  # as if interrupted: naive unfinished
    other = tmp_path / "other.yaml"  # the quick config on another task
    other.write_text("task:\n  copy_prob: 0.5\nmodel:\n  hidden_size: 32\n  layers: 2\n  intermediate_size: 64\n"
                     "  pretrain_steps: 40\n  batch_size: 32\ntrain:\n  steps: 6\n  stage1_steps: 3\n"
                     "  problems_per_step: 4\n  samples_per_problem: 2\n  checkpoint_every: 3\n  star_round_steps: 3\n"
                     "test_problems: 40\nval_problems: 20\n")
    # a finished run, an unfinished one, and the finished shared Stage I (stage1_only would continue from it)
    for methods in ("score", "naive", "stage1_only,score"):
        assert main(["compare", "--config", str(other), "--methods", methods, *args[1:]]) == 2
        assert "made with another config" in capsys.readouterr().err


_ORPHAN = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from selfcorrect.experiment import _die_with_parent
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent,
                               initargs=(__import__("os").getpid(),))
    print(pool.submit(__import__("os").getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_suite_workers_die_with_a_killed_suite(tmp_path):
    script = tmp_path / "suite.py"
    script.write_text(_ORPHAN)
    suite = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(suite.stdout.readline())
    suite.terminate()  # SIGTERM: no Python clean-up runs in the suite's process
    suite.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker)


def test_a_worker_whose_suite_died_before_it_started_exits():
    # the suite can die while a spawned worker still imports torch, before the worker asks to be signalled
    code = "from selfcorrect.experiment import _die_with_parent; _die_with_parent(1); print('alive')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "alive" not in done.stdout and "Traceback" not in done.stderr


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_compare_runs_the_methods_a_config_names_unless_a_flag_says_otherwise(tmp_path):
    from selfcorrect.cli import _experiment, build_parser
    from selfcorrect.experiment import SUITES

    named, unnamed = tmp_path / "named.yaml", tmp_path / "unnamed.yaml"
    named.write_text("methods: [score]\n")
    unnamed.write_text("seeds: 2\n")
    methods = lambda *argv: _experiment(build_parser().parse_args(["compare", *argv])).methods
    assert methods("--config", str(named)) == ("score",)
    assert methods("--config", str(named), "--suite", "demo") == SUITES["demo"]
    assert methods("--config", str(named), "--methods", "naive") == ("naive",)
    assert methods("--config", str(unnamed)) == methods() == SUITES["paper"]


def test_a_failing_compare_run_stops_the_others_at_once(tmp_path, capsys):
    out, cache = tmp_path / "cmp", tmp_path / "cache"
    args = ["--out", str(out), "--cache-dir", str(cache), "--no-progress", "--workers", "2"]
    assert main(["compare", "--quick", "--methods", "naive", *args]) == 0
    (out / "runs" / "naive-seed0" / "result.json").unlink()  # unfinished, so it is resumed, and refused below
    long = tmp_path / "long.yaml"  # the quick config on another task, with a run that would take minutes
    long.write_text("task:\n  copy_prob: 0.5\nmodel:\n  hidden_size: 32\n  layers: 2\n  intermediate_size: 64\n"
                    "  pretrain_steps: 40\n  batch_size: 32\ntrain:\n  steps: 5000\n  problems_per_step: 4\n"
                    "  samples_per_problem: 2\n  checkpoint_every: 5000\ntest_problems: 40\nval_problems: 20\n")
    assert main(["compare", "--config", str(long), "--methods", "naive,single_turn", *args]) == 2
    assert "made with another config" in capsys.readouterr().err
    assert not (out / "runs" / "single_turn-seed0" / "result.json").exists()  # stopped, not waited for


def test_compare_starts_the_longest_runs_first(tmp_path, capsys):
    # single-turn RL samples one attempt a step, naive RL two: listed first, it still starts second
    assert main(["compare", "--quick", "--methods", "single_turn,naive", "--workers", "1", "--out", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("naive multi-turn RL seed 0") < out.index("single-turn RL seed 0")


def test_suite_runs_compute_on_one_thread_whatever_the_workers(tmp_path, monkeypatch):
    # torch's float rounding depends on its thread count (the pretraining test in test_task.py
    # shows it): a run in the suite's own process (--workers 1) computes on one thread, as in a worker
    import selfcorrect.experiment as experiment

    seen, real = [], experiment.train
    monkeypatch.setattr(experiment, "train", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["compare", "--quick", "--methods", "naive", "--workers", "1", "--out", str(tmp_path / "o"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_no_progress_hides_the_bars_of_transformers_too(tmp_path, capfd):
    # (loading and writing weights: in this process, and in the suite's workers, whose bars interleave)
    assert main(["demo", "--quick", "--workers", "2", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    err = capfd.readouterr().err
    assert "%|" not in err and "it/s]" not in err


_LONG_RUN = """model: {hidden_size: 32, layers: 2, intermediate_size: 64, pretrain_steps: 20, batch_size: 16}
train: {steps: 10000, stage1_steps: 5000, problems_per_step: 2, samples_per_problem: 2, checkpoint_every: 2}
"""


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path):
    config, out = tmp_path / "c.yaml", tmp_path / "run"
    config.write_text(_LONG_RUN)
    run = subprocess.Popen([sys.executable, "-m", "selfcorrect", "train", "--config", str(config), "--out", str(out),
                            "--cache-dir", str(tmp_path / "cache"), "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "checkpoint.pt").exists():
        time.sleep(0.1)
    try:
        run.terminate()
        err = run.communicate(timeout=60)[1]
    finally:
        run.kill()  # (a no-op when it stopped; else the 10,000-step run would go on)
    assert run.returncode == 143 and "Traceback" not in err
    assert "terminated; `selfcorrect train --resume` continues from the last checkpoint" in err


def test_the_package_exports_the_api_not_its_modules():
    import selfcorrect
    import selfcorrect.experiment  # noqa: F401  (imports the submodules named like the functions)
    from selfcorrect import evaluate, rollout, train

    assert all(callable(f) and not isinstance(f, type(selfcorrect)) for f in (evaluate, rollout, train))
    assert all(not isinstance(getattr(selfcorrect, name), type(selfcorrect)) for name in selfcorrect.__all__)
