"""Trainer: exact resume after a crash, metrics log, best checkpoint."""

import copy
import json
from dataclasses import asdict, replace

import pytest
import torch

from selfcorrect.errors import SelfCorrectError
from selfcorrect.rollout import SamplingConfig
from selfcorrect.trainer import TrainConfig, continues, load_weights, stages, train

CONFIG = TrainConfig(method="score", steps=4, stage1_steps=2, problems_per_step=3, samples_per_problem=2,
                     micro_batch=4, checkpoint_every=2, sampling=SamplingConfig(max_new_tokens=8), lr=1e-3)


class Crash(Exception):
    pass


@pytest.fixture(scope="session")
def task(task):
    """The embedded task with a reward a random model earns half the time, so gradients are non-zero."""
    parity = copy.copy(task)
    parity.reward = lambda problem, response: float(len(response.split()) % 2 == 0)
    return parity


def test_resume_after_crash_matches_uninterrupted_run(tiny_model, dialogue, task, tmp_path):
    straight = train(copy.deepcopy(tiny_model), dialogue, task, CONFIG, tmp_path / "a", progress=False)

    def crash(step, model):
        if step == 2:
            raise Crash

    with pytest.raises(Crash):
        train(copy.deepcopy(tiny_model), dialogue, task, CONFIG, tmp_path / "b", on_checkpoint=crash, progress=False)
    resumed = train(copy.deepcopy(tiny_model), dialogue, task, CONFIG, tmp_path / "b", resume=True, progress=False)

    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    strip = lambda line: {k: v for k, v in json.loads(line).items() if "per_s" not in k and k != "seconds" and not k.startswith("time_")}
    log_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [strip(x) for x in log_a] == [strip(x) for x in log_b]
    assert [json.loads(x)["stage"] for x in log_a] == ["stage1", "stage1", "stage2", "stage2"]
    # the model really changed
    assert any(not torch.equal(a, b) for a, b in zip(tiny_model.state_dict().values(),
                                                     straight.state_dict().values()))


def test_metrics_and_best_checkpoint(tiny_model, dialogue, task, tmp_path):
    train(copy.deepcopy(tiny_model), dialogue, task, CONFIG, tmp_path, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("reward_t1", "reward_t2", "delta", "kl_t1", "kl_t2", "edit_ratio", "identical", "same_answer", "tokens_per_s"):
        assert key in rows[0]
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["step"] in (2, 4)
    load_weights(copy.deepcopy(tiny_model), tmp_path / "best.pt")


def test_resume_refuses_a_different_config(tiny_model, dialogue, task, tmp_path):
    train(copy.deepcopy(tiny_model), dialogue, task, CONFIG, tmp_path, progress=False)
    other = TrainConfig(**{**CONFIG.__dict__, "lr": 5e-4})
    with pytest.raises(SelfCorrectError, match="made with another config"):
        train(copy.deepcopy(tiny_model), dialogue, task, other, tmp_path, resume=True, progress=False)


def test_a_run_continues_only_from_a_checkpoint_of_its_own_first_steps():
    stage_one = asdict(replace(CONFIG, method="stage1_only", steps=2))  # SCoRe's Stage I on its own
    assert continues(stage_one, CONFIG, 2) and continues(stage_one, replace(CONFIG, method="score_star"), 2)
    assert not continues(stage_one, replace(CONFIG, method="naive"), 2)  # another first stage
    assert not continues(stage_one, replace(CONFIG, method="no_stage1"), 2)
    assert not continues(asdict(replace(CONFIG, method="stage1_only", steps=4)), CONFIG, 3)  # past Stage I
    assert not continues({**stage_one, "lr": 1.0}, CONFIG, 2)
    every3 = replace(CONFIG, checkpoint_every=3)  # Stage I ends at step 2, between two regular checkpoints
    stage_one = asdict(replace(every3, method="stage1_only", steps=2))
    assert continues(stage_one, every3, 2)  # SCoRe checkpoints at the end of Stage I too
    assert not continues(stage_one, replace(every3, method="stage1_only"), 2)  # one long stage: not at step 2


def test_checkpoints_also_end_each_stage(tiny_model, dialogue, task, tmp_path):
    steps = []
    train(copy.deepcopy(tiny_model), dialogue, task, replace(CONFIG, checkpoint_every=3), tmp_path,
          on_checkpoint=lambda step, model: steps.append(step), progress=False)
    assert steps == [2, 3, 4]  # end of Stage I, every 3 steps, end of the run


def test_every_method_spends_the_same_steps():
    for method in ("score", "naive", "single_turn", "no_stage1", "no_shaping", "stage1_only", "score_star",
                   "star", "star_plus", "pair_sft", "pair_sft_plus"):
        cfg = TrainConfig(method=method, steps=10, stage1_steps=4, attempts=1 if method == "single_turn" else 2)
        assert sum(n for _, n in stages(cfg)) == 10
    assert [o.name for o, _ in stages(TrainConfig(method="score", steps=10, stage1_steps=4))] == ["stage1", "stage2"]


def test_lora_trains_only_the_adapter_against_the_base_with_the_adapter_off(tiny_model, dialogue, task, tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("peft")
    from selfcorrect.models.hf import LoraSettings, add_lora

    model = add_lora(copy.deepcopy(tiny_model), LoraSettings(rank=4, target_modules=("q_proj", "v_proj")))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(**{**CONFIG.__dict__, "method": "naive", "steps": 2, "lr": 1e-2})

    class NoCopies:  # the trainer must not keep a second copy of a LoRA model's weights
        def deepcopy(self, obj):
            raise AssertionError("reference copied")

    monkeypatch.setattr("selfcorrect.trainer.copy", NoCopies())
    from peft.tuners.tuners_utils import BaseTunerLayer

    import selfcorrect.trainer as trainer_module
    adapter_on_while_sampling = []

    def spy(sampled_model, *args, **kwargs):  # RL samples on-policy: with the adapter on
        layers = [m for m in sampled_model.modules() if isinstance(m, BaseTunerLayer)]
        adapter_on_while_sampling.append(bool(layers) and not any(m.disable_adapters for m in layers))
        return rollout(sampled_model, *args, **kwargs)

    rollout = trainer_module.rollout
    monkeypatch.setattr(trainer_module, "rollout", spy)
    train(model, dialogue, task, config, tmp_path, progress=False)
    assert adapter_on_while_sampling == [True, True]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl_t1"] == pytest.approx(0.0, abs=1e-6)  # the adapter starts as a no-op: policy == reference
    assert rows[1]["kl_t1"] > 0  # after one update the policy differs from the base it is held to
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)


def test_micro_batch_split_does_not_change_the_update(tiny_model, dialogue, task, tmp_path):
    """Length-bucketed micro-batches under a token budget give the update of one whole batch."""
    import dataclasses

    whole = dataclasses.replace(CONFIG, micro_batch=64)
    split = dataclasses.replace(CONFIG, micro_batch=2, micro_batch_tokens=40)
    a = train(copy.deepcopy(tiny_model), dialogue, task, whole, tmp_path / "a", progress=False)
    b = train(copy.deepcopy(tiny_model), dialogue, task, split, tmp_path / "b", progress=False)
    for (name, wa), (_, wb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(wa, wb, atol=1e-5), name
    moved = any(not torch.equal(w, w0) for w, w0 in zip(a.state_dict().values(), tiny_model.state_dict().values()))
    assert moved


def test_offline_first_attempts_come_from_the_base_and_are_not_trained(tiny_model, dialogue, task, tmp_path):
    """SCoRe with base first attempts as extra prompts: every other Stage II step, attempt 1 is the base's."""
    config = TrainConfig(**{**CONFIG.__dict__, "method": "score_offline", "steps": 5, "stage1_steps": 1})
    train(copy.deepcopy(tiny_model), dialogue, task, config, tmp_path, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("offline_firsts", False) for r in rows] == [False, False, True, False, True]
    for r in rows[1:]:
        # attempt 1 of an offline step is in no loss: its KL term is exactly 0; online it is not
        assert (r["kl_t1"] == 0.0) == r.get("offline_firsts", False)
